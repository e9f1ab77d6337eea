"""The per-user scheduler as a real process: lean imports, instance lock, heartbeat, adoption of a
surviving job, SIGTERM; and the Scheduler class driving real child processes."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta
from datetime import time as dtime
from pathlib import Path

from kitefleet import clock
from kitefleet.calendar import read_calendar
from kitefleet.clock import IST, SimulatedClock, parse_spec
from kitefleet.exitcodes import ExitCode
from kitefleet.heartbeat import is_stale, read_heartbeat, read_records
from kitefleet.locks import lock_holder
from tests.support.fleet import (
    env_for,
    fleet_home,
    group_members,
    hold_job_lock,
    kill_group,
    pid_alive,
    poll,
    start_daemon,
)
from tests.support.homes import PROJECT_ROOT, VENV_PYTHON
from workers.daemon import Scheduler
from workers.schedule import Plan

HEAVY = ("kiteconnect", "pandas", "pandas_market_calendars", "numpy", "apprise")

LEAN_PROBE = f"""
import json, sys, threading
from workers.context import STOP
import workers.__main__ as entry
threading.Timer(1.5, STOP.set).start()
rc = entry.main(["daemon", "--user", "Som", "--stop-grace", "1"])
print(json.dumps({{"rc": rc, "heavy": [m for m in {HEAVY!r} if m in sys.modules]}}))
"""


def test_scheduler_stays_lean(tmp_path: Path) -> None:
    home, clock_value = fleet_home(tmp_path / "home", {"Som": {"SCHEDULE_HOURLY_CANDLE_WATCHDOG": "session"}})
    out = subprocess.run([str(VENV_PYTHON), "-c", LEAN_PROBE], cwd=PROJECT_ROOT, env=env_for(home, clock_value),
                         capture_output=True, text=True, timeout=60, check=False)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result == {"rc": 0, "heavy": []}, out.stderr


def test_heartbeat_instance_lock_and_sigterm(tmp_path: Path) -> None:
    home, clock_value = fleet_home(tmp_path / "home", {"Som": {}})
    daemon = start_daemon(home, "Som", clock_value, "--stop-grace", "1")
    try:
        beat = poll(lambda: (b := read_heartbeat(home, "Som")) and b["state"] == "idle" and b, 30, "a heartbeat")
        assert beat["pid"] == daemon.pid and beat["mode"] == "paper" and beat["day"] == "trading day"
        first = beat["wall"]
        poll(lambda: read_heartbeat(home, "Som")["wall"] > first, 10, "a newer heartbeat")
        assert not is_stale(read_heartbeat(home, "Som"))
        assert lock_holder(home.locks_dir("Som") / "instance.lock") == daemon.pid

        second = subprocess.run([str(VENV_PYTHON), "-m", "workers", "daemon", "--user", "Som"], cwd=PROJECT_ROOT,
                                env=env_for(home, clock_value), capture_output=True, text=True, timeout=30,
                                check=False)
        assert second.returncode == ExitCode.ALREADY_RUNNING
        assert f"already running (pid {daemon.pid}" in second.stderr

        started = time.monotonic()
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(10) == 0
        assert time.monotonic() - started < 5
        assert read_heartbeat(home, "Som")["state"] == "stopped"
        assert lock_holder(home.locks_dir("Som") / "instance.lock") is None
    finally:
        kill_group(daemon)


def test_missing_calendar_export_is_a_configuration_error(tmp_path: Path) -> None:
    home, clock_value = fleet_home(tmp_path / "home", {"Som": {}})
    home.calendar_file.unlink()
    out = subprocess.run([str(VENV_PYTHON), "-m", "workers", "daemon", "--user", "Som"], cwd=PROJECT_ROOT,
                         env=env_for(home, clock_value), capture_output=True, text=True, timeout=30, check=False)
    assert out.returncode == ExitCode.CONFIG
    assert "NSE calendar not exported yet" in out.stderr


def test_adopts_a_surviving_job_and_stops_it_on_sigterm(tmp_path: Path) -> None:
    home, clock_value = fleet_home(tmp_path / "home", {"Som": {"SCHEDULE_HOURLY_CANDLE_WATCHDOG": "session"}})
    holder = hold_job_lock(home, "Som", "hourly_candle_watchdog")
    daemon = start_daemon(home, "Som", clock_value, "--stop-grace", "2")
    try:
        beat = poll(lambda: (b := read_heartbeat(home, "Som")) and b["current_jobs"] and b, 30, "the adoption")
        assert beat["current_jobs"]["hourly_candle_watchdog"]["pid"] == holder.pid
        assert beat["current_jobs"]["hourly_candle_watchdog"]["adopted"] is True
        assert lock_holder(home.locks_dir("Som") / "job-hourly_candle_watchdog.lock") == holder.pid
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(10) == 0
        assert holder.wait(5) == -signal.SIGTERM  # stopped by its process group, not left behind
        record = read_records(home, "Som")["hourly_candle_watchdog"]
        assert record["runs_today"] == 1 and record["last_result"].startswith("interrupted")
    finally:
        kill_group(holder)
        kill_group(daemon)


def test_an_adopted_job_that_ends_is_not_restarted_twice(tmp_path: Path) -> None:
    home, clock_value = fleet_home(tmp_path / "home", {"Som": {"SCHEDULE_HOURLY_CANDLE_WATCHDOG": "session"}})
    holder = hold_job_lock(home, "Som", "hourly_candle_watchdog")
    daemon = start_daemon(home, "Som", clock_value, "--stop-grace", "1")
    try:
        poll(lambda: (b := read_heartbeat(home, "Som")) and b["current_jobs"], 30, "the adoption")
        kill_group(holder)
        beat = poll(lambda: (b := read_heartbeat(home, "Som")) and not b["current_jobs"] and b, 15, "the end")
        assert beat["jobs"]["hourly_candle_watchdog"]["last_result"] == "ended (adopted; exit code unknown)"
        assert beat["jobs"]["hourly_candle_watchdog"]["runs_today"] == 1
    finally:
        kill_group(holder)
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(10)


# --- the Scheduler class with real child processes (in-process, clock passed in) ----------------
def _scheduler(tmp_path: Path, plan: Plan, script: str, now: datetime) -> Scheduler:
    home, _ = fleet_home(tmp_path / "home", {"Som": {}})
    clock.set_clock(SimulatedClock(parse_spec(now.isoformat())))

    def launch(job: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen([sys.executable, "-c", script], start_new_session=True)

    return Scheduler(home, "Som", plan, read_calendar(home.calendar_file), mode="paper", launch=launch,
                     stop_grace=2.0)


def _until(s: Scheduler, now: datetime, check: object, what: str) -> None:
    poll(lambda: (s.loop_once(now), check())[1], 20, what)  # type: ignore[operator]


def test_token_exit_waits_for_a_new_login_then_runs_again(tmp_path: Path) -> None:
    now = datetime(2026, 11, 25, 16, 0, tzinfo=IST)
    plan = Plan({"pattern_daily": (dtime(16, 0),)}, paper=False)
    s = _scheduler(tmp_path, plan, "import sys; sys.exit(5)", now)
    s.initialize(now)
    s.loop_once(now)
    assert "pattern_daily" in s.tracked
    _until(s, now, lambda: s.state == "waiting for login", "the token exit")
    assert read_heartbeat(s.home, "Som")["state"] == "waiting for login"
    s.loop_once(now + timedelta(hours=1))
    assert not s.tracked  # live: no blind retry
    session = s.home.session_file("Som")
    session.parent.mkdir(parents=True, exist_ok=True)
    session.write_text("{}")
    s.loop_once(now + timedelta(hours=1))
    assert "pattern_daily" in s.tracked
    _until(s, now, lambda: not s.tracked, "the second run's end")
    assert s.records["pattern_daily"].runs_today == 2


def test_shutdown_stops_running_jobs_by_process_group(tmp_path: Path) -> None:
    now = datetime(2026, 11, 25, 16, 0, tzinfo=IST)
    plan = Plan({"pattern_daily": (dtime(16, 0),)})
    script = "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']);" \
             " time.sleep(60)"
    s = _scheduler(tmp_path, plan, script, now)
    s.initialize(now)
    s.loop_once(now)
    pid = s.tracked["pattern_daily"].run.pid
    time.sleep(0.3)  # let the job start its own child (not synchronisation: either way it must die)
    s.shutdown(now)
    assert not pid_alive(pid)
    assert group_members(pid) == []  # nothing the job started is left behind
    assert s.records["pattern_daily"].last_result.startswith("interrupted")
    assert read_heartbeat(s.home, "Som")["state"] == "stopped"


def test_a_clock_that_goes_back_does_not_stop_the_watchdog_for_the_day(tmp_path: Path) -> None:
    """Issue 15 item 2, with real processes: the clock file goes 09:30 -> 09:05 -> 09:15 while the
    watchdog (a process holding its lock) runs; the scheduler neither stops it nor closes its slot."""
    day = datetime(2026, 11, 25, tzinfo=IST).date()
    home, clock_value = fleet_home(tmp_path / "home", {"Som": {"SCHEDULE_HOURLY_CANDLE_WATCHDOG": "session"}},
                                   clock_at=datetime.combine(day, dtime(9, 30), IST))
    assert clock_value is not None
    clock_file = Path(clock_value.removeprefix("file:"))
    holder = hold_job_lock(home, "Som", "hourly_candle_watchdog")
    daemon = start_daemon(home, "Som", clock_value, "--stop-grace", "1")
    try:
        poll(lambda: (b := read_heartbeat(home, "Som")) and b["current_jobs"], 30, "the adoption")
        for hhmm in ("09:05", "09:15"):
            clock.write_clock_file(clock_file, datetime.combine(day, dtime.fromisoformat(hhmm), IST))
            beat = poll(lambda h=hhmm: (b := read_heartbeat(home, "Som")) and b["time"][11:16] == h and b, 30,
                        f"the scheduler at {hhmm}")
            assert beat["current_jobs"]["hourly_candle_watchdog"]["pid"] == holder.pid, hhmm
            assert pid_alive(holder.pid), hhmm
        record = read_records(home, "Som")["hourly_candle_watchdog"]
        assert record["last_end"] is None and record["last_result"].startswith("running")
        assert "the clock went back" in (home.root / "daemon-Som.out").read_text()
    finally:
        kill_group(holder)
        kill_group(daemon)


def test_a_full_disk_does_not_kill_the_scheduler(tmp_path: Path) -> None:
    """Issue 15 item 3: on a full home the scheduler died writing its heartbeat. A real ENOSPC (the
    home on a small tmpfs, filled): it keeps running, says so once, no traceback, and writes its
    heartbeat again as soon as there is room."""
    from tests.support.fleet import fill_disk, small_tmpfs

    with small_tmpfs(tmp_path / "disk") as disk:
        home, clock_value = fleet_home(disk / "home", {"Som": {}})
        out = tmp_path / "daemon.out"  # the console output, off the full disk
        # Its log file fails on every line from the start, with the real ENOSPC of /dev/full.
        home.user_logs_dir("Som").mkdir(parents=True, exist_ok=True)
        (home.user_logs_dir("Som") / "daemon.log").symlink_to("/dev/full")
        daemon = start_daemon(home, "Som", clock_value, "--stop-grace", "1", log=out)
        try:
            poll(lambda: (b := read_heartbeat(home, "Som")) and b["state"] == "idle", 30, "a heartbeat")
            filler = fill_disk(disk)
            poll(lambda: "could not write the heartbeat" in out.read_text(), 30, "the heartbeat error")
            full_since = time.time()
            assert daemon.poll() is None
            filler.unlink()
            poll(lambda: read_heartbeat(home, "Som")["wall"] > full_since, 30, "a heartbeat after the space came back")
            poll(lambda: "the heartbeat is written again" in out.read_text(), 10, "the recovery line")
            daemon.send_signal(signal.SIGTERM)
            assert daemon.wait(10) == 0
            text = out.read_text()
            assert text.count("could not write the heartbeat") == 1, text
            assert text.count("daemon.log failed (No space left on device)") == 1, text
            assert "Traceback" not in text and "Logging error" not in text, text
        finally:
            kill_group(daemon)


def test_the_scheduler_starts_notify_when_the_outbox_has_undelivered_events(tmp_path: Path) -> None:
    from kitefleet import outbox
    from tests.support.sink import Sink

    sink = Sink("hook-som-D3M0")
    home, clock = fleet_home(tmp_path / "h", {"Som": {"NOTIFY_URLS": sink.url}})
    proc = start_daemon(home, "Som", clock)
    try:
        poll(lambda: (home.user_data_dir("Som") / "heartbeat.json").exists(), 30, "the heartbeat")
        eid = outbox.emit(home, "Som", "exit", "sold 10 INFY @ 1490")
        assert poll(sink.ids, 60, "the event at the sink") == [eid]
        poll(lambda: not outbox.needs_delivery(home, "Som"), 30, "the outbox settled")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        sink.stop()
