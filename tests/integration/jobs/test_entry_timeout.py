"""Entry timeout (issue 19): every entry ends filled or cancelled. place_orders_daily waits for its
entries until their ``cancel_after`` and cancels the rest; when that run was killed, the watchdog
cancels on its next poll past ``cancel_after``; a partial fill keeps its shares (ledger).

Real worker processes, the real kiteconnect client, the real paper broker on a file clock at
SPEED. Scenario ``market`` pins make the fills: INFY trades 5 shares a minute (10 % of that is
less than one share: an entry never fills), TCS 100 a minute (at most 10 shares a minute: an
entry of ~66 shares fills in part within the 2-minute timeout).
"""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from kitefleet.clock import write_clock_file
from kitefleet.errors import ConfigError
from kitefleet.settings import load_settings
from kitefleet.state_schema import document_problem
from tests.integration.jobs.test_halt import _cancels, _status, _wait, procs  # noqa: F401 (fixture)
from tests.integration.jobs.test_place_orders_daily import DAY_A, SYMBOLS, Desk, last_json, open_desk, records
from tests.support.broker import RunningBroker, broker_factory  # noqa: F401 (fixture)
from tests.support.homes import PROJECT_ROOT, VENV_PYTHON, child_env, make_home, write_env
from workers.entry_cancel import TIMEOUT_PURPOSE, cancel_tag, entry_deadlines
from workers.entry_plan import entry_tag
from workers.entry_wait import cancel_after, tally

JOB = "place_orders_daily"
SPEED = 30.0
TIMEOUT_MIN = 2
START = DAY_A  # 10:05 of a trading day
DAY = DAY_A.date()
SCENARIO = {"market": [
    {"symbol": "INFY", "date": DAY.isoformat(), "from": "09:15", "to": "15:29", "spread_ticks": 2, "volume": 5},
    {"symbol": "TCS", "date": DAY.isoformat(), "from": "09:15", "to": "15:29", "spread_ticks": 2, "volume": 100},
]}


def _desk(tmp_path: Path, factory: Callable[..., RunningBroker], users: tuple[str, ...] = ("Som",)) -> Desk:
    desk = open_desk(tmp_path, factory, {u: {"ENTRY_TIMEOUT_MINUTES": TIMEOUT_MIN} for u in users}, START, SYMBOLS,
                     SCENARIO)
    write_clock_file(desk.clock_path, START, SPEED)
    return desk


def _pick(tmp_path: Path, symbols: list[str]) -> str:
    path = tmp_path / "pick.json"
    path.write_text(json.dumps(symbols), encoding="utf-8")
    return str(path)


def _order(desk: Desk, user: str, order_id: str) -> dict[str, Any]:
    return next(o for o in desk.kite(user).orders() if o["order_id"] == order_id)


def _entry(desk: Desk, user: str, symbol: str) -> dict[str, Any]:
    return desk.state(user)["intents"][entry_tag(user, DAY, symbol)]  # type: ignore[no-any-return]


def _cancel_intent(desk: Desk, user: str, symbol: str, order_id: str) -> dict[str, Any]:
    return desk.state(user)["intents"][cancel_tag(user, DAY, symbol, order_id)]  # type: ignore[no-any-return]


