"""update_cnc_stoploss's stop rule and GTT plan on plain data (legacy section 4.3, fixed)."""

from __future__ import annotations

import datetime as dt
import inspect

from kiteconnect import KiteConnect

from kitefleet.clock import IST
from kitefleet.settings import KEYS
from workers.strategy.patterns import Candle
from workers.strategy.stops import (
    CREATE,
    DEFAULT_GTT_LIMIT_BUFFER_PERCENT,
    DELETE,
    MODIFY,
    NONE,
    DesiredGtt,
    GttAction,
    compute_stop,
    gtt_limit_price,
    gtt_params,
    plan_gtt_changes,
    previous_session_low,
)


def test_first_stop_is_the_previous_low_floored_to_the_tick():
    d = compute_stop(1479.47, None, 1520.0, 0.05)
    assert d.stop == 1479.45 and d.moved and d.place and d.reason is None
    assert compute_stop(241.699, None, 250.0, 0.01).stop == 241.69


def test_stop_moves_up():
    d = compute_stop(1450.0, 1400.0, 1500.0, 0.05)
    assert (d.stop, d.moved, d.place, d.previous) == (1450.0, True, True, 1400.0)


def test_stop_is_never_lowered():
    d = compute_stop(1400.0, 1450.0, 1500.0, 0.05)
    assert (d.stop, d.moved, d.place, d.candidate) == (1450.0, False, True, 1400.0)
    assert "never lowered" in (d.reason or "")
    same = compute_stop(1450.02, 1450.0, 1500.0, 0.05)  # floors to the recorded stop
    assert (same.stop, same.moved, same.reason) == (1450.0, False, None)


def test_stop_at_or_above_ltp_is_reported_not_placed():
    above = compute_stop(1500.0, None, 1490.0, 0.05)
    assert not above.place and above.stop == 1500.0
    assert above.reason == "not placed: stop 1500.0 >= LTP 1490.0"
    equal = compute_stop(1490.0, None, 1490.0, 0.05)
    assert not equal.place and (equal.reason or "").startswith("not placed: stop 1490.0 >= LTP")
    # a kept (never lowered) stop that the price has fallen through is not placed either
    kept = compute_stop(1400.0, 1450.0, 1440.0, 0.05)
    assert kept.stop == 1450.0 and not kept.place


def test_missing_inputs():
    assert compute_stop(None, None, 100.0, 0.05) == compute_stop(None, None, 100.0, 0.05)
    nothing = compute_stop(None, None, 100.0, 0.05)
    assert nothing.stop is None and not nothing.place
    kept = compute_stop(None, 90.0, 100.0, 0.05)
    assert kept.stop == 90.0 and kept.place and not kept.moved
    no_ltp = compute_stop(90.0, None, None, 0.05)
    assert not no_ltp.place and "no LTP" in (no_ltp.reason or "")


def test_previous_session_low_uses_the_last_completed_session():
    days = [dt.datetime(2026, 3, d, tzinfo=IST) for d in (2, 3, 4)]
    lows = [90.0, 91.0, 92.0]
    cs = [Candle(d, 100, 101, lo, 100, 1) for d, lo in zip(days, lows, strict=True)]
    # 08:00 on the 5th (no candle for the 5th yet): the 4th, not two sessions back as legacy
    assert previous_session_low(cs, dt.datetime(2026, 3, 5, 8, 0, tzinfo=IST)) == 92.0
    # 14:00 on the 4th: the 4th is still forming, so the 3rd
    assert previous_session_low(cs, dt.datetime(2026, 3, 4, 14, 0, tzinfo=IST)) == 91.0
    # after the close the 4th is complete
    assert previous_session_low(cs, dt.datetime(2026, 3, 4, 16, 0, tzinfo=IST)) == 92.0
    assert previous_session_low([], dt.datetime(2026, 3, 4, 16, 0, tzinfo=IST)) is None


def test_gtt_limit_price_is_below_the_trigger_and_floored():
    assert KEYS["GTT_LIMIT_BUFFER_PERCENT"].default == DEFAULT_GTT_LIMIT_BUFFER_PERCENT == 5.0
    assert gtt_limit_price(1479.45, 5, 0.05) == 1405.45  # 1405.4775 floored
    assert gtt_limit_price(100.0, 5, 0.01) == 95.0
    assert gtt_limit_price(241.69, 2.5, 0.01) == 235.64  # 235.647...


def gtt(gid: int, symbol: str, trigger: float, price: float, qty: int, *, status: str = "active",
        side: str = "SELL", legs: int = 1, exchange: str = "NSE") -> dict:
    triggers = [trigger] if legs == 1 else [trigger, trigger * 1.2]
    return {"id": gid, "status": status, "type": "single" if legs == 1 else "two-leg",
            "condition": {"exchange": exchange, "tradingsymbol": symbol, "trigger_values": triggers},
            "orders": [{"exchange": exchange, "tradingsymbol": symbol, "transaction_type": side,
                        "quantity": qty, "price": price, "order_type": "LIMIT", "product": "CNC"}
                       for _ in range(legs)]}


def test_plan_creates_a_missing_stop():
    actions = plan_gtt_changes({"INFY": 10}, {"INFY": (1479.45, 1405.45, 10)}, [])
    assert actions == [GttAction(CREATE, "INFY", None, 1479.45, 1405.45, 10, "no stop GTT")]


def test_second_run_with_nothing_changed_sends_nothing():
    desired = {"INFY": DesiredGtt(1479.45, 1405.45, 10)}
    actions = plan_gtt_changes({"INFY": 10}, desired, [gtt(7, "INFY", 1479.45, 1405.45, 10)])
    assert [(a.action, a.gtt_id) for a in actions] == [(NONE, 7)]


