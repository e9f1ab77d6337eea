"""Every benchmark script runs on tiny inputs and prints a table; ``bench/run.py`` writes its section.

Benchmarks are not timed tests: nothing here checks a number, only that each script still runs
end to end (real processes, real paper broker) with ``bench/run.py``'s ``--smoke`` arguments, so
``make bench`` does not rot between the runs that produce BENCHMARKS.md.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.run import PROJECT_ROOT, SCRIPTS, Script


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "HOME")}
    env["TMPDIR"] = str(tmp_path)  # every script's throw-away home lands in this test's folder
    return env


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A TMPDIR short enough for the supervisord socket a fleet benchmark makes under it (pytest's
    tmp_path under xdist, ``.../popen-gw3/test_script_runs_on_tiny_input7/``, is not)."""
    path = Path(tempfile.mkdtemp(prefix="kfb-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.mark.parametrize("script", SCRIPTS, ids=[s.name for s in SCRIPTS])
def test_script_runs_on_tiny_inputs(script: Script, short_tmp: Path) -> None:
    proc = subprocess.run([sys.executable, str(script.path), *script.smoke_args], cwd=PROJECT_ROOT,
                          env=_env(short_tmp), capture_output=True, text=True, timeout=script.smoke_timeout,
                          check=False)
    assert proc.returncode == 0, f"{script.name} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr[-3000:]}"
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    assert lines, f"{script.name} printed nothing:\n{proc.stdout}"
    assert not list(short_tmp.iterdir()), f"{script.name} left files behind: {list(short_tmp.iterdir())}"


def test_run_smoke_prints_tables_and_leaves_benchmarks_md_alone(tmp_path: Path) -> None:
    out = tmp_path / "B.md"
    proc = subprocess.run([sys.executable, "bench/run.py", "--smoke", "--only", "state", "--output", str(out)],
                          cwd=PROJECT_ROOT, env=_env(tmp_path), capture_output=True, text=True, timeout=120,
                          check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "own file per user" in proc.stdout  # bench_state's table, passed through
    assert "--- bench_state: ok" in proc.stdout
    assert not out.exists()
