"""update_cnc_stoploss's stop rule and GTT plan on plain data (legacy section 4.3, fixed)."""

from __future__ import annotations

import datetime as dt
import inspect
from pathlib import Path

from kiteconnect import KiteConnect

from kitefleet.clock import IST
from kitefleet.settings import Settings
from workers.gtt import StopOwnership, bot_stops, is_stop_shaped
from workers.strategy.patterns import Candle
from workers.strategy.stops import (
    CREATE,
    DELETE,
    FALLBACK,
    MODIFY,
    NONE,
    PREV_SESSION_LOW,
    SCAN_STOP,
    DesiredGtt,
    StopPlanAction,
    compute_stop,
    decide_stop,
    fallback_stop,
    fixed_band_percent,
    gtt_limit_price,
    gtt_params,
    plan_gtt_changes,
    previous_session_low,
    stop_at_fill,
    stop_floors,
)

# The user's settings as the schema defaults them (kitefleet.settings is the one source).
_SCHEMA = Settings(user="", env_file=Path(), values={})
GAP = _SCHEMA.number("STOP_MIN_GAP_PERCENT")
BUFFER = _SCHEMA.number("GTT_LIMIT_BUFFER_PERCENT")
STOP_SETTINGS = {"buffer_percent": BUFFER, "min_gap_percent": GAP}


def test_first_stop_is_the_previous_low_floored_to_the_tick():
    d = compute_stop(1479.47, None, 1520.0, 0.05, GAP)
    assert d.stop == 1479.45 and d.moved and d.place and d.reason is None
    assert compute_stop(241.699, None, 250.0, 0.01, GAP).stop == 241.69


def test_stop_moves_up():
    d = compute_stop(1450.0, 1400.0, 1500.0, 0.05, GAP)
    assert (d.stop, d.moved, d.place, d.previous) == (1450.0, True, True, 1400.0)


def test_stop_is_never_lowered():
    d = compute_stop(1400.0, 1450.0, 1500.0, 0.05, GAP)
    assert (d.stop, d.moved, d.place, d.candidate) == (1450.0, False, True, 1400.0)
    assert "never lowered" in (d.reason or "")
    same = compute_stop(1450.02, 1450.0, 1500.0, 0.05, GAP)  # floors to the recorded stop
    assert (same.stop, same.moved, same.reason) == (1450.0, False, None)


def test_stop_at_or_above_ltp_is_reported_not_placed():
    above = compute_stop(1500.0, None, 1490.0, 0.05, GAP)
    assert not above.place and above.stop == 1500.0
    assert above.reason == "not placed: stop 1500.0 >= LTP 1490.0"
    equal = compute_stop(1490.0, None, 1490.0, 0.05, GAP)
    assert not equal.place and (equal.reason or "").startswith("not placed: stop 1490.0 >= LTP")
    # a kept (never lowered) stop that the price has fallen through is not placed either
    kept = compute_stop(1400.0, 1450.0, 1440.0, 0.05, GAP)
    assert kept.stop == 1450.0 and not kept.place


def test_missing_inputs():
    assert compute_stop(None, None, 100.0, 0.05, GAP) == compute_stop(None, None, 100.0, 0.05, GAP)
    nothing = compute_stop(None, None, 100.0, 0.05, GAP)
    assert nothing.stop is None and not nothing.place
    kept = compute_stop(None, 90.0, 100.0, 0.05, GAP)
    assert kept.stop == 90.0 and kept.place and not kept.moved
    no_ltp = compute_stop(90.0, None, None, 0.05, GAP)
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
    assert gtt_limit_price(1479.45, 5, 0.05) == 1405.45  # 1405.4775 floored
    assert gtt_limit_price(100.0, 5, 0.01) == 95.0
    assert gtt_limit_price(241.69, 2.5, 0.01) == 235.64  # 235.647...


def gtt(gid: int, symbol: str, trigger: float, price: float, qty: int, *, status: str = "active",
        side: str = "SELL", legs: int = 1, exchange: str = "NSE", last_price: float | None = None) -> dict:
    """A GTT as ``kite.get_gtts()`` lists it; by default a stop (set when the LTP was 10 % higher)."""
    triggers = [trigger] if legs == 1 else [trigger, trigger * 1.2]
    ltp = last_price if last_price is not None else (trigger * 1.1)
    return {"id": gid, "status": status, "type": "single" if legs == 1 else "two-leg",
            "condition": {"exchange": exchange, "tradingsymbol": symbol, "trigger_values": triggers,
                          "last_price": ltp},
            "orders": [{"exchange": exchange, "tradingsymbol": symbol, "transaction_type": side,
                        "quantity": qty, "price": price, "order_type": "LIMIT", "product": "CNC"}
                       for _ in range(legs)]}