def test_plan_modifies_in_place_when_trigger_or_quantity_changes():
    existing = [gtt(7, "INFY", 1450.0, 1377.5, 10)]
    moved = plan_gtt_changes({"INFY": 10}, {"INFY": (1479.45, 1405.45, 10)}, existing)
    assert [(a.action, a.gtt_id, a.trigger, a.limit_price, a.quantity) for a in moved] == [
        (MODIFY, 7, 1479.45, 1405.45, 10)]
    more = plan_gtt_changes({"INFY": 15}, {"INFY": (1450.0, 1377.5, 15)}, existing)
    assert [(a.action, a.gtt_id, a.quantity) for a in more] == [(MODIFY, 7, 15)]
    assert "quantity 10 -> 15" in more[0].reason


def test_plan_deletes_stops_on_symbols_no_longer_held():
    existing = [gtt(7, "SOLD", 90.0, 85.5, 10), gtt(8, "ZERO", 50.0, 47.5, 5)]
    actions = plan_gtt_changes({"ZERO": 0}, {}, existing)
    assert [(a.action, a.symbol, a.gtt_id) for a in actions] == [(DELETE, "SOLD", 7), (DELETE, "ZERO", 8)]


def test_duplicates_keep_the_matching_one_and_delete_the_rest():
    existing = [gtt(3, "INFY", 1400.0, 1330.0, 10), gtt(5, "INFY", 1479.45, 1405.45, 10),
                gtt(9, "INFY", 1300.0, 1235.0, 10)]
    actions = plan_gtt_changes({"INFY": 10}, {"INFY": (1479.45, 1405.45, 10)}, existing)
    assert [(a.action, a.gtt_id) for a in actions] == [(DELETE, 3), (DELETE, 9), (NONE, 5)]
    # none matches: keep (and modify) the lowest id
    existing = [gtt(9, "INFY", 1300.0, 1235.0, 10), gtt(3, "INFY", 1400.0, 1330.0, 10)]
    actions = plan_gtt_changes({"INFY": 10}, {"INFY": (1479.45, 1405.45, 10)}, existing)
    assert [(a.action, a.gtt_id) for a in actions] == [(DELETE, 9), (MODIFY, 3)]


def test_only_active_sell_gtts_on_the_exchange_count():
    existing = [gtt(1, "INFY", 1400.0, 1330.0, 10, status="triggered"),
                gtt(2, "INFY", 1400.0, 1330.0, 10, status="cancelled"),
                gtt(3, "INFY", 1600.0, 1610.0, 10, side="BUY"),
                gtt(4, "NOTHELD", 80.0, 81.0, 10, side="BUY"),
                gtt(5, "INFY", 1400.0, 1330.0, 10, exchange="BSE")]
    actions = plan_gtt_changes({"INFY": 10}, {"INFY": (1479.45, 1405.45, 10)}, existing)
    # BUY GTTs (even on symbols not held), BSE and finished GTTs are left alone
    assert [(a.action, a.symbol) for a in actions] == [(CREATE, "INFY")]


def test_a_two_leg_sell_gtt_is_replaced_by_the_single_stop():
    existing = [gtt(4, "INFY", 1400.0, 1330.0, 10, legs=2)]
    actions = plan_gtt_changes({"INFY": 10}, {"INFY": (1479.45, 1405.45, 10)}, existing)
    assert [(a.action, a.gtt_id) for a in actions] == [(MODIFY, 4)]
    with_single = [*existing, gtt(6, "INFY", 1479.45, 1405.45, 10)]
    actions = plan_gtt_changes({"INFY": 10}, {"INFY": (1479.45, 1405.45, 10)}, with_single)
    assert [(a.action, a.gtt_id) for a in actions] == [(DELETE, 4), (NONE, 6)]


def test_held_without_a_new_stop_keeps_its_gtt():
    existing = [gtt(7, "INFY", 1450.0, 1377.5, 10)]
    actions = plan_gtt_changes({"INFY": 10, "TCS": 4}, {}, existing)
    assert [(a.action, a.symbol, a.gtt_id) for a in actions] == [(NONE, "INFY", 7), (NONE, "TCS", None)]


def test_gtt_params_fit_the_kiteconnect_client():
    params = gtt_params("INFY", 1479.45, 1405.45, 10, 1520.0)
    assert set(params) <= set(inspect.signature(KiteConnect.place_gtt).parameters)
    assert set(params) <= set(inspect.signature(KiteConnect.modify_gtt).parameters)
    leg = params["orders"][0]
    assert (leg["transaction_type"], leg["order_type"], leg["product"], leg["price"]) == (
        "SELL", "LIMIT", "CNC", 1405.45)
    assert params["trigger_values"] == [1479.45] and params["last_price"] == 1520.0


def test_duplicates_without_a_new_stop_keep_the_tightest():
    existing = [gtt(3, "INFY", 1400.0, 1330.0, 10), gtt(5, "INFY", 1450.0, 1377.5, 10),
                gtt(9, "INFY", 1450.0, 1377.5, 10)]
    actions = plan_gtt_changes({"INFY": 10}, {}, existing)
    assert [(a.action, a.gtt_id) for a in actions] == [(DELETE, 3), (DELETE, 9), (NONE, 5)]


def test_a_desired_quantity_of_zero_creates_nothing():
    actions = plan_gtt_changes({"INFY": 10}, {"INFY": (1479.45, 1405.45, 0)}, [])
    assert [a.action for a in actions] == [NONE]
