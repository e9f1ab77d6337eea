# kitefleet: `make demo` shows the system working, `make test` checks it. Only python3 is needed:
# the first target that needs it creates .venv and installs the project (with its dev extra) in it.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: venv test test-fast lint bench demo clean-venv

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

# Two paper users (Som, Sai) trade an accelerated day under a real supervisord, in demo-home/.
demo: $(STAMP)
	$(BIN)/python -m demo $(DEMO_ARGS)

# Four pytest-xdist workers, one test file each at a time (module fixtures such as the bounded demo
# run once): the integration tests mostly wait on real processes, so 4 workers fit 2 cores
# (BENCHMARKS.md, "make test"). TEST_JOBS=0 runs serially, for a debugger or a clean traceback.
TEST_JOBS ?= 4

test: $(STAMP)
	$(BIN)/python -m pytest -q $(if $(filter 0,$(TEST_JOBS)),,-n $(TEST_JOBS) --dist loadfile)

# The in-process tier: everything but tests/integration/ (real processes, supervisord, the broker as a server).
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q --ignore=tests/integration

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

# Benchmarks print tables and append them, dated with machine facts, to BENCHMARKS.md (not run by CI;
# `make test` keeps a smoke test that each script runs on tiny inputs).
bench: $(STAMP)
	$(BIN)/python bench/run.py

clean-venv:
	rm -rf $(VENV)
