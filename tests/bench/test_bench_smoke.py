"""Every benchmark script runs on tiny inputs and prints a table; ``bench/run.py`` writes its section.

Benchmarks are not timed tests: nothing here checks a number, only that each script still runs
end to end (real processes, real paper broker) with ``bench/run.py``'s ``--smoke`` arguments, so
``make bench`` does not rot between the runs that produce BENCHMARKS.md.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

from bench.run import FILE_HEADER, PROJECT_ROOT, SCRIPTS, Result, Script, append_section, format_section, select
from kitefleet.clock import IST


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "HOME")}
    env["TMPDIR"] = str(tmp_path)  # every script's throw-away home lands in this test's folder
    return env


@pytest.mark.parametrize("script", SCRIPTS, ids=[s.name for s in SCRIPTS])
def test_script_runs_on_tiny_inputs(script: Script, tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, str(script.path), *script.smoke_args], cwd=PROJECT_ROOT,
                          env=_env(tmp_path), capture_output=True, text=True, timeout=script.smoke_timeout,
                          check=False)
    assert proc.returncode == 0, f"{script.name} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr[-3000:]}"
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    assert lines, f"{script.name} printed nothing:\n{proc.stdout}"
    assert not list(tmp_path.iterdir()), f"{script.name} left files behind: {list(tmp_path.iterdir())}"


def test_run_smoke_prints_tables_and_leaves_benchmarks_md_alone(tmp_path: Path) -> None:
    out = tmp_path / "B.md"
    proc = subprocess.run([sys.executable, "bench/run.py", "--smoke", "--only", "state", "--output", str(out)],
                          cwd=PROJECT_ROOT, env=_env(tmp_path), capture_output=True, text=True, timeout=120,
                          check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "own file per user" in proc.stdout  # bench_state's table, passed through
    assert "--- bench_state: ok" in proc.stdout
    assert not out.exists()


def _result(script: Script, status: str, stdout: str = "") -> Result:
    return Result(script, ["/x/python", f"bench/{script.name}.py", *script.args], status,
                  0 if status == "ok" else None, 12.3, stdout)


def test_section_has_date_machine_facts_and_each_table(tmp_path: Path) -> None:
    fanout, memory = SCRIPTS[0], SCRIPTS[1]
    results = [_result(fanout, "ok", "job users wall\nwhoami 1 0.23\n"), _result(memory, "missing")]
    facts = {"cores": "2", "python": "CPython 3.11.9"}
    section = format_section(results, facts, datetime(2026, 11, 26, 10, 30, tzinfo=IST))
    assert section.startswith("## 2026-11-26 10:30 IST: 1 of 2 benchmarks\n")
    assert "- cores: 2\n- python: CPython 3.11.9\n" in section
    assert "```text\njob users wall\nwhoami 1 0.23\n```" in section
    assert "`python bench/bench_fanout.py`: ok, 12 s" in section
    assert "bench/bench_memory.py does not exist yet" in section

    path = tmp_path / "BENCHMARKS.md"
    append_section(path, section)
    append_section(path, section.replace("10:30", "11:00"))
    text = path.read_text(encoding="utf-8")
    assert text.startswith(FILE_HEADER)
    assert text.count(FILE_HEADER) == 1
    assert text.index("10:30 IST") < text.index("11:00 IST")  # appended, earlier sections untouched


def test_select_by_name_short_name_or_number() -> None:
    assert [s.name for s in select("state,1,bench_orders.py")] == ["bench_fanout", "bench_state", "bench_orders"]
    assert len(select(None)) == len(SCRIPTS)
    with pytest.raises(SystemExit, match="unknown benchmark"):
        select("nope")
