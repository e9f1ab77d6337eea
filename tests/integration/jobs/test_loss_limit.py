"""The daily loss limit (issue 18) in real worker processes against the real paper broker (real
kiteconnect, a file clock the test moves, a pinned falling path). Two users on the same path each
time. With the watchdog not scheduled the stop run checks the limit: the user whose limit the fall
crosses is halted until the next session's open, the other (a higher limit) is not; with
``LOSS_LIMIT_ACTION=flatten`` (issue 20) the tripped user's owned shares are sold after the halt,
a person's shares and the other user are left alone. With the watchdog running, it trips the limit
itself on a positions refresh: halted, the open entry cancelled in that poll, no new entry, and
with flatten the owned shares sold by the watchdog's own exits."""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import Callable
from datetime import date
from functools import partial
from pathlib import Path
from typing import Any

from kitefleet import halt
from kitefleet.clock import write_clock_file
from kitefleet.state import StateStore
from kitefleet.ticks import round_to_tick
from tests.integration.jobs.test_halt import _cancels, _status, _wait, procs  # noqa: F401 (fixture)
from tests.integration.jobs.test_ownership import _hand
from tests.integration.jobs.test_place_orders_daily import Desk, open_desk
from tests.integration.jobs.test_update_cnc_stoploss import _active, _at, _buy, _path
from tests.support.broker import RunningBroker, broker_factory  # noqa: F401 (fixture)
from tests.support.desk import last_json
from tests.support.homes import PROJECT_ROOT, VENV_PYTHON, child_env
from workers.intents import IntentLog, make_tag, send_order_once
from workers.ledger import owned_quantities
from workers.portfolio import held_quantities, snapshot

A, B, C = date(2026, 3, 4), date(2026, 3, 5), date(2026, 3, 6)
# INFY flat on A, then down 9 % by 10:30 on B (inside the 10 % circuit band); TCS flat.
FALLING = {"paths": [
    _path("INFY", A, ("09:15", 1500.0), ("15:29", 1500.0)),
    _path("INFY", B, ("09:15", 1495.0), ("10:30", 1365.0), ("15:29", 1365.0)),
    _path("INFY", C, ("09:15", 1365.0), ("15:29", 1365.0)),
    *[_path("TCS", d, ("09:15", 3000.0), ("15:29", 3000.0)) for d in (A, B, C)],
]}
# For the watchdog: flat until 10:00 on B (its start sees no loss), then down 9 % by 10:10.
WATCHED = {"paths": [
    _path("INFY", A, ("09:15", 1500.0), ("15:29", 1500.0)),
    _path("INFY", B, ("09:15", 1500.0), ("10:00", 1500.0), ("10:10", 1365.0), ("15:29", 1365.0)),
    *[_path("TCS", d, ("09:15", 3000.0), ("15:29", 3000.0)) for d in (A, B)],
]}
# Half the cash in one position: a 9 % fall is about 4.5 % of the bot's equity.
COMMON = {"SCHEDULE_HOURLY_CANDLE_WATCHDOG": "off", "MAX_POSITION_PERCENT": 50, "CAPITAL_DEPLOYMENT_PERCENT": 50}
WATCHDOG = "hourly_candle_watchdog"  # a loss-limit flatten's exits are the watchdog's (workers.flatten)
SPEED = 30.0


