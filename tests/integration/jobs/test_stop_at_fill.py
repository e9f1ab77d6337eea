"""A broker stop from the first fill (workers.bot_stop): place_orders_daily, the watchdog and the
stop job against the real paper broker's realistic market (spread, depth, partial fills), through
the unmodified kiteconnect client, in real worker processes."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import date
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from kitefleet.state import StateStore
from kitefleet.ticks import round_to_tick
from tests.integration.jobs.test_place_orders_daily import DAY_A, PREV_SESSION, book_by_tag, records, scan_row
from tests.support.broker import RunningBroker, broker_factory  # noqa: F401 (fixture)
from tests.support.desk import Desk, open_desk
from workers.bot_stop import FillGuard, StopSettings
from workers.gtt import stop_ownership
from workers.intents import IntentLog, make_tag

JOB = "place_orders_daily"
SYMBOLS = ["INFY", "TCS", "SBIN", "RELIANCE"]


def active_gtts(desk: Desk, user: str) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for g in desk.kite(user).get_gtts():
        if g["status"] == "active":
            out.setdefault(g["condition"]["tradingsymbol"], []).append(g)
    return out


def prev_low(desk: Desk, user: str, symbol: str, day: date = PREV_SESSION) -> float:
    kite = desk.kite(user)
    token = kite.ltp(f"NSE:{symbol}")[f"NSE:{symbol}"]["instrument_token"]
    (candle,) = kite.historical_data(token, day, day, "day")
    return float(candle["low"])


def leg(g: dict[str, Any]) -> dict[str, Any]:
    [only] = g["orders"]
    return only


def test_a_filled_entry_has_an_active_gtt_at_the_scan_stop_right_after_the_entry_run_and_a_from_entry_the_stop_rule(
        tmp_path: Path, broker_factory: Callable[..., RunningBroker]) -> None:  # noqa: F811
    desk = open_desk(tmp_path, broker_factory, {"Som": {}}, DAY_A, SYMBOLS)
    ltp = desk.ltp("Som", "INFY")
    scan_stop = round(ltp * 0.93, 2) + 0.02  # off the tick: floored
    desk.write_scan("Som", PREV_SESSION, [scan_row("INFY", 6, ltp, scan_stop, ltp * 1.2)])
    out = desk.ok("Som", JOB)
    [placed] = out["placed"]
    [order] = book_by_tag(desk.kite("Som"))[placed["tag"]]
    assert order["status"] == "COMPLETE"
    [gtt] = active_gtts(desk, "Som")["INFY"]
    want = round_to_tick(scan_stop, 0.05, "floor")
    assert gtt["condition"]["trigger_values"] == [want]
    assert (leg(gtt)["transaction_type"], leg(gtt)["product"]) == ("SELL", "CNC")
    assert leg(gtt)["quantity"] == order["quantity"]
    state = desk.state("Som")
    assert state["stops"]["INFY"] == {**state["stops"]["INFY"], "gtt_id": gtt["id"], "stop": want,
                                      "source": "scan_stop", "quantity": order["quantity"], "trigger": want}
    assert gtt["id"] in stop_ownership(state).owned_ids  # the stop job's tag scheme: the bot's own
    assert [i["job"] for i in state["intents"].values() if i["kind"] == "gtt"] == ["update_cnc_stoploss"]
    rec = {o["ticker"]: o for o in records(desk, "Som")[-1]["orders"]}["INFY"]
    assert rec["gtt_success"] is True and rec["stop_gtt_id"] == gtt["id"] and rec["stop_source"] == "scan_stop"

    # A --from list without a stop: the stop job's rule, the previous session's low (floored) when
    # it is at least STOP_MIN_GAP_PERCENT under the LTP.
    pick = tmp_path / "pick.json"
    pick.write_text(json.dumps(["TCS"]), encoding="utf-8")
    out = desk.ok("Som", JOB, "--from", str(pick))
    [placed] = out["placed"]
    [gtt] = active_gtts(desk, "Som")["TCS"]
    low = round_to_tick(prev_low(desk, "Som", "TCS"), 0.05, "floor")
    assert low < desk.ltp("Som", "TCS") * 0.99
    assert gtt["condition"]["trigger_values"] == [low] and leg(gtt)["quantity"] == placed["quantity"]
    assert desk.state("Som")["stops"]["TCS"]["source"] == "prev_session_low"

    # The stop job then finds both stops its own: nothing new is sent (trailing comes with a higher low).
    before = desk.audit_len()
    stop_run = desk.ok("Som", "update_cnc_stoploss")
    assert {a["symbol"]: a["action"] for a in stop_run["actions"]}["TCS"] == "none"
    assert not [w for w in desk.writes(before) if w["method"] == "POST"]
    assert len(active_gtts(desk, "Som")["INFY"]) == 1 and len(active_gtts(desk, "Som")["TCS"]) == 1


def test_a_scan_stop_half_a_percent_under_the_ltp_is_not_placed_as_such_the_fallback_keeps_the_gap(
        tmp_path: Path, broker_factory: Callable[..., RunningBroker]) -> None:  # noqa: F811
    # SBIN's previous low sits within 1 % of today's price too: the fallback, 5 % under the LTP.
    day = DAY_A.date().isoformat()
    scenario = {"paths": [{"symbol": "SBIN", "date": PREV_SESSION.isoformat(),
                           "waypoints": [["09:15", 1000.0], ["15:29", 1000.0]]},
                          {"symbol": "SBIN", "date": day, "waypoints": [["09:15", 1002.0], ["15:29", 1002.0]]}]}
    desk = open_desk(tmp_path, broker_factory, {"Som": {}}, DAY_A, SYMBOLS, scenario)
    ltp = desk.ltp("Som", "SBIN")
    assert prev_low(desk, "Som", "SBIN") > ltp * 0.99
    desk.write_scan("Som", PREV_SESSION, [scan_row("SBIN", 6, ltp, round(ltp * 0.995, 1), ltp * 1.2)])
    out = desk.ok("Som", JOB)
    [placed] = out["placed"]
    [gtt] = active_gtts(desk, "Som")["SBIN"]
    trig = gtt["condition"]["trigger_values"][0]
    live = desk.ltp("Som", "SBIN")
    assert trig <= live * 0.99 and trig == round_to_tick(gtt["condition"]["last_price"] * 0.95, 0.05, "floor")
    assert desk.state("Som")["stops"]["SBIN"]["source"] == "fallback"
    assert leg(gtt)["quantity"] == placed["quantity"]


def test_a_partial_fill_gets_a_stop_for_the_filled_part_and_the_watchdog_raises_it_within_one_poll(
        tmp_path: Path, broker_factory: Callable[..., RunningBroker]) -> None:  # noqa: F811
    # INFY trades 2,000 shares a minute: at most 200 of the entry fill per minute.
    day = DAY_A.date().isoformat()
    scenario = {"market": [{"symbol": "INFY", "date": day, "from": "09:15", "to": "15:29", "volume": 2000}]}
    # MAX_POSITION_PERCENT 100: an entry the size limits leave whole, so one minute cannot fill it.
    desk = open_desk(tmp_path, broker_factory, {"Som": {"WATCHDOG_POLL_SECONDS": 5, "MAX_POSITION_PERCENT": 100}},
                     DAY_A, SYMBOLS, scenario)
    ltp = desk.ltp("Som", "INFY")
    desk.write_scan("Som", PREV_SESSION, [scan_row("INFY", 6, ltp, round(ltp * 0.93, 1), ltp * 1.2)])
    # --no-wait: the run returns with the entry still open (its timeout is the watchdog's to apply).
    out = desk.ok("Som", JOB, "--no-wait")
    [placed] = out["placed"]
    [order] = book_by_tag(desk.kite("Som"))[placed["tag"]]
    filled = order["filled_quantity"]
    assert 0 < filled < order["quantity"] and order["status"] == "OPEN"
    [gtt] = active_gtts(desk, "Som")["INFY"]
    assert leg(gtt)["quantity"] == filled and desk.state("Som")["stops"]["INFY"]["quantity"] == filled
    tag = make_tag("Som", JOB, DAY_A.date(), "INFY", "entry")
    assert tag == placed["tag"]

    # Three minutes on, more has filled: the watchdog's next poll (its FillGuard, with the real
    # client and state) raises the GTT's quantity to the filled shares; trigger and limit kept.
    desk.at(DAY_A.replace(minute=8))
    [order] = book_by_tag(desk.kite("Som"))[tag]
    assert order["filled_quantity"] > filled
    store = StateStore(desk.home, "Som", "paper")
    guard = FillGuard(kite=desk.kite("Som"), store=store, intents=IntentLog(store),
                      market=SimpleNamespace(tick_size=lambda s: 0.05), session=DAY_A.date(),
                      settings=StopSettings(), log=logging.getLogger("test"))
    [done] = guard.poll(DAY_A.replace(minute=8))
    assert done.action == "modify" and done.error is None
    [after] = active_gtts(desk, "Som")["INFY"]
    assert after["id"] == gtt["id"] and after["condition"]["trigger_values"] == gtt["condition"]["trigger_values"]
    assert leg(after)["quantity"] == order["filled_quantity"] == desk.state("Som")["stops"]["INFY"]["quantity"]
    before = desk.audit_len()
    assert guard.poll(DAY_A.replace(minute=8)) == [] and desk.writes(before) == []  # covered: nothing sent


def test_an_entry_run_killed_after_the_fill_before_the_stop_gets_its_stop_from_the_rerun(
        tmp_path: Path, broker_factory: Callable[..., RunningBroker]) -> None:  # noqa: F811
    desk = open_desk(tmp_path, broker_factory, {"Som": {}}, DAY_A, SYMBOLS)
    ltp = desk.ltp("Som", "INFY")
    desk.write_scan("Som", PREV_SESSION, [scan_row("INFY", 6, ltp, round(ltp * 0.93, 1), ltp * 1.2)])
    killed = desk.run("Som", JOB, fault="after_send:INFY")
    assert killed.returncode == -9, killed.stderr
    assert "INFY" not in active_gtts(desk, "Som") and not desk.state("Som").get("stops")
    out = desk.ok("Som", JOB)
    assert out["placed"] == []  # the entry is not sent again ...
    [gtt] = active_gtts(desk, "Som")["INFY"]  # ... and its filled shares get their stop
    assert gtt["condition"]["trigger_values"] == [round(ltp * 0.93, 1)]
    assert desk.state("Som")["stops"]["INFY"]["gtt_id"] == gtt["id"]
    before = desk.audit_len()
    desk.ok("Som", JOB)
    assert desk.writes(before) == []  # covered: a third run sends nothing