def test_an_unfilled_entry_is_cancelled_at_its_timeout_and_a_partial_fill_keeps_its_shares(
        tmp_path: Path, broker_factory: Callable[..., RunningBroker]) -> None:  # noqa: F811
    desk = _desk(tmp_path, broker_factory)
    proc = desk.run("Som", JOB, "--json", "--from", _pick(tmp_path, ["INFY", "TCS"]))
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = last_json(proc.stdout)
    assert [p["symbol"] for p in out["placed"]] == ["INFY", "TCS"]
    assert "waiting for 2 entries until" in proc.stdout and "1 partly filled and open, 1 open" in proc.stdout

    rows = {r["symbol"]: r for r in out["entry_timeout"]}
    for symbol in ("INFY", "TCS"):
        intent = _entry(desk, "Som", symbol)
        deadline = datetime.fromisoformat(intent["cancel_after"])
        # cancel_after = the send (the intent is recorded just before it) + ENTRY_TIMEOUT_MINUTES
        sent = datetime.fromisoformat(intent["created_at"])
        timeout = timedelta(minutes=TIMEOUT_MIN)
        assert timeout - timedelta(seconds=1) <= deadline - sent <= timeout
        order = _order(desk, "Som", intent["broker_id"])
        assert order["status"] == "CANCELLED" and rows[symbol]["cancelled"] is True
        (cancel,) = _cancels(desk, "Som", order["order_id"])  # cancelled once, at the timeout
        assert deadline <= datetime.fromisoformat(cancel["time"]) <= deadline + timedelta(seconds=30), cancel
        c = _cancel_intent(desk, "Som", symbol, order["order_id"])
        assert (c["kind"], c["purpose"], c["status"], c["order_status"]) == \
            ("cancel", TIMEOUT_PURPOSE, "sent", "CANCELLED")

    infy, tcs = _order(desk, "Som", rows["INFY"]["order_id"]), _order(desk, "Som", rows["TCS"]["order_id"])
    assert infy["filled_quantity"] == 0 == rows["INFY"]["filled"]
    assert 0 < tcs["filled_quantity"] == rows["TCS"]["filled"] < tcs["quantity"]
    # The filled part stays the bot's: owned in the ledger, recorded as the position.
    state = desk.state("Som")
    lots = state["ledger"]["lots"]
    assert "INFY" not in lots and sum(lot["quantity"] for lot in lots["TCS"]) == tcs["filled_quantity"]
    assert state["positions"]["TCS"]["quantity"] == tcs["filled_quantity"]
    held = {h["tradingsymbol"]: h for h in desk.kite("Som").positions()["net"]}
    assert held["TCS"]["quantity"] == tcs["filled_quantity"]
    rec = records(desk, "Som")[-1]
    assert len(records(desk, "Som")) == 1 and {r["symbol"] for r in rec["entry_timeout"]} == {"INFY", "TCS"}
    assert {o["ticker"]: o["order_status"] for o in rec["orders"]} == {"INFY": "CANCELLED", "TCS": "CANCELLED"}

    # A second run the same day sends nothing, waits for nothing, cancels nothing.
    before = desk.audit_len()
    again = desk.ok("Som", JOB, "--from", _pick(tmp_path, ["INFY", "TCS"]))
    assert again["placed"] == [] and again["entry_timeout"] == [] and desk.writes(before) == []


def test_an_entry_run_killed_during_its_wait_leaves_the_cancel_to_the_watchdog_at_the_timeout(
        tmp_path: Path, broker_factory: Callable[..., RunningBroker],  # noqa: F811
        procs: list[subprocess.Popen[str]]) -> None:  # noqa: F811
    desk = _desk(tmp_path, broker_factory)
    killed = desk.run("Som", JOB, "--from", _pick(tmp_path, ["INFY"]), fault="entry_wait:INFY")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    intent = _entry(desk, "Som", "INFY")
    order_id, deadline = intent["broker_id"], datetime.fromisoformat(intent["cancel_after"])
    assert _status(desk, "Som", order_id) == "OPEN"
    assert records(desk, "Som")[-1]["orders"][0]["order_id"] == order_id  # the record was written before the wait

    env = child_env(desk.home, TRADER_CLOCK=desk.clock_value, PYTHONPATH=str(PROJECT_ROOT))
    watchdog = subprocess.Popen([str(VENV_PYTHON), "-m", "workers", "hourly_candle_watchdog", "--user", "Som",
                                 "--json"], cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, start_new_session=True)
    procs.append(watchdog)
    _wait(lambda: _status(desk, "Som", order_id) == "CANCELLED", 60, "the entry cancelled by the watchdog")
    (cancel,) = _cancels(desk, "Som", order_id)
    poll = int(load_settings(desk.home, "Som")["WATCHDOG_POLL_SECONDS"])  # type: ignore[call-overload]
    # Not before its cancel_after; on the first poll past it.
    assert deadline <= datetime.fromisoformat(cancel["time"]) <= deadline + timedelta(seconds=2 * poll), cancel
    c = _cancel_intent(desk, "Som", "INFY", order_id)
    assert (c["purpose"], c["status"], c["order_status"]) == (TIMEOUT_PURPOSE, "sent", "CANCELLED")

    watchdog.send_signal(signal.SIGTERM)
    out, err = watchdog.communicate(timeout=30)
    assert watchdog.returncode == 0, err[-2000:]
    assert last_json(out)["outcome"] == "stopped"
    assert len(_cancels(desk, "Som", order_id)) == 1


