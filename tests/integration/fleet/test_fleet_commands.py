"""``run-all`` without a job (every scheduler in the foreground), ``exec`` and ``stop`` outside supervisord."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

from kitefleet.heartbeat import read_heartbeat
from kitefleet.locks import lock_holder
from tests.support.fleet import env_for, fleet_home, kill_group, orchestrator, pid_alive, poll
from tests.support.homes import PROJECT_ROOT, VENV_PYTHON


def test_run_all_runs_every_scheduler_in_the_foreground_and_ctrl_c_stops_them(tmp_path: Path) -> None:
    home, clock = fleet_home(tmp_path / "home", {"Som": {}, "Sai": {}})
    proc = subprocess.Popen([str(VENV_PYTHON), str(PROJECT_ROOT / "orchestrator.py"), "run-all"], cwd=tmp_path,
                            env=env_for(home, clock), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        pids = {u: poll(lambda u=u: lock_holder(home.locks_dir(u) / "instance.lock"), 30, f"{u}'s scheduler")
                for u in ("Som", "Sai")}
        for user, pid in pids.items():
            poll(lambda u=user, p=pid: (b := read_heartbeat(home, u)) and b["pid"] == p and b["state"] == "idle",
                 30, f"{user}'s heartbeat")
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
        text = out.decode()
        assert "Som | " in text and "Sai | " in text
        assert "stopped by SIGINT" in text
        for user, pid in pids.items():
            assert not pid_alive(pid)
            assert read_heartbeat(home, user)["state"] == "stopped"
    finally:
        kill_group(proc)


def test_exec_refuses_a_mismatched_supervisor_name(tmp_path: Path) -> None:
    home, clock = fleet_home(tmp_path / "home", {"Som": {}})
    out = orchestrator(home, "exec", "Som", clock=clock, SUPERVISOR_PROCESS_NAME="Sai")
    assert out.returncode == 4
    assert "user mismatch" in out.stderr


def test_exec_exports_a_missing_calendar_then_becomes_the_scheduler_and_stop_ends_it(tmp_path: Path) -> None:
    home, clock = fleet_home(tmp_path / "home", {"Som": {}})
    home.calendar_file.unlink()
    proc = subprocess.Popen([str(VENV_PYTHON), str(PROJECT_ROOT / "orchestrator.py"), "exec", "Som"], cwd=tmp_path,
                            env=env_for(home, clock, KITE_API_KEY="leaked"), start_new_session=True)
    try:
        poll(lambda: (b := read_heartbeat(home, "Som")) and b["pid"] == proc.pid, 60, "the scheduler (same pid)")
        assert home.calendar_file.exists()
        environ = Path(f"/proc/{proc.pid}/environ").read_bytes()
        assert b"KITE_API_KEY" not in environ
        out = orchestrator(home, "stop", "Som", "--grace", "5")
        assert out.returncode == 0, out.stdout + out.stderr
        assert proc.wait(10) == 0
        assert orchestrator(home, "stop", "Som").stdout.startswith("Som's scheduler is not running")
    finally:
        kill_group(proc)