def test_plan_creates_a_missing_stop():
    actions = plan_gtt_changes({"INFY": 10}, {"INFY": (1479.45, 1405.45, 10)}, [])
    assert actions == [StopPlanAction(CREATE, "INFY", None, 1479.45, 1405.45, 10, "no stop GTT")]


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


def test_plan_deletes_owned_stops_on_symbols_no_longer_held():
    existing = [gtt(7, "SOLD", 90.0, 85.5, 10), gtt(8, "ZERO", 50.0, 47.5, 5), gtt(9, "HANDS", 60.0, 57.0, 5)]
    actions = plan_gtt_changes({"ZERO": 0}, {}, existing, ownership=StopOwnership(frozenset({7, 8})))
    # GTT 9 is not the bot's (a person's stop on a symbol not held): left alone
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


def test_a_two_leg_gtt_is_never_touched_and_never_the_stop():
    oco = gtt(4, "INFY", 1400.0, 1330.0, 10, legs=2, last_price=1500.0)
    for owned in (set(), {4}):  # even an id the state names: a person made it an OCO
        actions = plan_gtt_changes({"INFY": 10}, {"INFY": (1479.45, 1405.45, 10)}, [oco],
                                   ownership=StopOwnership(frozenset(owned), frozenset({"INFY"} if owned else ())))
        assert [(a.action, a.gtt_id) for a in actions] == [(CREATE, None)]
    with_single = [oco, gtt(6, "INFY", 1479.45, 1405.45, 10)]
    actions = plan_gtt_changes({"INFY": 10}, {"INFY": (1479.45, 1405.45, 10)}, with_single)
    assert [(a.action, a.gtt_id) for a in actions] == [(NONE, 6)]
    managed = bot_stops([oco], StopOwnership(), adopt_on={"INFY": 10})
    assert managed == {} and stop_floors(managed) == {}


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


# --- which GTTs are the bot's (review: every active all-SELL GTT was treated as its own) -----------
def test_only_single_sell_gtts_below_their_last_price_are_stop_shaped():
    assert is_stop_shaped(gtt(1, "INFY", 950.0, 902.5, 10, last_price=1000.0))
    assert not is_stop_shaped(gtt(2, "INFY", 1100.0, 1100.0, 10, last_price=1000.0))  # take-profit
    assert not is_stop_shaped(gtt(3, "INFY", 940.0, 893.0, 10, legs=2, last_price=1000.0))  # OCO
    assert not is_stop_shaped(gtt(4, "INFY", 950.0, 960.0, 10, side="BUY"))
    assert not is_stop_shaped(gtt(5, "INFY", 950.0, 902.5, 10, status="triggered"))
    assert not is_stop_shaped(gtt(6, "INFY", 950.0, 902.5, 10, exchange="BSE"))
    no_direction = gtt(7, "INFY", 950.0, 902.5, 10)
    del no_direction["condition"]["last_price"]
    assert not is_stop_shaped(no_direction)


def test_a_hand_take_profit_with_a_lost_state_neither_sets_the_floor_nor_is_touched():
    # The reviewer's case: no stop in the state; the bot's stop at 950 and a person's take-profit
    # at 1100 (LTP 1000). Before: the floor became 1100 (>= LTP, so nothing placed) and the plan
    # kept the take-profit and deleted the real stop.
    gtts = [gtt(1, "INFY", 950.0, 902.5, 10, last_price=1000.0), gtt(2, "INFY", 1100.0, 1100.0, 10, last_price=1000.0)]
    managed = bot_stops(gtts, StopOwnership(), adopt_on={"INFY": 10})
    assert [g["id"] for g in managed["INFY"]] == [1]
    assert stop_floors(managed) == {"INFY": 950.0}
    d = decide_stop(960.0, stop_floors(managed)["INFY"], 1000.0, 0.05, has_stop_gtt=True, **STOP_SETTINGS)
    assert (d.stop, d.place) == (960.0, True)
    actions = plan_gtt_changes({"INFY": 10}, {"INFY": (960.0, 912.0, 10)}, gtts)
    assert [(a.action, a.gtt_id) for a in actions] == [(MODIFY, 1)]
    kept = plan_gtt_changes({"INFY": 10}, {}, gtts)  # no new stop: the stop stays, nothing deleted
    assert [(a.action, a.gtt_id) for a in kept] == [(NONE, 1)]