@pytest.mark.parametrize("fault", ["after_cancel_intent", "after_cancel_send"])
def test_an_entry_run_killed_before_or_after_its_cancel_then_rerun_cancels_once(
        tmp_path: Path, broker_factory: Callable[..., RunningBroker], fault: str) -> None:  # noqa: F811
    desk = _desk(tmp_path, broker_factory)
    pick = _pick(tmp_path, ["INFY"])
    killed = desk.run("Som", JOB, "--from", pick, fault=f"{fault}:INFY")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    order_id = _entry(desk, "Som", "INFY")["broker_id"]
    assert _cancel_intent(desk, "Som", "INFY", order_id)["status"] == "pending"
    assert _status(desk, "Som", order_id) == ("OPEN" if fault == "after_cancel_intent" else "CANCELLED")

    out = desk.ok("Som", JOB, "--from", pick)
    assert out["placed"] == []
    c = _cancel_intent(desk, "Som", "INFY", order_id)
    assert (c["status"], c["order_status"]) == ("sent", "CANCELLED")
    assert _status(desk, "Som", order_id) == "CANCELLED"
    assert len(_cancels(desk, "Som", order_id)) == 1  # never cancelled twice
    # before the cancel: the rerun finishes the wait and cancels; after it: nothing is left open
    assert [(r["symbol"], r["cancelled"]) for r in out["entry_timeout"]] == \
        ([("INFY", True)] if fault == "after_cancel_intent" else [])


# --- pure parts --------------------------------------------------------------------------------------
def test_tally_counts_filled_partial_open_and_cancelled() -> None:
    book = [{"order_id": "1", "status": "COMPLETE", "filled_quantity": 5},
            {"order_id": "2", "status": "OPEN", "filled_quantity": 3},
            {"order_id": "3", "status": "OPEN", "filled_quantity": 0},
            {"order_id": "4", "status": "CANCELLED", "filled_quantity": 2},
            {"order_id": "5", "status": "OPEN", "filled_quantity": 0}]
    counts = tally(book, ["1", "2", "3", "4"])
    assert (counts.filled, counts.partial, counts.open, counts.cancelled) == (1, 1, 1, 1)
    assert counts.line() == "1 filled, 1 partly filled and open, 1 open, 1 cancelled"


def test_deadlines_are_the_sessions_sent_entries_with_a_cancel_after() -> None:
    at = cancel_after(datetime.fromisoformat("2026-03-04T10:05:07.250+05:30"), 15)
    assert at.isoformat() == "2026-03-04T10:20:07+05:30"
    base = {"kind": "order", "purpose": "entry", "symbol": "INFY", "session": "2026-03-04", "broker_id": "9",
            "cancel_after": at.isoformat(), "status": "sent"}
    intents = {"a": base, "b": {**base, "broker_id": None},
               "c": {**base, "session": "2026-03-02", "broker_id": "7"},
               "d": {**base, "purpose": "exit", "broker_id": "8"},
               "e": {**base, "cancel_after": None, "broker_id": "6"}}
    (d,) = entry_deadlines(intents, DAY).values()
    assert (d.tag, d.order_id, d.cancel_after) == ("a", "9", at)


def test_a_cancel_after_without_an_offset_or_unreadable_is_refused_by_the_state_schema() -> None:
    intent = {"tag": "T", "kind": "order", "symbol": "INFY", "status": "sent", "cancel_after": "2026-03-04T10:20:00"}
    assert "intents.T.cancel_after: expected an ISO date-time with its offset" in str(
        document_problem({"intents": {"T": intent}}))
    assert document_problem({"intents": {"T": {**intent, "cancel_after": "soon"}}}) is not None
    assert document_problem({"intents": {"T": {**intent, "cancel_after": "2026-03-04T10:20:00+05:30"}}}) is None


@pytest.mark.parametrize("value", ["0", "376", "ten", "1.5"])
def test_entry_timeout_minutes_outside_1_to_375_is_refused_naming_the_key(tmp_path: Path, value: str) -> None:
    home = make_home(tmp_path / "home")
    write_env(home, "Som", ENTRY_TIMEOUT_MINUTES=value)
    with pytest.raises(ConfigError, match="ENTRY_TIMEOUT_MINUTES"):
        load_settings(home, "Som")
    proc = subprocess.run([str(VENV_PYTHON), "-m", "workers", "whoami", "--user", "Som"], cwd=PROJECT_ROOT,
                          env=child_env(home, PYTHONPATH=str(PROJECT_ROOT)), capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 4 and "ENTRY_TIMEOUT_MINUTES" in proc.stderr, (proc.returncode, proc.stderr)
    write_env(home, "Som", ENTRY_TIMEOUT_MINUTES="375")
    assert load_settings(home, "Som")["ENTRY_TIMEOUT_MINUTES"] == 375
