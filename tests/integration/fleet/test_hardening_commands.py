"""Issue 15, item 18: the smaller command-line findings. Each test is named after its finding."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest

from kitefleet import pause as flag
from kitefleet.exitcodes import ExitCode
from kitefleet.home import Home
from tests.support.fleet import hold_job_lock, kill_group
from tests.support.homes import PROJECT_ROOT, VENV_PYTHON, child_env, make_home, write_env


@pytest.fixture
def home(tmp_path: Path) -> Home:
    home = make_home(tmp_path / "home")
    write_env(home, "Som", api_key="somkey00001")
    write_env(home, "Sai", api_key="saikey00002")
    return home


def _orchestrator(home: Home, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(VENV_PYTHON), str(PROJECT_ROOT / "orchestrator.py"), *args], cwd=PROJECT_ROOT,
                          env=child_env(home), capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("value", ["1e308", "inf", "nan", "0", "-5", "soon"])
def test_status_timeout_1e308_is_a_usage_error_not_a_traceback(home: Home, value: str) -> None:
    proc = _orchestrator(home, "status", "--no-live", "--timeout", value)
    assert proc.returncode == ExitCode.USAGE, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr and "--timeout" in proc.stderr.splitlines()[-1]


@pytest.mark.parametrize("value", ["-1", "nan", "inf", "1e308"])
def test_exec_stop_grace_negative_or_nan_is_refused(home: Home, value: str) -> None:
    proc = _orchestrator(home, "exec", "Som", "--stop-grace", value)
    assert proc.returncode == ExitCode.USAGE, proc.stdout + proc.stderr
    assert "--stop-grace" in proc.stderr.splitlines()[-1] and "at least 0" in proc.stderr


def _kill_held_whoami(proc: subprocess.Popen[str], users: int) -> None:
    """Wait for the held ``whoami`` JSON line of each user (it names the worker's pid), SIGKILL them."""
    assert proc.stdout is not None
    killed = 0
    for line in proc.stdout:
        if "{" in line:
            os.kill(json.loads(line[line.index("{"):])["pid"], signal.SIGKILL)
            killed += 1
            if killed == users:
                return
    raise AssertionError("no whoami line before the output ended")


def test_run_of_a_job_killed_by_a_signal_exits_with_the_documented_code(home: Home) -> None:
    """README, "Exit codes": "Stable; defined once in kitefleet/exitcodes.py". ``run`` returned
    247 (256 - SIGKILL) for a job killed by a signal, a number in no table."""
    proc = subprocess.Popen([str(VENV_PYTHON), str(PROJECT_ROOT / "orchestrator.py"), "run", "Som", "whoami",
                             "--", "--hold", "60"], cwd=PROJECT_ROOT, env=child_env(home), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        _kill_held_whoami(proc, 1)
        _out, err = proc.communicate(timeout=60)
    finally:
        kill_group(proc)  # type: ignore[arg-type]
    assert proc.returncode == ExitCode.KILLED == 8
    assert err.strip().splitlines()[-1] == ("orchestrator: error: Som's whoami was killed by SIGKILL; "
                                            "see logs/Som/whoami.log (exit code 8)")


def test_run_all_shows_a_signal_death_as_the_documented_code_not_minus_9(home: Home) -> None:
    proc = subprocess.Popen([str(VENV_PYTHON), str(PROJECT_ROOT / "orchestrator.py"), "run-all", "whoami",
                             "--", "--hold", "60"], cwd=PROJECT_ROOT, env=child_env(home), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        _kill_held_whoami(proc, 2)
        out, _err = proc.communicate(timeout=60)
    finally:
        kill_group(proc)  # type: ignore[arg-type]
    assert proc.returncode == ExitCode.JOB_FAILED
    rows = [line.split() for line in out.splitlines() if line.startswith(("Som ", "Sai "))]
    assert sorted(r[0] for r in rows) == ["Sai", "Som"]
    for row in rows:
        assert row[1:3] == ["8", "(SIGKILL)"], out
    assert "-9" not in out


def test_pause_reason_with_terminal_escapes_and_newlines_is_cleaned_and_capped(home: Home) -> None:
    hostile = "\x1b[2J\x1b]0;pwned\x07margin\ncall\r\n" + "x" * 500
    proc = _orchestrator(home, "pause", "Som", "--reason", hostile)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    stored = json.loads(flag.pause_file(home, "Som").read_text())["reason"]
    assert not any(ord(c) < 32 or 0x7F <= ord(c) <= 0x9F for c in stored)
    assert stored.startswith("[2J ]0;pwned margin call x") and len(stored) == flag.MAX_REASON_CHARS
    assert "\x1b" not in proc.stdout and len(proc.stdout.strip().splitlines()) == 1
    assert proc.stderr.strip() == ("orchestrator: warning: --reason: control characters (newlines, terminal "
                                   "escapes) replaced by spaces; cut to 200 characters")
    listed = _orchestrator(home, "pause")
    assert "\x1b" not in listed.stdout and "pwned margin call" in listed.stdout


def test_worker_error_is_one_line_not_two(home: Home) -> None:
    """README (workers/__main__.py): "Every failure ends with one line on stderr". An error after
    logging started printed the console log line and then the error line."""
    holder = hold_job_lock(home, "Som", "update_cnc_stoploss")
    try:
        proc = subprocess.run([str(VENV_PYTHON), "-m", "workers", "update_cnc_stoploss", "--user", "Som"],
                              cwd=PROJECT_ROOT, env=child_env(home, PYTHONPATH=str(PROJECT_ROOT)),
                              capture_output=True, text=True, timeout=120)
    finally:
        kill_group(holder)
    assert proc.returncode == ExitCode.ALREADY_RUNNING, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("update_cnc_stoploss: error: "), proc.stderr
    logged = (home.user_logs_dir("Som") / "update_cnc_stoploss.log").read_text()
    assert "ERROR" in logged and lines[0].split("error: ", 1)[1] in logged  # the log file keeps it