def test_a_known_symbol_manages_only_its_owned_gtts():
    bot, hand = gtt(5, "INFY", 950.0, 902.5, 10), gtt(6, "INFY", 900.0, 855.0, 10)
    actions = plan_gtt_changes({"INFY": 10}, {"INFY": (960.0, 912.0, 10)}, [bot, hand],
                               ownership=StopOwnership(frozenset({5}), frozenset({"INFY"})))
    assert [(a.action, a.gtt_id) for a in actions] == [(MODIFY, 5)]  # the person's stop 6 is not a duplicate
    # the bot's stop is gone: a new one, not an adopted hand stop
    actions = plan_gtt_changes({"INFY": 10}, {"INFY": (960.0, 912.0, 10)}, [hand],
                               ownership=StopOwnership(frozenset({5}), frozenset({"INFY"})))
    assert [(a.action, a.gtt_id) for a in actions] == [(CREATE, None)]
    # an unknown held symbol (lost state) adopts stop-shaped GTTs; a symbol not held adopts nothing
    assert set(bot_stops([hand], StopOwnership(), adopt_on={"INFY": 10})) == {"INFY"}
    assert bot_stops([hand], StopOwnership(), adopt_on={"TCS": 10}) == {}


# --- fallback: "never lowered" must not mean "no stop" ----------------------------------------------
def test_no_stop_gtt_and_the_kept_stop_above_the_ltp_gives_a_fallback_under_the_ltp():
    # the GTT at 1450 fired, its limit did not fill, the price is 1300; yesterday's low is 1449
    d = decide_stop(1449.0, 1450.0, 1300.0, 0.05, has_stop_gtt=False, **STOP_SETTINGS)
    assert (d.stop, d.place, d.source) == (1235.0, True, FALLBACK)  # 1300 * 0.95
    assert "a person should look" in (d.reason or "") and "1450.0 >= LTP 1300.0" in (d.reason or "")
    # with a GTT at the broker the never-lower rule stands: nothing placed
    kept = decide_stop(1449.0, 1450.0, 1300.0, 0.05, has_stop_gtt=True, **STOP_SETTINGS)
    assert not kept.place and kept.source == PREV_SESSION_LOW
    assert kept == compute_stop(1449.0, 1450.0, 1300.0, 0.05, GAP)


def test_the_fallback_is_the_previous_low_when_it_is_clearly_under_the_ltp():
    d = decide_stop(1280.07, 1450.0, 1300.0, 0.05, has_stop_gtt=False, **STOP_SETTINGS)
    assert (d.stop, d.source) == (1280.05, FALLBACK)
    # within STOP_MIN_GAP_PERCENT (1 %) of the LTP: 5 % under the LTP instead (this once allowed
    # a low 0.26 % under the LTP, just outside Kite's 0.25 % disable band: one tick from disabled)
    assert fallback_stop(1298.0, 1300.0, 0.05, BUFFER, GAP) == 1235.0
    assert fallback_stop(1296.7, 1300.0, 0.05, BUFFER, GAP) == 1235.0
    assert fallback_stop(1287.0, 1300.0, 0.05, BUFFER, GAP) == 1287.0  # exactly 1 % under
    assert fallback_stop(None, 1300.0, 0.05, buffer_percent=2.5, min_gap_percent=GAP) == 1267.5
    # a buffer under the gap never puts the fallback inside it
    assert fallback_stop(None, 1300.0, 0.05, buffer_percent=0.5, min_gap_percent=2) == 1274.0


