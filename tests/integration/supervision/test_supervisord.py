"""trader:<User> under a real supervisord (from the project's venv), in a temporary home.

One supervisord runs Som and Sai (paper, against the supervised paper broker) and Bad (a broken
env file) with short timings. Som's watchdog schedule is on and a stand-in process holds Som's
watchdog job lock, as a watchdog surviving its scheduler would. The orphan scenario (SIGKILL of
supervisord itself) gets a supervisord and a home of its own.

The test homes live in short mkdtemp folders: a unix socket path must stay under ~108 bytes.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from fleet.supervisor import rpc
from kitefleet import clock as kclock
from kitefleet.heartbeat import is_stale, read_heartbeat, read_records
from kitefleet.home import Home
from kitefleet.locks import lock_holder
from tests.support.fleet import (
    env_for,
    fleet_home,
    group_members,
    hold_job_lock,
    kill_group,
    orchestrator,
    pid_alive,
    poll,
)
from tests.support.homes import PROJECT_ROOT, write_env

pytestmark = pytest.mark.supervisord

SUPERVISORD = PROJECT_ROOT / ".venv" / "bin" / "supervisord"
SUPERVISORCTL = PROJECT_ROOT / ".venv" / "bin" / "supervisorctl"
LEAKED = "ann-key-LEAKED-0001"
FAST = ("--startsecs", "1", "--startretries", "1", "--stopwaitsecs", "5")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_supervisord(home: Home, clock: str | None, **extra: str) -> subprocess.Popen[bytes]:
    env = env_for(home, clock, **extra)
    env.pop("PYTHONPATH", None)
    out = open(home.root / "supervisord.out", "ab")  # noqa: SIM115
    with out:
        proc = subprocess.Popen([str(SUPERVISORD), "-c", str(home.supervisord_conf), "-n"], cwd=home.root, env=env,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

    def answers() -> bool:
        assert proc.poll() is None, (home.root / "supervisord.out").read_text()
        with contextlib.suppress(OSError, Exception):
            return rpc(home).supervisor.getState()["statename"] == "RUNNING"
        return False

    poll(answers, 30, "supervisord's XML-RPC socket")
    return proc


def info(home: Home, name: str) -> dict[str, Any]:
    return rpc(home).supervisor.getProcessInfo(name)  # type: ignore[no-any-return]


def wait_state(home: Home, name: str, *states: str, timeout: float = 30) -> dict[str, Any]:
    return poll(lambda: (i := info(home, name)) and i["statename"] in states and i, timeout,
                f"{name} in {states}")


def fresh_heartbeat_of(home: Home, user: str, pid: int) -> dict[str, Any]:
    return poll(lambda: (b := read_heartbeat(home, user)) and b["pid"] == pid and not is_stale(b)
                and b["state"] not in ("starting", "stopped") and b, 30, f"{user}'s heartbeat from pid {pid}")


def stop_supervisord(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            kill_group(proc)


def cleanup_home(home: Home, users: list[str]) -> None:
    """Whatever survived (orphans of a SIGKILLed supervisord): stop it by pid."""
    for user in users:
        orchestrator(home, "stop", user, "--grace", "3")
    with contextlib.suppress(OSError, ValueError, KeyError):
        pid = int(json.loads((home.paper_dir / "broker.json").read_text())["pid"])
        if pid_alive(pid):
            os.kill(pid, signal.SIGKILL)


@dataclass
class Fleet:
    home: Home
    clock: str | None
    supervisord: subprocess.Popen[bytes]
    watchdog: subprocess.Popen[bytes]
    kite_root: str


@pytest.fixture(scope="module")
def fleet() -> Iterator[Fleet]:
    root = Path(tempfile.mkdtemp(prefix="kfsv-"))
    kite_root = f"http://127.0.0.1:{free_port()}"
    home, clock = fleet_home(root / "h", {
        "Som": {"KITE_ROOT": kite_root, "SCHEDULE_HOURLY_CANDLE_WATCHDOG": "session"},
        "Sai": {"KITE_ROOT": kite_root},
    })
    write_env(home, "Bad", KITE_API_KEYY="typo")
    watchdog = hold_job_lock(home, "Som", "hourly_candle_watchdog")
    sv = None
    try:
        conf = orchestrator(home, "supervisor-conf", *FAST)
        assert conf.returncode == 0, conf.stderr
        # supervisord started from a shell that holds another user's key
        sv = start_supervisord(home, clock, KITE_API_KEY=LEAKED)
        yield Fleet(home, clock, sv, watchdog, kite_root)
    finally:
        if sv is not None:
            stop_supervisord(sv)
        kill_group(watchdog)
        cleanup_home(home, ["Som", "Sai"])
        shutil.rmtree(root, ignore_errors=True)


def test_generated_config_is_current_and_holds_no_secret(fleet: Fleet) -> None:
    assert orchestrator(fleet.home, "supervisor-conf", "--check").returncode == 0
    text = (fleet.home.generated_conf_dir / "trader.conf").read_text()
    assert "programs=Bad,Sai,Som" in text and "[program:paper-broker]" in text
    assert "exitcodes=0,3,4,6" in text and "stopasgroup=true" in text and "autorestart=unexpected" in text
    for user in ("Som", "Sai"):
        assert f"secret-{user.lower()}" not in text and f"key{user.lower()}0001" not in text
    write_env(fleet.home, "Zed", KITE_ROOT=fleet.kite_root)
    try:
        assert orchestrator(fleet.home, "supervisor-conf", "--check").returncode == 1
        write_env(fleet.home, "Zed", KITE_ROOT="http://127.0.0.1:1")  # paper users must share one broker
        out = orchestrator(fleet.home, "supervisor-conf", "--check")
        assert out.returncode == 4 and "disagree on KITE_ROOT" in out.stderr
    finally:
        fleet.home.env_file("Zed").unlink()


def test_users_run_with_fresh_heartbeats_and_a_supervised_paper_broker(fleet: Fleet) -> None:
    wait_state(fleet.home, "paper-broker", "RUNNING")
    for user in ("Som", "Sai"):
        pid = wait_state(fleet.home, f"trader:{user}", "RUNNING")["pid"]
        beat = fresh_heartbeat_of(fleet.home, user, pid)
        assert beat["mode"] == "paper"
        assert lock_holder(fleet.home.locks_dir(user) / "instance.lock") == pid
    poll(lambda: requests.get(f"{fleet.kite_root}/paper/health", timeout=2).ok, 30, "the paper broker")


def test_supervisords_environment_does_not_reach_the_workers(fleet: Fleet) -> None:
    for user in ("Som", "Sai"):
        pid = wait_state(fleet.home, f"trader:{user}", "RUNNING")["pid"]
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        assert not [v for v in environ if v.startswith(b"KITE_API_KEY=") or LEAKED.encode() in v]
        assert f"SUPERVISOR_PROCESS_NAME={user}".encode() in environ


def test_a_broken_env_file_goes_fatal_instead_of_restarting_forever(fleet: Fleet) -> None:
    # FATAL when it fails within startsecs (the usual case); under heavy load a start can outlast
    # the tests' 1-second startsecs, and exit 4 is then an expected EXITED: parked either way.
    state = wait_state(fleet.home, "trader:Bad", "FATAL", "EXITED")
    if state["statename"] == "FATAL":
        assert "Exited too quickly" in state["spawnerr"]
    else:
        assert state["exitstatus"] == 4
    log = (fleet.home.user_logs_dir("Bad") / "scheduler.out.log").read_text()
    assert "unknown key KITE_API_KEYY" in log
    assert log.count("error: ") <= 2  # startretries=1: at most two attempts, no restart loop


def test_status_shows_every_user(fleet: Fleet) -> None:
    wait_state(fleet.home, "trader:Som", "RUNNING")
    wait_state(fleet.home, "trader:Bad", "FATAL", "EXITED")
    out = orchestrator(fleet.home, "status", "--json", "--no-live", clock=fleet.clock)
    assert out.returncode == 1  # Bad is not healthy
    rows = {r["user"]: r for r in json.loads(out.stdout)["users"]}
    assert rows["Bad"]["supervisor"] in ("FATAL", "EXITED") and "KITE_API_KEYY" in rows["Bad"]["error"]
    assert rows["Sai"]["healthy"] and rows["Sai"]["supervisor"] == "RUNNING" and not rows["Sai"]["stale"]
    assert rows["Som"]["current_jobs"]["hourly_candle_watchdog"]["pid"] == fleet.watchdog.pid


def test_sigkilled_scheduler_is_restarted_and_adopts_its_running_watchdog(fleet: Fleet) -> None:
    old = wait_state(fleet.home, "trader:Som", "RUNNING")["pid"]
    poll(lambda: (read_heartbeat(fleet.home, "Som") or {}).get("current_jobs"), 30, "Som's adopted watchdog")
    before = read_records(fleet.home, "Som")["hourly_candle_watchdog"]
    os.kill(old, signal.SIGKILL)
    new = poll(lambda: (i := info(fleet.home, "trader:Som"))["statename"] == "RUNNING" and i["pid"] != old
               and i["pid"], 30, "Som restarted")
    beat = poll(lambda: (b := fresh_heartbeat_of(fleet.home, "Som", new))["current_jobs"] and b, 30, "adoption")
    assert beat["current_jobs"]["hourly_candle_watchdog"] == {
        **beat["current_jobs"]["hourly_candle_watchdog"], "pid": fleet.watchdog.pid, "adopted": True}
    assert lock_holder(fleet.home.locks_dir("Som") / "job-hourly_candle_watchdog.lock") == fleet.watchdog.pid
    after = read_records(fleet.home, "Som")["hourly_candle_watchdog"]
    assert (after["done_slots"], after["runs_today"], after["last_start"]) == (
        before["done_slots"], before["runs_today"], before["last_start"])


def test_supervisorctl_stop_is_clean_and_leaves_no_job_behind(fleet: Fleet) -> None:
    pid = wait_state(fleet.home, "trader:Som", "RUNNING")["pid"]
    started = time.monotonic()
    out = subprocess.run([str(SUPERVISORCTL), "-c", str(fleet.home.supervisord_conf), "stop", "trader:Som"],
                         capture_output=True, text=True, timeout=30, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    assert time.monotonic() - started < 5  # well within stopwaitsecs: no SIGKILL needed
    state = info(fleet.home, "trader:Som")
    assert state["statename"] == "STOPPED"
    assert "with SIGKILL" not in (fleet.home.root / "logs" / "supervisord.log").read_text()  # no escalation
    assert fleet.watchdog.wait(10) == -signal.SIGTERM  # the job was stopped by its process group
    assert group_members(pid) == []
    assert lock_holder(fleet.home.locks_dir("Som") / "instance.lock") is None
    assert read_heartbeat(fleet.home, "Som")["state"] == "stopped"


# --- SIGKILL of supervisord itself ----------------------------------------------------------------
def test_orphan_after_supervisord_sigkill_keeps_the_lock_and_stop_ends_it() -> None:
    root = Path(tempfile.mkdtemp(prefix="kfsv-"))
    # live mode (no paper broker program), real clock (a simulated one is refused in live mode)
    home, _ = fleet_home(root / "h", {"Ann": {"TRADER_MODE": "live"}}, clock_at=None, around=kclock.today())
    write_env(home, "Ann", mode="live", **{k: "off" for k in ("SCHEDULE_UPDATE_CNC_STOPLOSS",
                                                               "SCHEDULE_HOURLY_CANDLE_WATCHDOG",
                                                               "SCHEDULE_PATTERN_DAILY")})
    first = second = None
    try:
        assert orchestrator(home, "supervisor-conf", *FAST).returncode == 0
        first = start_supervisord(home, None)
        orphan = wait_state(home, "trader:Ann", "RUNNING")["pid"]
        fresh_heartbeat_of(home, "Ann", orphan)
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        assert pid_alive(orphan)

        second = start_supervisord(home, None)
        state = wait_state(home, "trader:Ann", "FATAL", "EXITED")
        assert state["pid"] == 0
        log = (home.user_logs_dir("Ann") / "scheduler.out.log").read_text()
        assert f"already running (pid {orphan}" in log
        assert lock_holder(home.locks_dir("Ann") / "instance.lock") == orphan
        fresh_heartbeat_of(home, "Ann", orphan)

        status = orchestrator(home, "status", "--json", "--no-live")
        row = json.loads(status.stdout)["users"][0]
        assert (row["pid"], row["orphan"], row["healthy"]) == (orphan, True, False)
        assert status.returncode == 1

        stop = orchestrator(home, "stop", "Ann", "--grace", "5")
        assert stop.returncode == 0, stop.stdout + stop.stderr
        assert not pid_alive(orphan)
        assert lock_holder(home.locks_dir("Ann") / "instance.lock") is None
    finally:
        for sv in (second, first):
            if sv is not None:
                stop_supervisord(sv)
        cleanup_home(home, ["Ann"])
        shutil.rmtree(root, ignore_errors=True)


# --- crash safety with real jobs against the supervised paper broker ------------------------------
def _try_login(url: str, api_key: str, api_secret: str) -> Any:
    from tests.support.broker import login

    with contextlib.suppress(Exception):
        return login(url, api_key, api_secret)
    return None


def test_sigkill_of_the_scheduler_during_entries_sends_no_duplicate_order() -> None:
    from collections import Counter
    from datetime import datetime

    from kitefleet.clock import IST, write_clock_file
    from kitefleet.settings import load_settings
    from tests.support.broker import login
    from workers.scans import scan_csv
    from workers.strategy.patterns import ScanResult

    root = Path(tempfile.mkdtemp(prefix="kfsv-"))
    kite_root = f"http://127.0.0.1:{free_port()}"
    home, clock = fleet_home(root / "h", {"Sai": {"KITE_ROOT": kite_root, "SCHEDULE_PLACE_ORDERS_DAILY": "09:20",
                                                   "MIN_SCORE": "0"}},
                             clock_at=datetime(2026, 11, 25, 9, 0, tzinfo=IST))
    sv = None
    try:
        assert orchestrator(home, "supervisor-conf", *FAST).returncode == 0
        sv = start_supervisord(home, clock)
        wait_state(home, "paper-broker", "RUNNING")
        first = wait_state(home, "trader:Sai", "RUNNING")["pid"]
        settings = load_settings(home, "Sai")
        kite = poll(lambda: _try_login(kite_root, settings.api_key, settings.api_secret), 30, "a paper login")
        ltp = kite.ltp("NSE:INFY", "NSE:TCS", "NSE:RELIANCE")
        # the scan of the last completed session (2026-11-24 is an NSE holiday)
        scans = home.user_data_dir("Sai") / "scans"
        scans.mkdir(parents=True, exist_ok=True)
        (scans / "pattern_daily_20261123.csv").write_text(scan_csv([
            ScanResult(key.split(":")[1], 7, entry=q["last_price"], stop_loss=round(q["last_price"] * 0.95, 1))
            for key, q in ltp.items()]))
        write_clock_file(home.root / "clock", datetime(2026, 11, 25, 9, 19, 58, tzinfo=IST))  # every process jumps
        poll(lambda: "place_orders_daily" in (read_heartbeat(home, "Sai") or {}).get("current_jobs", {}), 60,
             "place_orders_daily started by the scheduler")
        os.kill(first, signal.SIGKILL)
        new = poll(lambda: (i := info(home, "trader:Sai"))["statename"] == "RUNNING" and i["pid"] != first
                   and i["pid"], 30, "Sai restarted")
        try:
            poll(lambda: (b := read_heartbeat(home, "Sai")) and b["pid"] == new and not b["current_jobs"]
                 and b["jobs"]["place_orders_daily"]["last_end"], 60, "the entry run's end")
        except AssertionError as exc:
            logs = [home.user_logs_dir("Sai") / n for n in ("daemon.log", "scheduler.out.log")]
            raise AssertionError(f"{exc}\n" + "\n".join(p.read_text()[-3000:] for p in logs if p.exists())) from None
        record = read_records(home, "Sai")["place_orders_daily"]
        assert record["runs_today"] == 1 and record["done_slots"] == ["09:20"]
        assert lock_holder(home.locks_dir("Sai") / "job-place_orders_daily.lock") is None  # really over
        orders = login(kite_root, settings.api_key, settings.api_secret).orders()
        log = (home.user_logs_dir("Sai") / "place_orders_daily.log").read_text()
        runs = "\n".join(p.read_text()[-2000:] for p in (home.user_data_dir("Sai") / "orders").glob("*.json"))
        assert orders, f"no order was placed; the job's log:\n{log[-3000:]}\nrun records:\n{runs}"
        tags = Counter(o.get("tag") for o in orders)
        assert all(n == 1 for n in tags.values()), tags
        symbols = Counter(o["tradingsymbol"] for o in orders if o["transaction_type"] == "BUY")
        assert all(n == 1 for n in symbols.values()), symbols
    finally:
        if sv is not None:
            stop_supervisord(sv)
        cleanup_home(home, ["Sai"])
        shutil.rmtree(root, ignore_errors=True)
