"""Operator mistakes that need a real worker or orchestrator process: one clear line and the documented exit code."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from fleet import cli, supervisor
from kitefleet.exitcodes import ExitCode
from kitefleet.home import Home
from tests.support.fleet import env_for, hold_job_lock, kill_group, orchestrator, pid_alive, poll
from tests.support.homes import PROJECT_ROOT, VENV_PYTHON, make_home, write_env


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Home:
    home = make_home(tmp_path / "home")
    write_env(home, "Som")
    write_env(home, "Sai")
    monkeypatch.setenv("KITEFLEET_HOME", str(home.root))
    return home


def main(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = cli.main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_broken_env_file_still_reaches_the_worker(home: Home) -> None:
    """run and exec (what supervisord runs) refuse only a missing file; a broken one is the
    worker's to report, with exit 4 and its own message (so the program goes FATAL with it)."""
    home.env_file("Som").write_text("TRADER_MODE=bogus\nKITE_API_KEY=k\nKITE_API_SECRET=s\n", encoding="utf-8")
    for argv in (("run", "Som", "whoami"), ("exec", "Som")):
        out = orchestrator(home, *argv)
        assert out.returncode == ExitCode.CONFIG, out.stderr
        assert "TRADER_MODE" in out.stderr and "unknown user" not in out.stderr


# --- stop ------------------------------------------------------------------------------------------
INSTANCE_HOLDER = """
import sys, time
from pathlib import Path
from kitefleet.home import Home
from kitefleet.locks import instance_lock
with instance_lock(Home(Path(sys.argv[1])), sys.argv[2]):
    while True:
        time.sleep(0.2)
"""


def test_stop_without_env_file_stops_a_lock_holder_and_only_then_calls_the_user_unknown(home: Home) -> None:
    scheduler = subprocess.Popen([str(VENV_PYTHON), "-c", INSTANCE_HOLDER, str(home.root), "Som"], cwd=PROJECT_ROOT,
                                 env=env_for(home, None), start_new_session=True)
    job = hold_job_lock(home, "Som", "pattern_daily")
    try:
        from kitefleet.locks import lock_holder

        poll(lambda: lock_holder(home.locks_dir("Som") / "instance.lock") == scheduler.pid, 20, "the holder")
        home.env_file("Som").unlink()  # deleted while it ran
        out = orchestrator(home, "stop", "Som", "--grace", "5")
        assert out.returncode == 0, out.stdout + out.stderr
        assert "no env/Som.env" in out.stdout and "Som: stopped" in out.stdout
        assert scheduler.wait(10) is not None and job.wait(10) is not None
        assert not pid_alive(scheduler.pid) and not pid_alive(job.pid)
        again = orchestrator(home, "stop", "Som")
        assert again.returncode == ExitCode.USAGE
        assert "unknown user 'Som': no env/Som.env; users: Sai" in again.stderr
    finally:
        kill_group(scheduler)
        kill_group(job)


def test_run_all_table_shows_no_log_for_a_worker_that_wrote_none(home: Home) -> None:
    home.env_file("Sai").write_text("TRADER_MODE=bogus\n", encoding="utf-8")
    out = orchestrator(home, "run-all", "whoami")
    assert out.returncode == ExitCode.JOB_FAILED
    rows = {line.split()[0]: line for line in out.stdout.splitlines() if line.startswith(("Sai ", "Som "))}
    assert "- (none written)" in rows["Sai"] and rows["Sai"].split()[1] == "4"
    assert str(home.user_logs_dir("Som") / "whoami.log") in rows["Som"]


# --- supervisor-conf -------------------------------------------------------------------------------
def test_supervisor_conf_counts_programs_and_warns_once_for_a_misnamed_file(
        home: Home, capsys: pytest.CaptureFixture[str]) -> None:
    (home.env_dir / "bad name.env").write_text("TRADER_MODE=paper\n", encoding="utf-8")
    rc, out, err = main(capsys, "supervisor-conf")
    assert rc == 0, err
    assert "(2 user program(s), 1 env file(s) left out)" in out
    lines = [line for line in err.splitlines() if "bad name" in line]
    assert len(lines) == 1 and "left out" in lines[0] and "rename" in lines[0] and "FATAL" not in err
    assert "programs=Sai,Som" in supervisor.generated_path(home).read_text(encoding="utf-8")
    rc, out, _err = main(capsys, "supervisor-conf", "--check")
    assert rc == 0 and "up to date (2 user program(s), 1 env file(s) left out)" in out