def test_a_stop_half_a_percent_under_the_ltp_is_not_placed_as_such_and_the_fallback_keeps_the_gap():
    # 0.5 % under the LTP: Kite would not disable it, but the minimum gap (legacy's 1 %) refuses it.
    d = compute_stop(995.0, None, 1000.0, 0.05, GAP)
    assert not d.place and "within 1 % of LTP 1000.0" in (d.reason or "")
    fb = decide_stop(995.0, None, 1000.0, 0.05, has_stop_gtt=False, **STOP_SETTINGS)
    assert (fb.stop, fb.place, fb.source) == (950.0, True, FALLBACK) and "within 1 %" in (fb.reason or "")
    assert compute_stop(990.0, None, 1000.0, 0.05, GAP).place  # 1 % under: placed
    # At an entry's fill: the scan's stop when it keeps the gap ...
    at_fill = stop_at_fill(930.03, 1001.0, 980.0, 1000.0, 0.05, BUFFER, GAP)
    assert (at_fill.stop, at_fill.place, at_fill.source) == (930.0, True, SCAN_STOP)
    # ... 0.5 % under the LTP it is not placed as such: the previous low if it keeps the gap, else the fallback.
    near = stop_at_fill(995.0, 1001.0, 980.0, 1000.0, 0.05, BUFFER, GAP)
    assert (near.stop, near.place, near.source) == (980.0, True, PREV_SESSION_LOW) and "scan's stop" in near.reason
    near = stop_at_fill(995.0, 1001.0, 996.0, 1000.0, 0.05, BUFFER, GAP)
    assert (near.stop, near.place, near.source) == (950.0, True, FALLBACK)
    # A --from row without a stop (or one above the fill): the stop job's rule.
    assert stop_at_fill(None, 1001.0, 980.0, 1000.0, 0.05, BUFFER, GAP).stop == 980.0
    assert stop_at_fill(1.0e9, 1001.0, None, 1000.0, 0.05, BUFFER, GAP).stop == 950.0
    assert not stop_at_fill(930.0, 1001.0, 980.0, None, 0.05, BUFFER, GAP).place


def test_fallback_without_a_previous_low_and_none_without_an_ltp():
    d = decide_stop(None, None, 1000.0, 0.05, has_stop_gtt=False, **STOP_SETTINGS)
    assert (d.stop, d.place, d.source) == (950.0, True, FALLBACK)
    assert "no previous session low" in (d.reason or "")
    no_ltp = decide_stop(1449.0, 1450.0, None, 0.05, has_stop_gtt=False, **STOP_SETTINGS)
    assert not no_ltp.place and no_ltp.source == PREV_SESSION_LOW
    normal = decide_stop(1449.0, None, 1500.0, 0.05, has_stop_gtt=False, **STOP_SETTINGS)
    assert (normal.stop, normal.place, normal.source) == (1449.0, True, PREV_SESSION_LOW)


def test_gtt_leg_of_a_fixed_band_symbol_stays_inside_the_band() -> None:
    # 5 % band: max(100 x 0.95, 100 x (1 - 0.05 + 0.005)) = 95.5
    assert gtt_limit_price(100.0, 5, 0.05, band_percent=5.0) == 95.5
    # 2 % band: 98.5 rather than 95
    assert gtt_limit_price(100.0, 5, 0.05, band_percent=2.0) == 98.5
    # the F&O operating range (10 %) or no band: the buffer alone
    assert gtt_limit_price(100.0, 5, 0.05, band_percent=10.0) == 95.0
    assert gtt_limit_price(100.0, 5, 0.05, band_percent=None) == 95.0
    # never below a lower circuit that is below the trigger
    assert gtt_limit_price(100.0, 5, 0.05, lower_circuit=96.02) == 96.05
    assert gtt_limit_price(100.0, 5, 0.05, lower_circuit=101.0) == 95.0  # cannot fire today anyway


def test_fixed_band_percent_from_a_quote() -> None:
    def quote(close: float, lower: float, upper: float) -> dict[str, object]:
        return {"ohlc": {"close": close}, "lower_circuit_limit": lower, "upper_circuit_limit": upper}

    assert fixed_band_percent(quote(1500.0, 1425.0, 1575.0)) == 5.0
    assert fixed_band_percent(quote(241.69, 236.86, 246.52)) == 2.0  # rounded inwards to the tick
    assert fixed_band_percent(quote(1500.0, 1350.0, 1650.0)) is None  # F&O 10 %
    assert fixed_band_percent({"last_price": 1500.0}) is None


def test_a_kept_stop_whose_trigger_cannot_move_still_follows_the_quantity_held() -> None:
    """Regression (found merging issues 17 and 19): when no new stop may be placed (the rule stop
    within STOP_MIN_GAP_PERCENT of the LTP), the bot's GTT was kept with its OLD quantity, so the
    shares a split credited (or a later fill added) were not covered. The kept stop's quantity
    now follows the holding; its trigger and limit stay."""
    [action] = plan_gtt_changes({"INFY": 20}, {}, [gtt(7, "INFY", 1090.0, 1035.5, 10)],
                                ownership=StopOwnership(owned_ids={7}))
    assert (action.action, action.gtt_id, action.trigger, action.limit_price, action.quantity) == \
        (MODIFY, 7, 1090.0, 1035.5, 20)
    [same] = plan_gtt_changes({"INFY": 10}, {}, [gtt(7, "INFY", 1090.0, 1035.5, 10)],
                              ownership=StopOwnership(owned_ids={7}))
    assert same.action != MODIFY
