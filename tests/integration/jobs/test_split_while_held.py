"""A split while a position is held, end to end (real paper broker with a scenario split, real
worker processes, the shared candle cache): on the ex-date morning the candle cache notices the
back-adjusted history and is refetched, the stop floor is scaled by the split's factor, a new stop
GTT is active the same morning (Kite disabled the old one) for the quantity held, with no
"stop >= LTP" freeze, and on the credit day the stop is raised to the new quantity."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path

from kitefleet.clock import IST
from tests.integration.jobs.test_place_orders_daily import open_desk
from tests.support.broker import RunningBroker, broker_factory  # noqa: F401 (fixture)

JOB = "update_cnc_stoploss"
A, B, CREDIT = date(2026, 3, 4), date(2026, 3, 5), date(2026, 3, 9)  # 03-03 is a holiday; B + 2 sessions


def _at(day: date, hh: int, mm: int) -> datetime:
    return datetime(day.year, day.month, day.day, hh, mm, tzinfo=IST)


def test_a_split_while_held_scales_the_floor_and_a_new_stop_is_active_the_same_morning(
        tmp_path: Path, broker_factory: Callable[..., RunningBroker]) -> None:  # noqa: F811
    scenario = {"actions": [{"symbol": "INFY", "ex_date": B.isoformat(), "kind": "split", "ratio": 2}]}
    # bought by hand here: MANAGE_SCOPE=all makes it the bot's to protect
    desk = open_desk(tmp_path, broker_factory, {"Som": {"MANAGE_SCOPE": "all"}}, _at(A, 10, 5), ["INFY"], scenario)
    kite = desk.kite("Som")
    kite.place_order("regular", exchange="NSE", tradingsymbol="INFY", transaction_type="BUY", quantity=10,
                     product="CNC", order_type="MARKET", market_protection=-1)
    first = {a["symbol"]: a for a in desk.ok("Som", JOB)["actions"]}["INFY"]
    assert first["action"] == "create"
    floor = desk.state("Som")["stops"]["INFY"]["stop"]
    pre_split_ltp = desk.ltp("Som", "INFY")
    assert floor < pre_split_ltp

    desk.at(_at(B, 9, 0))  # the ex-date, before the open
    kite = desk.kite("Som")
    assert kite.get_gtt(first["gtt_id"])["status"] == "disabled"
    ltp = desk.ltp("Som", "INFY")
    assert abs(ltp - pre_split_ltp / 2) < 0.1 * pre_split_ltp  # the price halved overnight
    proc = desk.run("Som", JOB, "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads([line for line in proc.stdout.splitlines() if line.startswith("{")][-1])
    act = {a["symbol"]: a for a in out["actions"]}["INFY"]
    assert act["action"] == "create" and act["gtt_id"] != first["gtt_id"] and not act["error"], act
    assert act["source"] != "fallback", act  # the scaled floor, not the fallback a frozen stop would need
    gtt = kite.get_gtt(act["gtt_id"])
    assert gtt["status"] == "active" and gtt["orders"][0]["quantity"] == 10  # the quantity held today
    assert gtt["condition"]["trigger_values"][0] < ltp  # no "stop >= LTP" freeze
    state = desk.state("Som")
    assert state["stops"]["INFY"]["stop"] >= floor / 2 - 0.05  # the floor scaled, never lower after that
    assert state["adjustments"]["INFY"]["factor"] == 2.0
    log = (desk.home.root / "logs" / "Som" / f"{JOB}.log").read_text(encoding="utf-8")
    assert "split or bonus" in log
    # The cache was dropped and fetched again: its candles are at the adjusted level now.
    token = kite.ltp("NSE:INFY")["NSE:INFY"]["instrument_token"]
    cached = json.loads(next(desk.home.root.glob(f"data/shared/*/candles/day/{token}.json")).read_text())
    assert cached["candles"][-1][4] < 0.6 * pre_split_ltp
    # A second run the same morning scales nothing again and sends nothing.
    before = desk.audit_len()
    assert desk.ok("Som", JOB)["sent"] == 0 and desk.writes(before) == []
    assert desk.state("Som")["stops"]["INFY"]["stop"] == state["stops"]["INFY"]["stop"]

    desk.at(_at(CREDIT, 9, 0))  # the new shares arrive: the stop covers them
    assert {h["tradingsymbol"]: h["quantity"] for h in desk.kite("Som").holdings()} == {"INFY": 20}
    act = {a["symbol"]: a for a in desk.ok("Som", JOB)["actions"]}["INFY"]
    assert act["action"] == "modify" and act["quantity"] == 20, act
    assert desk.kite("Som").get_gtt(act["gtt_id"])["orders"][0]["quantity"] == 20
