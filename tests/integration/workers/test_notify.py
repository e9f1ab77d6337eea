"""Notifications end to end with real Apprise: events in each user's outbox, the real ``notify`` job
process, a local HTTP sink per user standing in for the service (tests/support/sink.py)."""

from __future__ import annotations

import json
import subprocess
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from kitefleet import clock
from kitefleet import outbox as ob
from kitefleet.clock import IST, SimulatedClock, parse_spec
from kitefleet.home import Home
from kitefleet.settings import load_settings, notify_url_secrets
from tests.support.homes import PROJECT_ROOT, VENV_PYTHON, child_env, make_home, write_env
from tests.support.sink import Sink


def sink(sinks: list[Sink], path: str) -> Sink:
    s = Sink(path)
    sinks.append(s)
    return s


def notify(home: Home, user: str, *args: str, fault: str | None = None, clock_at: str | None = None,
           timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = child_env(home, PYTHONPATH=str(PROJECT_ROOT))
    if fault:
        env["KITEFLEET_FAULT"] = fault
    if clock_at:
        env["TRADER_CLOCK"] = clock_at
    return subprocess.run([str(VENV_PYTHON), "-m", "workers", "notify", "--user", user, *args], cwd=PROJECT_ROOT,
                          env=env, capture_output=True, text=True, timeout=timeout, check=False)


def day_of_events(home: Home, user: str, day: int = 1) -> list[str]:
    """A small replayed day's events for ``user``, in the order the jobs would emit them."""
    return [
        ob.emit(home, user, "entry_placed", f"{user}: BUY 10 INFY @ 1500 placed"),  # all only
        ob.emit(home, user, "fill", f"{user}: bought 10 INFY @ 1500", key=f"fill|INFY|{day}"),
        ob.emit(home, user, "stop_not_placed", f"{user}: no stop for INFY", act="orchestrator.py doctor"),
        ob.emit(home, user, "exit", f"{user}: sold 10 INFY @ 1490", key=f"exit|INFY|{day}"),
    ]


def test_two_users_each_get_only_their_events_in_order(tmp_path: Path, sinks: list[Sink]) -> None:
    home = make_home(tmp_path / "home")
    som, sai = sink(sinks, "hook-som-A1"), sink(sinks, "hook-sai-B2")
    write_env(home, "Som", NOTIFY_URLS=som.url)
    write_env(home, "Sai", NOTIFY_URLS=sai.url, NOTIFY_LEVEL="all")
    som_ids, sai_ids = day_of_events(home, "Som"), day_of_events(home, "Sai")
    for user in ("Som", "Sai"):
        done = notify(home, user)
        assert done.returncode == 0, done.stderr
    assert som.ids() == som_ids[1:]  # trades: no entry placed
    assert sai.ids() == sai_ids  # all
    assert all("Som:" in t for t in som.texts()) and all("Sai:" in t for t in sai.texts())
    assert "To act: orchestrator.py doctor" in som.texts()[1]
    # delivered once: a second run sends nothing
    assert notify(home, "Som").returncode == 0
    assert len(som.messages()) == 3
    assert not ob.needs_delivery(home, "Som")


def test_warnings_level_leaves_out_fills() -> None:
    fill, exit_, entry = ({"kind": k, "level": ob.KINDS[k]} for k in ("fill", "exit", "entry_placed"))
    assert [ob.wanted("warnings", e) for e in (fill, exit_, entry)] == [False, True, False]
    assert [ob.wanted("trades", e) for e in (fill, exit_, entry)] == [True, True, False]
    assert [ob.wanted("all", e) for e in (fill, exit_, entry)] == [True, True, True]


def test_a_keyed_event_emitted_twice_is_one_event(tmp_path: Path) -> None:
    home = make_home(tmp_path / "home")
    first = ob.emit(home, "Som", "fill", "x", key="k")
    assert ob.emit(home, "Som", "fill", "x", key="k") == first
    assert len(ob.read_events(home, "Som")) == 1


def test_sink_down_then_back_everything_arrives_in_order(tmp_path: Path, sinks: list[Sink]) -> None:
    home = make_home(tmp_path / "home")
    som = sink(sinks, "hook-som-A1")
    write_env(home, "Som", NOTIFY_URLS=som.url)
    som.stop()  # down for the first half of the day
    first = day_of_events(home, "Som")[1:]
    assert notify(home, "Som").returncode == 0
    assert som.messages() == []
    cursor = ob.read_cursor(home, "Som")
    assert cursor["next_try"] is not None and ob.needs_delivery(home, "Som", wall=cursor["next_try"])
    som.start()  # back, same port
    second = day_of_events(home, "Som", day=2)[1:]
    assert notify(home, "Som").returncode == 0
    assert som.ids() == first + second


@pytest.mark.parametrize("point", ["notify_before_send", "notify_after_send"])
def test_kill_during_delivery_loses_nothing_and_duplicates_at_most_once(
        tmp_path: Path, sinks: list[Sink], point: str) -> None:
    home = make_home(tmp_path / "home")
    som = sink(sinks, "hook-som-A1")
    write_env(home, "Som", NOTIFY_URLS=som.url)
    ids = day_of_events(home, "Som")[1:]
    killed = notify(home, "Som", fault=f"{point}:{ids[1]}")
    assert killed.returncode == -9, killed.stderr
    assert notify(home, "Som").returncode == 0
    got = som.ids()
    expected = ids if point == "notify_before_send" else [ids[0], ids[1], ids[1], ids[2]]
    assert got == expected


def test_an_entry_apprise_cannot_read_is_exit_4_by_position(tmp_path: Path, sinks: list[Sink]) -> None:
    home = make_home(tmp_path / "home")
    som = sink(sinks, "hook-som-A1")
    write_env(home, "Som", NOTIFY_URLS=f"{som.url},nosuchservice://tok3n-Q9Z8")
    done = notify(home, "Som")
    assert done.returncode == 4
    assert "NOTIFY_URLS entry 2" in done.stderr
    assert "tok3n" not in done.stderr and "nosuchservice" not in done.stderr


def test_notify_urls_never_reach_logs_or_output(tmp_path: Path, sinks: list[Sink]) -> None:
    home = make_home(tmp_path / "home")
    som = sink(sinks, "hook-som-S3CRET")
    url = f"{som.url}?token=T0KEN-abc-123"
    write_env(home, "Som", NOTIFY_URLS=url, LOG_LEVEL="DEBUG")
    secrets = notify_url_secrets(url)
    assert "hook-som-S3CRET" in secrets and "T0KEN-abc-123" in secrets
    assert set(load_settings(home, "Som").secrets()) >= set(secrets)
    day_of_events(home, "Som")
    done = notify(home, "Som")
    tested = notify(home, "Som", "--test")
    assert done.returncode == 0 and tested.returncode == 0
    assert '"service": "JSON"' in tested.stdout
    shown = done.stdout + done.stderr + tested.stdout + tested.stderr
    shown += "".join(p.read_text(errors="replace") for p in home.logs_dir.rglob("*") if p.is_file())
    shown += "".join(p.read_text(errors="replace") for p in home.data_dir.rglob("*.json*") if p.is_file())
    assert len(som.messages()) == 4
    for part in ("S3CRET", "T0KEN-abc-123", str(som.port)):
        assert part not in shown, part


def test_bad_env_file_still_notifies_with_its_notify_keys(tmp_path: Path, sinks: list[Sink]) -> None:
    home = make_home(tmp_path / "home")
    som = sink(sinks, "hook-som-A1")
    write_env(home, "Som", NOTIFY_URLS=som.url, MIN_SCROE="5")  # a typo: the trader exits 4
    done = notify(home, "Som", "--event", "trader_stopped", "--exit", "4", "--expected")
    assert done.returncode == 0, done.stderr
    assert len(som.texts()) == 1 and "trader stopped: configuration" in som.texts()[0]
    assert json.loads((home.user_data_dir("Som") / "notify.json").read_text())["notify_only"] is True
    write_env(home, "Som", NOTIFY_URLS=som.url)  # fixed: a run of the whole file
    assert notify(home, "Som").returncode == 0
    assert json.loads((home.user_data_dir("Som") / "notify.json").read_text())["notify_only"] is False


def test_bad_env_file_not_0600_cannot_notify(tmp_path: Path, sinks: list[Sink]) -> None:
    home = make_home(tmp_path / "home")
    som = sink(sinks, "hook-som-A1")
    write_env(home, "Som", NOTIFY_URLS=som.url, file_mode=0o644)
    done = notify(home, "Som", "--event", "trader_stopped", "--exit", "4", "--expected")
    assert done.returncode == 4
    assert "cannot notify" in done.stderr
    assert som.messages() == []
    status = (home.user_data_dir("Som") / "notify.json").read_text()
    assert '"can_notify": false' in status
    env = child_env(home, PYTHONPATH=str(PROJECT_ROOT))
    out = subprocess.run([str(VENV_PYTHON), str(PROJECT_ROOT / "orchestrator.py"), "status", "--json", "--no-live"],
                         cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=60, check=False)
    row = json.loads(out.stdout)["users"][0]
    assert "cannot notify" in row["problems"] and "not 0600" in row["notify"]


def test_a_hanging_sink_never_delays_an_emit(tmp_path: Path, sinks: list[Sink]) -> None:
    """The exit path only appends to the outbox; a notify job stuck on a dead endpoint holds no
    lock an emit needs."""
    home = make_home(tmp_path / "home")
    som = sink(sinks, "hook-som-A1")
    write_env(home, "Som", NOTIFY_URLS=som.url)
    som.hang.set()
    day_of_events(home, "Som")
    env = child_env(home, PYTHONPATH=str(PROJECT_ROOT))
    proc = subprocess.Popen([str(VENV_PYTHON), "-m", "workers", "notify", "--user", "Som"], cwd=PROJECT_ROOT,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not (home.locks_dir("Som") / "job-notify.lock").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        started = time.monotonic()
        eid = ob.emit(home, "Som", "exit", "sold 10 INFY @ 1490 (watchdog)")
        assert eid is not None
        assert time.monotonic() - started < 0.5
        assert proc.poll() is None  # still stuck on the sink
    finally:
        som.release.set()
        proc.wait(30)


def test_notify_test_command_names_positions_and_services_never_urls(tmp_path: Path, sinks: list[Sink]) -> None:
    home = make_home(tmp_path / "home")
    som = sink(sinks, "hook-som-A1")
    dead = sink(sinks, "hook-dead-D4")
    dead.stop()
    write_env(home, "Som", NOTIFY_URLS=f"{som.url},{dead.url}")
    write_env(home, "Sai")
    env = child_env(home, PYTHONPATH=str(PROJECT_ROOT))
    out = subprocess.run([str(VENV_PYTHON), str(PROJECT_ROOT / "orchestrator.py"), "notify-test", "--all", "--json"],
                         cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 1, out.stderr
    users = {u["user"]: u for u in json.loads(out.stdout)["users"]}
    assert users["Som"]["results"] == [{"position": 1, "service": "JSON", "ok": True},
                                       {"position": 2, "service": "JSON", "ok": False}]
    assert users["Sai"]["results"] == []
    assert len(som.messages()) == 1 and "test" in som.texts()[0].lower()
    for part in ("hook-som-A1", "hook-dead-D4", str(som.port), str(dead.port)):
        assert part not in out.stdout + out.stderr


def test_a_notify_killed_mid_compaction_loses_nothing_and_the_next_run_finishes_it(
        tmp_path: Path, sinks: list[Sink]) -> None:
    """The real job and its fault point (``outbox_compact:outbox_written``: the outbox rewritten, its
    marks and cursor not yet); the in-process table of every step is in tests/workers/jobs/test_notify.py."""
    home = make_home(tmp_path / "home")
    som = sink(sinks, "hook-som-A1")
    write_env(home, "Som", NOTIFY_URLS=som.url, NOTIFY_LEVEL="warnings")  # fills are skipped: a quick big day
    now = datetime.now(IST)
    then = (now - timedelta(days=60)).isoformat()
    try:
        clock.set_clock(SimulatedClock(parse_spec(then)))
        for i in range(ob.COMPACT_MIN_BYTES // 180):
            ob.emit(home, "Som", "fill", f"bought 10 INFY @ 1500 (order {i:06d})")
        old = ob.emit(home, "Som", "exit", "sold 10 INFY @ 1490")
    finally:
        clock.set_clock(None)
    assert notify(home, "Som", clock_at=then).returncode == 0  # that day: sent, and nothing old to compact
    assert ob.read_cursor(home, "Som")["offset"] >= ob.COMPACT_MIN_BYTES
    assert len(ob.read_events(home, "Som")) == ob.COMPACT_MIN_BYTES // 180 + 1
    som.stop()
    young = ob.emit(home, "Som", "exit", "sold 5 TCS @ 3200")
    killed = notify(home, "Som", fault="outbox_compact:outbox_written")  # today: young waits for the sink
    assert killed.returncode == -9, killed.stderr
    assert [e["id"] for e in ob.read_events(home, "Som")] == [young]
    som.start()
    cursor = ob.read_cursor(home, "Som")
    assert ob.needs_delivery(home, "Som", wall=cursor["next_try"])
    ob.write_cursor(home, "Som", cursor["offset"], None, cursor["tries"])  # the back-off is over
    assert notify(home, "Som").returncode == 0
    assert som.ids() == [old, young]
    assert [e["id"] for e in ob.read_events(home, "Som")] == [young]
    assert set(ob.read_done(home, "Som")) == {young} and not ob.needs_delivery(home, "Som")
