"""Halt (issue 18): ``orchestrator.py halt`` stops new entries and cancels the open bot entries,
at once through a process of the user (the ``cancel_entries`` job) and, while the user's watchdog
runs, within one of its polls; ``unhalt`` lifts it, ``resume`` does not. Real worker processes,
the real kiteconnect client, the real paper broker, a file clock the test moves.

A bot entry that has not filled is set up as place_orders_daily leaves one: an entry intent of
its tag, sent through the intent protocol, resting below the market.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from kitefleet import halt
from kitefleet.clock import write_clock_file
from kitefleet.state import StateStore
from kitefleet.ticks import round_to_tick
from tests.integration.jobs.test_place_orders_daily import Desk, last_json, open_desk
from tests.integration.jobs.test_update_cnc_stoploss import SCENARIO, SYMBOLS, A, _at
from tests.support.broker import RunningBroker, broker_factory  # noqa: F401 (fixture)
from tests.support.homes import PROJECT_ROOT, VENV_PYTHON, child_env
from workers.entry_cancel import cancel_tag
from workers.intents import IntentLog, make_tag, send_order_once

ENTRY_JOB = "place_orders_daily"
POLL = 30
SPEED = 30.0


def _resting_entry(desk: Desk, user: str, symbol: str) -> str:
    """An entry of place_orders_daily that rests unfilled (limit 10 % under the LTP)."""
    tag = make_tag(user, ENTRY_JOB, A, symbol, "entry")
    price = round_to_tick(desk.ltp(user, symbol) * 0.9, 0.05, "floor")
    params = {"variety": "regular", "exchange": "NSE", "tradingsymbol": symbol, "transaction_type": "BUY",
              "quantity": 5, "product": "CNC", "order_type": "LIMIT", "price": price, "validity": "DAY"}
    intents = IntentLog(StateStore(desk.home, user, "paper"))
    result = send_order_once(desk.kite(user), intents, tag, params, purpose="entry", job=ENTRY_JOB, session=A)
    assert result.broker_id
    return str(result.broker_id)


def _status(desk: Desk, user: str, order_id: str) -> str:
    return str(next(o for o in desk.kite(user).orders() if o["order_id"] == order_id)["status"])


def _cancels(desk: Desk, user: str, order_id: str) -> list[dict[str, Any]]:
    return [r for r in desk.broker.audit(api_key=desk.api_key(user))
            if r["method"] == "DELETE" and r["path"] == f"/orders/regular/{order_id}"]


def _entry_run(desk: Desk, user: str, tmp_path: Path) -> dict[str, Any]:
    pick = tmp_path / f"{user}_pick.json"
    pick.write_text(json.dumps(["TCS"]), encoding="utf-8")
    return desk.ok(user, ENTRY_JOB, "--from", str(pick))


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


def _wait(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)
    return value


def test_halt_cancels_open_entries_within_one_poll_blocks_entries_and_only_unhalt_lifts_it(
        tmp_path: Path, broker_factory: Callable[..., RunningBroker],  # noqa: F811
        procs: list[subprocess.Popen[str]]) -> None:
    desk = open_desk(tmp_path, broker_factory, {"Som": {}, "Sai": {}, "Ana": {}}, _at(A, 10, 5), SYMBOLS, SCENARIO)
    som, sai = _resting_entry(desk, "Som", "INFY"), _resting_entry(desk, "Sai", "INFY")
    ana = _resting_entry(desk, "Ana", "INFY")
    assert {_status(desk, u, o) for u, o in (("Som", som), ("Sai", sai), ("Ana", ana))} == {"OPEN"}

    # Som's watchdog runs; the halt flag alone (the command's first step) is enough for it.
    write_clock_file(desk.clock_path, _at(A, 10, 6), SPEED)
    env = child_env(desk.home, TRADER_CLOCK=desk.clock_value, PYTHONPATH=str(PROJECT_ROOT))
    watchdog = subprocess.Popen([str(VENV_PYTHON), "-m", "workers", "hourly_candle_watchdog", "--user", "Som",
                                 "--json"], cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, start_new_session=True)
    procs.append(watchdog)
    _wait(lambda: [r for r in desk.broker.audit(api_key=desk.api_key("Som")) if r["path"] == "/portfolio/holdings"],
          30, "the watchdog's start")
    halted_at = desk.broker.now()
    halt.halt(desk.home, "Som", reason="test")
    _wait(lambda: _status(desk, "Som", som) == "CANCELLED", 30, "Som's entry cancelled by the watchdog")
    (cancel,) = _cancels(desk, "Som", som)
    assert cancel["time"] <= (halted_at + timedelta(seconds=2 * POLL)).isoformat(), (halted_at, cancel["time"])
    intent = StateStore(desk.home, "Som", "paper").read()["intents"][cancel_tag("Som", A, "INFY", som)]
    assert (intent["kind"], intent["status"], intent["order_status"]) == ("cancel", "sent", "CANCELLED")

    # Sai runs nothing: the command cancels through a process of Sai's. Ana is not halted.
    proc = desk.orchestrator("halt", "Sai", "--reason", "going on leave")
    assert proc.returncode == 0, proc.stderr
    assert "Sai: halted" in proc.stdout and f"entry {sai}: CANCELLED, 0 filled" in proc.stdout
    assert _status(desk, "Sai", sai) == "CANCELLED" and _status(desk, "Ana", ana) == "OPEN"

    # The next entry run sends nothing; resume lifts only a pause; unhalt lifts the halt.
    for user in ("Som", "Sai"):
        out = _entry_run(desk, user, tmp_path)
        assert out["placed"] == [] and "halted since" in out["refused"]["TCS"], out
    proc = desk.orchestrator("resume", "Sai")
    assert proc.returncode == 0 and "still halted (" in proc.stdout and "going on leave" in proc.stdout
    assert _entry_run(desk, "Sai", tmp_path)["placed"] == []
    proc = desk.orchestrator("unhalt", "Sai")
    assert proc.returncode == 0 and "Sai: halt lifted" in proc.stdout
    assert [p["symbol"] for p in _entry_run(desk, "Sai", tmp_path)["placed"]] == ["TCS"]
    assert [p["symbol"] for p in _entry_run(desk, "Ana", tmp_path)["placed"]] == ["TCS"]

    watchdog.send_signal(signal.SIGTERM)
    out, err = watchdog.communicate(timeout=30)
    assert watchdog.returncode == 0, err[-2000:]
    assert last_json(out)["outcome"] == "stopped"


@pytest.mark.parametrize("fault", ["after_intent", "after_send"])
def test_halt_cancel_killed_before_or_after_the_cancel_then_rerun_cancels_once(
        tmp_path: Path, broker_factory: Callable[..., RunningBroker], fault: str) -> None:  # noqa: F811
    desk = open_desk(tmp_path, broker_factory, {"Som": {}}, _at(A, 10, 5), SYMBOLS, SCENARIO)
    order = _resting_entry(desk, "Som", "INFY")
    halt.halt(desk.home, "Som", reason="test")
    killed = desk.run("Som", "cancel_entries", "--json", fault=f"{fault}:INFY")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    tag = cancel_tag("Som", A, "INFY", order)
    assert StateStore(desk.home, "Som", "paper").read()["intents"][tag]["status"] == "pending"
    assert _status(desk, "Som", order) == ("OPEN" if fault == "after_intent" else "CANCELLED")

    rerun = desk.run("Som", "cancel_entries", "--json")
    assert rerun.returncode == 0, rerun.stderr
    intent = StateStore(desk.home, "Som", "paper").read()["intents"][tag]
    assert (intent["status"], intent["order_status"]) == ("sent", "CANCELLED")
    assert _status(desk, "Som", order) == "CANCELLED"
    assert len(_cancels(desk, "Som", order)) == 1  # never cancelled twice
    rows = last_json(rerun.stdout)["cancelled"]
    assert rows == ([{"symbol": "INFY", "order_id": order, "status": "CANCELLED", "filled": 0, "error": None}]
                    if fault == "after_intent" else [])


def test_a_halt_with_an_until_ends_by_itself(tmp_path: Path) -> None:
    from tests.support.homes import make_home

    home = make_home(tmp_path / "home")
    now = datetime.fromisoformat("2026-03-04T14:00:00+05:30")
    halt.halt(home, "Som", reason="daily loss limit", by=halt.BY_LOSS_LIMIT, until=now + timedelta(hours=19))
    assert halt.is_halted(home, "Som", now) and halt.is_halted(home, "Som", now + timedelta(hours=18))
    assert not halt.is_halted(home, "Som", now + timedelta(hours=19))
    halt.halt_file(home, "Som").write_text("{not json", encoding="utf-8")
    assert halt.is_halted(home, "Som", now + timedelta(days=9))  # a damaged flag still halts