def test_the_loss_limit_trips_on_a_falling_path_and_halts_that_user_only(
        tmp_path: Path, broker_factory: Callable[..., RunningBroker]) -> None:  # noqa: F811
    users = {"Som": dict(COMMON), "Sai": {**COMMON, "MAX_DAILY_LOSS_PERCENT": 10}}
    desk = open_desk(tmp_path, broker_factory, users, _at(A, 10, 5), ["INFY", "TCS"], FALLING)
    for user in users:  # no stop run on A: the fall on B meets no stop GTT
        _buy(desk, user, ["INFY"], tmp_path)

    desk.at(_at(B, 11, 0))
    for user in users:
        proc = desk.run(user, "update_cnc_stoploss", "--json")
        assert proc.returncode == 0, proc.stderr
    now = _at(B, 11, 1)  # this process's clock is the real one: the flag is read at the test's time
    info = halt.halt_info(desk.home, "Som", now)
    assert info is not None and info["by"] == halt.BY_LOSS_LIMIT, info
    assert info["until"] == _at(C, 9, 15).isoformat() and "daily loss limit" in info["reason"]
    assert "MAX_DAILY_LOSS_PERCENT=3" in info["reason"]
    assert not halt.is_halted(desk.home, "Som", _at(C, 9, 15))  # ends by itself at the next open
    assert not halt.is_halted(desk.home, "Sai", now)
    record = desk.state("Som")["loss_limit"]
    assert record["session"] == B.isoformat() and record["tripped_at"] and record["base_equity"] > 0
    outbox = (desk.home.user_data_dir("Som") / "outbox.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(e)["kind"] for e in outbox].count("loss_limit") == 1

    # Halted: Som's entry run sends nothing; Sai's goes on. A second stop run does not halt again.
    pick = tmp_path / "pick.json"
    pick.write_text(json.dumps(["TCS"]), encoding="utf-8")
    som = desk.ok("Som", "place_orders_daily", "--from", str(pick))
    assert som["placed"] == [] and "loss limit" in som["refused"]["TCS"], som
    assert [p["symbol"] for p in desk.ok("Sai", "place_orders_daily", "--from", str(pick))["placed"]] == ["TCS"]

    # A person lifts it: the same session does not halt again (lifting it was a decision).
    assert halt.unhalt(desk.home, "Som")
    desk.ok("Som", "update_cnc_stoploss")
    assert not halt.is_halted(desk.home, "Som", now)


def _writes(desk: Desk, user: str, since: int) -> list[dict[str, Any]]:
    """``user``'s audited writes (orders, GTTs) from row ``since`` of that user's audit on."""
    rows = desk.broker.audit(api_key=desk.api_key(user))[since:]
    return [r for r in rows if r["method"] in ("POST", "PUT", "DELETE") and r["path"].startswith(("/orders", "/gtt"))]


def test_the_loss_limit_with_loss_limit_action_flatten_flattens_that_user_only(
        tmp_path: Path, broker_factory: Callable[..., RunningBroker]) -> None:  # noqa: F811
    """The stop run trips Som's limit (LOSS_LIMIT_ACTION=flatten): after the halt the INFY the bot
    owns is sold as halt --flatten sells it, the 3 INFY Som bought by hand stay. Sai, on the same
    broker and path with flatten set too but a limit the fall does not reach, is not touched."""
    users = {"Som": {**COMMON, "LOSS_LIMIT_ACTION": "flatten"},
             "Sai": {**COMMON, "LOSS_LIMIT_ACTION": "flatten", "MAX_DAILY_LOSS_PERCENT": 10}}
    desk = open_desk(tmp_path, broker_factory, users, _at(A, 10, 5), ["INFY", "TCS"], FALLING)
    for user in users:
        _buy(desk, user, ["INFY"], tmp_path)
    _hand(desk, "Som", "INFY", "BUY", 3)  # a person's shares, not the bot's
    owned = {u: owned_quantities(desk.state(u)["ledger"])["INFY"] for u in users}
    assert owned["Som"] > 3

    desk.at(_at(B, 10, 59))
    write_clock_file(desk.clock_path, _at(B, 11, 0), SPEED)  # the flatten's looks are 10 market s apart
    sai_before = len(desk.broker.audit(api_key=desk.api_key("Sai")))
    proc = desk.run("Som", "update_cnc_stoploss", "--json")
    assert proc.returncode == 0, proc.stderr
    assert halt.halt_info(desk.home, "Som", _at(B, 11, 1))["by"] == halt.BY_LOSS_LIMIT  # type: ignore[index]
    assert f"daily loss limit, LOSS_LIMIT_ACTION=flatten: sold {owned['Som']} INFY" in proc.stderr, proc.stderr[-3000:]

    # Som: the bot's shares sold by one exit of the watchdog's kind (through the intent protocol),
    # the person's 3 left; the ledger is empty and no bot stop is left on the person's shares.
    tag = make_tag("Som", WATCHDOG, B, "INFY", "exit")
    sells = [o for o in desk.kite("Som").orders() if o["transaction_type"] == "SELL"]
    assert [(o["tag"], o["quantity"], o["status"]) for o in sells] == [(tag, owned["Som"], "COMPLETE")]
    assert desk.state("Som")["intents"][tag]["status"] == "sent"
    (record,) = desk.state("Som")["watchdog"][B.isoformat()]["symbols"]["INFY"]["exits"]
    assert (record["rule"], record["tag"]) == ("flatten", tag) and "daily loss limit" in record["note"], record
    assert held_quantities(snapshot(desk.kite("Som"))) == {"INFY": 3}
    assert owned_quantities(desk.state("Som")["ledger"]) == {}
    assert not _active(desk, "Som")

    # Sai: not halted, nothing written by Sai's key, Sai's shares and orders as they were.
    assert not halt.is_halted(desk.home, "Sai", _at(B, 11, 1))
    assert _writes(desk, "Sai", sai_before) == []
    proc = desk.run("Sai", "update_cnc_stoploss", "--json")  # Sai's own check: below Sai's 10 %, no trip
    assert proc.returncode == 0, proc.stderr
    assert not halt.is_halted(desk.home, "Sai", _at(B, 11, 1))
    assert held_quantities(snapshot(desk.kite("Sai"))) == {"INFY": owned["Sai"]}
    assert [o for o in desk.kite("Sai").orders() if o["transaction_type"] == "SELL"] == []
    assert owned_quantities(desk.state("Sai")["ledger"]) == {"INFY": owned["Sai"]}

    # A second stop run of Som while the halt stands: nothing is left to sell, nothing sent.
    som_before = len(desk.broker.audit(api_key=desk.api_key("Som")))
    proc = desk.run("Som", "update_cnc_stoploss", "--json")
    assert proc.returncode == 0, proc.stderr
    assert "nothing the bot owns was left to sell" in proc.stderr, proc.stderr[-3000:]
    assert _writes(desk, "Som", som_before) == []
    assert held_quantities(snapshot(desk.kite("Som"))) == {"INFY": 3}


def _resting_entry(desk: Desk, user: str, symbol: str, session: date) -> str:
    """An entry of place_orders_daily that rests unfilled (limit 10 % under the LTP)."""
    tag = make_tag(user, "place_orders_daily", session, symbol, "entry")
    price = round_to_tick(desk.ltp(user, symbol) * 0.9, 0.05, "floor")
    params = {"variety": "regular", "exchange": "NSE", "tradingsymbol": symbol, "transaction_type": "BUY",
              "quantity": 5, "product": "CNC", "order_type": "LIMIT", "price": price, "validity": "DAY"}
    result = send_order_once(desk.kite(user), IntentLog(StateStore(desk.home, user, "paper")), tag, params,
                             purpose="entry", job="place_orders_daily", session=session)
    assert result.broker_id
    return str(result.broker_id)


def test_the_watchdog_trips_the_loss_limit_halts_cancels_entries_in_that_poll_and_with_flatten_sells(
        tmp_path: Path, broker_factory: Callable[..., RunningBroker],  # noqa: F811
        procs: list[subprocess.Popen[str]]) -> None:  # noqa: F811
    """Both users' watchdogs run through the fall (issue 18: the watchdog's own loss-limit path).
    Som has LOSS_LIMIT_ACTION=flatten and 3 INFY of a person's; Sai the default (halt)."""
    watched: dict[str, object] = {"MAX_POSITION_PERCENT": 50, "CAPITAL_DEPLOYMENT_PERCENT": 50}
    users = {"Som": {**watched, "LOSS_LIMIT_ACTION": "flatten"}, "Sai": dict(watched)}

    def polls(user: str) -> list[dict[str, Any]]:
        return [r for r in desk.broker.audit(api_key=desk.api_key(user)) if r["path"] == "/quote/ltp"]

    def halted(user: str) -> dict[str, Any] | None:
        return halt.halt_info(desk.home, user, _at(B, 10, 30))

    def cancelled(user: str) -> bool:
        return _status(desk, user, entries[user]) == "CANCELLED"
    desk = open_desk(tmp_path, broker_factory, users, _at(A, 10, 5), ["INFY", "TCS"], WATCHED)
    for user in users:
        _buy(desk, user, ["INFY"], tmp_path)
    _hand(desk, "Som", "INFY", "BUY", 3)
    owned = {u: owned_quantities(desk.state(u)["ledger"])["INFY"] for u in users}

    desk.at(_at(B, 9, 58))
    entries = {u: _resting_entry(desk, u, "TCS", B) for u in users}
    write_clock_file(desk.clock_path, _at(B, 10, 0), SPEED)
    env = child_env(desk.home, TRADER_CLOCK=desk.clock_value, PYTHONPATH=str(PROJECT_ROOT))
    for user in users:
        procs.append(subprocess.Popen([str(VENV_PYTHON), "-m", "workers", WATCHDOG, "--user", user, "--json"],
                                      cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True, start_new_session=True))
    for user in users:
        _wait(partial(polls, user), 60, f"{user}'s first poll")
        assert not halt.is_halted(desk.home, user, _at(B, 10, 0))  # no loss at the start

    # The watchdog halts each user on the positions refresh after the fall crosses the limit.
    infos = {u: _wait(partial(halted, u), 90, f"{u}'s loss-limit halt") for u in users}
    for user, info in infos.items():
        assert info["by"] == halt.BY_LOSS_LIMIT and info["until"] == _at(C, 9, 15).isoformat(), info
        assert _at(B, 10, 0).isoformat() < info["halted_at"] < _at(B, 10, 20).isoformat(), info
        # The open entry is cancelled in the poll that halted: no LTP poll of the user's in between.
        _wait(partial(cancelled, user), 30, f"{user}'s entry cancelled")
        (cancel,) = _cancels(desk, user, entries[user])
        between = [r for r in polls(user) if info["halted_at"] <= r["time"] <= cancel["time"]]
        assert between == [], (info["halted_at"], cancel["time"], between)

    # Som (flatten): the owned shares sold by the watchdog's exit, the person's 3 stay.
    tag = make_tag("Som", WATCHDOG, B, "INFY", "exit")
    _wait(lambda: [o for o in desk.kite("Som").orders() if o["tag"] == tag and o["status"] == "COMPLETE"], 60,
          "Som's flatten exit filled")
    sells = [o for o in desk.kite("Som").orders() if o["transaction_type"] == "SELL"]
    assert [(o["tag"], o["quantity"]) for o in sells] == [(tag, owned["Som"])]
    assert held_quantities(snapshot(desk.kite("Som"))) == {"INFY": 3}
    # Sai (halt): halted and the entry cancelled, the shares kept.
    assert [o for o in desk.kite("Sai").orders() if o["transaction_type"] == "SELL"] == []
    assert held_quantities(snapshot(desk.kite("Sai"))) == {"INFY": owned["Sai"]}

    # No new entries for either while the halt stands.
    pick = tmp_path / "pick.json"
    pick.write_text(json.dumps(["TCS"]), encoding="utf-8")
    for user in users:
        out = desk.ok(user, "place_orders_daily", "--from", str(pick))
        assert out["placed"] == [] and "loss limit" in out["refused"]["TCS"], out

    results: dict[str, str] = {}
    for user, proc in zip(users, procs, strict=True):
        proc.send_signal(signal.SIGTERM)
        stdout, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err[-3000:]
        assert last_json(stdout)["outcome"] == "stopped"
        results[user] = err
    assert results["Som"].count("daily loss limit, LOSS_LIMIT_ACTION=flatten: selling every share the bot owns "
                                f"({owned['Som']} INFY)") == 1, results["Som"][-3000:]
    assert "LOSS_LIMIT_ACTION=flatten" not in results["Sai"]
    (record,) = desk.state("Som")["watchdog"][B.isoformat()]["symbols"]["INFY"]["exits"]
    assert (record["rule"], record["tag"], record["status"]) == ("flatten", tag, "sent"), record
