"""place_orders_daily's selection, sizing and pre-trade limits on plain numbers."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from kitefleet.errors import ConfigError
from kitefleet.exitcodes import ExitCode
from kitefleet.settings import KEYS, Settings, load_settings
from tests.support.homes import make_home, write_env
from workers.portfolio import BUY_PENDING, HELD
from workers.strategy.patterns import ScanResult
from workers.strategy.sizing import (
    EntryPlan,
    check_pre_trade,
    entry_filter,
    limit_from_depth,
    order_params,
    reprice_at_ask,
    select_candidates,
    size_entry,
)

# The user's settings as the schema defaults them (kitefleet.settings is the one source).
_SCHEMA = Settings(user="", env_file=Path(), values={})
MIN_SCORE = _SCHEMA.integer("MIN_SCORE")
MAX_POSITIONS = _SCHEMA.integer("MAX_CNC_POSITIONS")
MAX_ORDER_VALUE = _SCHEMA.number("MAX_ORDER_VALUE")
BAND = _SCHEMA.number("PRICE_BAND_PERCENT")
MAX_GAP = _SCHEMA.number("ENTRY_MAX_GAP_PERCENT")


def row(symbol: str, score: int, rr: float = 2.0, entry: float = 100.0, stop: float = 95.0,
        reason: str | None = None) -> ScanResult:
    return ScanResult(symbol, score, entry=entry, stop_loss=stop, risk_reward=rr, reason=reason)


def test_selection_filters_and_orders_best_first():
    rows = [row("LOW", 4), row("B", 5, 1.0), row("A", 5, 1.0), row("TOP", 7, 0.5), row("HELD", 6),
            row("PEND", 6), row("NODATA", 0, reason="insufficient data: 3 candles, need 60"),
            row("BADSTOP", 6, stop=101.0)]
    selected, skipped = select_candidates(rows, {"HELD": HELD, "PEND": BUY_PENDING}, min_score=5, max_positions=10,
                                          held_count=1)
    assert [r.symbol for r in selected] == ["TOP", "A", "B"]
    reasons = {s.symbol: s.reason for s in skipped}
    assert reasons["LOW"] == "score 4 below MIN_SCORE 5"
    assert reasons["HELD"] == "already held"
    assert reasons["PEND"] == "open BUY order pending"
    assert reasons["NODATA"].startswith("scan: insufficient data")
    assert reasons["BADSTOP"].startswith("no usable entry/stop")


def test_score_six_and_seven_are_entered_too():
    # legacy HEAD entered exactly 5/7 only; the rule is score >= MIN_SCORE
    selected, _ = select_candidates([row("S7", 7), row("S6", 6), row("S5", 5)], {}, MIN_SCORE, MAX_POSITIONS)
    assert [r.symbol for r in selected] == ["S7", "S6", "S5"]


def test_max_positions_counts_what_is_already_held():
    rows = [row(f"S{i}", 6, rr=3 - i / 10) for i in range(5)]
    selected, skipped = select_candidates(rows, dict.fromkeys(("H1", "H2", "H3"), HELD), MIN_SCORE, max_positions=5,
                                          held_count=3)
    assert [r.symbol for r in selected] == ["S0", "S1"]
    assert [s.symbol for s in skipped] == ["S2", "S3", "S4"]
    assert all(s.reason == "MAX_CNC_POSITIONS 5 reached (3 held or pending + 2 selected)" for s in skipped)
    full, skipped = select_candidates(rows, {}, MIN_SCORE, max_positions=3, held_count=4)
    assert full == [] and len(skipped) == 5


def test_held_count_defaults_to_the_held_symbols():
    selected, _ = select_candidates([row("A", 6), row("B", 6)], {"X": HELD}, MIN_SCORE, max_positions=2)
    assert [r.symbol for r in selected] == ["A"]


def test_duplicate_rows_and_csv_dicts():
    rows = [{"symbol": "infy", "score": "6", "entry": "1500", "stop_loss": "1450", "risk_reward": "2.5",
             "conditions": "above_sma20;momentum_5d", "reason": ""},
            {"symbol": "INFY", "score": "6", "entry": "1500", "stop_loss": "1450", "risk_reward": "2.0",
             "reason": ""}]
    selected, skipped = select_candidates(rows, {}, MIN_SCORE, MAX_POSITIONS)
    assert [(r.symbol, r.risk_reward) for r in selected] == [("INFY", 2.5)]
    assert skipped[0].reason == "duplicate row"


def test_legacy_worked_example():
    # cash 1,371,768, 50 % -> 685,884; 10 selected -> 68,588.40 each; LTP 241.69 -> 283 shares
    plan = size_entry(1_371_768, 50, 10, 241.69, 0.01)
    assert plan.budget == 68_588.40
    assert plan.quantity == 283 and plan.limit_price == 241.69
    assert plan.ok and plan.reason is None and not plan.capped_by_risk


def test_limit_price_is_rounded_up_so_a_buy_is_marketable():
    plan = size_entry(1_000_000, 50, 1, 1479.47, 0.05)
    assert plan.limit_price == 1479.5
    assert plan.quantity == 337  # floor(500000 / 1479.50): the order value stays within the budget
    assert plan.order_value <= plan.budget


def test_exact_division_is_not_lost_to_binary_floating_point():
    # 0.3 / 0.1 is 2.9999999999999996 in floats
    assert size_entry(0.3, 100, 1, 0.1, 0.01).quantity == 3


def test_quantity_zero_has_a_reason():
    plan = size_entry(1000, 50, 2, 300.0, 0.05)
    assert plan.quantity == 0 and not plan.ok
    assert plan.reason == "budget 250.00 buys no share at 300.0"
    for args, text in [((0, 50, 1, 100.0, 0.05), "no available cash"),
                       ((1000, 50, 0, 100.0, 0.05), "no symbols selected"),
                       ((1000, 50, 1, 0.0, 0.05), "no valid LTP")]:
        p = size_entry(*args)
        assert p.quantity == 0 and text in (p.reason or "")


def test_risk_cap_limits_the_shares():
    # budget 500,000 / 100 = 5,000 shares; 1 % of 1,000,000 = 10,000 at 5 a share = 2,000 shares
    plan = size_entry(1_000_000, 50, 1, 100.0, 0.05, stop=95.0, equity=1_000_000, risk_per_trade_percent=1)
    assert plan.quantity == 2000 and plan.capped_by_risk and plan.risk_cap_shares == 2000
    assert plan.risk_per_share == 5.0
    assert plan.quantity * plan.risk_per_share <= 1_000_000 * 0.01
    loose = size_entry(1_000_000, 50, 1, 100.0, 0.05, stop=95.0, equity=1_000_000, risk_per_trade_percent=5)
    assert loose.quantity == 5000 and not loose.capped_by_risk


def test_risk_cap_refusals():
    no_stop = size_entry(1_000_000, 50, 1, 100.0, 0.05, equity=1e6, risk_per_trade_percent=1)
    assert no_stop.quantity == 0 and "no stop" in (no_stop.reason or "")
    above = size_entry(1_000_000, 50, 1, 100.0, 0.05, stop=100.0, equity=1e6, risk_per_trade_percent=1)
    assert above.quantity == 0 and "not below the entry" in (above.reason or "")
    tiny = size_entry(1_000_000, 50, 1, 100.0, 0.05, stop=50.0, equity=1000, risk_per_trade_percent=1)
    assert tiny.quantity == 0 and (tiny.reason or "").startswith("risk cap allows 0 shares")


def good_plan(**kw: object) -> EntryPlan:
    values: dict = dict(quantity=100, limit_price=241.7, ltp=241.7, tick_size=0.05, budget=30_000.0,
                        symbol="ABC")
    values.update(kw)
    return EntryPlan(**values)


def test_pre_trade_ok():
    assert check_pre_trade(good_plan(), 241.7, 500_000, 3.0, paused=False) == []
    # exactly at the edge of the band is still inside it
    assert check_pre_trade(good_plan(limit_price=103.0, ltp=100.0), 100.0, None, 3.0) == []


@pytest.mark.parametrize(("plan", "ltp", "kwargs", "text"), [
    (good_plan(), 241.7, {"paused": True}, "trading paused"),
    (good_plan(quantity=0, reason="budget 1.00 buys no share at 241.7"), 241.7, {}, "quantity 0: budget"),
    (good_plan(limit_price=241.73), 241.73, {}, "off the 0.05 tick grid"),
    (good_plan(quantity=3000), 241.7, {"max_order_value": 500_000}, "exceeds MAX_ORDER_VALUE"),
    (good_plan(), 230.0, {"price_band_percent": 3.0}, "outside the ±3 % sanity band"),
    (good_plan(), 0.0, {}, "no valid LTP"),
])
def test_each_pre_trade_refusal(plan, ltp, kwargs, text):
    refusals = check_pre_trade(plan, ltp, **({"max_order_value": MAX_ORDER_VALUE, "price_band_percent": BAND} | kwargs))
    assert len(refusals) == 1, refusals
    assert text in refusals[0]


def test_all_refusals_are_reported_together():
    refusals = check_pre_trade(good_plan(quantity=3000), 200.0, 500_000, 3.0, paused=True)
    assert len(refusals) == 3


def test_order_params_are_a_cnc_limit_buy():
    params = order_params(size_entry(1_000_000, 50, 1, 1479.47, 0.05, symbol="INFY"))
    assert params == {"variety": "regular", "exchange": "NSE", "tradingsymbol": "INFY",
                      "transaction_type": "BUY", "quantity": 337, "product": "CNC", "order_type": "LIMIT",
                      "price": 1479.5, "validity": "DAY"}



# --- the price at the send: a fresh quote's depth ----------------------------------------------------
def depth(*asks: tuple[float, int], bids: tuple[tuple[float, int], ...] = ((99.95, 500),)) -> dict[str, object]:
    """Kite's ``depth`` shape; live Kite pads a side to five levels with zeros."""
    def side(levels: tuple[tuple[float, int], ...]) -> list[dict[str, float | int]]:
        rows: list[dict[str, float | int]] = [{"price": p, "quantity": q, "orders": 1} for p, q in levels]
        return rows + [{"price": 0, "quantity": 0, "orders": 0}] * (5 - len(rows))
    return {"buy": side(bids), "sell": side(asks)}


BOOK = depth((100.05, 100), (100.10, 200), (100.15, 300), (100.20, 400), (100.25, 500))


def test_the_limit_is_the_lowest_ask_level_whose_cumulative_depth_covers_the_quantity():
    assert limit_from_depth(BOOK, 100, 100.0, 0.5, 0.05).limit == 100.05
    assert limit_from_depth(BOOK, 101, 100.0, 0.5, 0.05).limit == 100.10
    got = limit_from_depth(BOOK, 600, 100.0, 0.5, 0.05)
    assert (got.limit, got.best_ask, got.covered, got.reason) == (100.15, 100.05, 600, None)
    # More than the five levels show: the deepest one; the rest rests there as a limit order.
    deep = limit_from_depth(BOOK, 5000, 100.0, 0.5, 0.05)
    assert (deep.limit, deep.covered) == (100.25, 1500)


def test_a_buy_is_never_priced_below_the_ask_even_when_the_ltp_is_above_it():
    # The last trade was at a higher price than the ask now shows: the ask, not the LTP, is the price.
    assert limit_from_depth(depth((99.50, 1000)), 10, 100.0, 0.5, 0.05).limit == 99.50
    for qty in (1, 150, 999, 10_000):
        got = limit_from_depth(BOOK, qty, 100.0, 5.0, 0.05)
        assert got.limit is not None and got.limit >= 100.05


def test_an_ask_beyond_the_slippage_cap_refuses_the_entry_with_the_reason():
    thin = depth((101.00, 5), (101.50, 5))
    got = limit_from_depth(thin, 10, 100.0, 0.5, 0.05)
    assert got.limit is None and got.reason is not None
    assert got.reason.startswith("ask 101.50 above slippage cap 100.50")
    assert limit_from_depth(thin, 5, 100.0, 1.0, 0.05).limit == 101.00  # at the cap: allowed
    assert limit_from_depth(thin, 10, 100.0, 1.0, 0.05).limit is None


def test_no_sellers_or_no_ltp_refuses_the_entry():
    upper_circuit = depth()  # the ask side is all zero padding, as live Kite shows it
    got = limit_from_depth(upper_circuit, 10, 100.0, 0.5, 0.05)
    assert got.limit is None and "no sellers" in (got.reason or "")
    assert limit_from_depth({}, 10, 100.0, 0.5).limit is None
    assert limit_from_depth(None, 10, 100.0, 0.5).limit is None
    assert "no valid LTP" in (limit_from_depth(BOOK, 10, 0.0, 0.5, 0.05).reason or "")


def test_a_fresh_price_keeps_the_budget_and_never_raises_the_planned_quantity():
    planned = size_entry(100_000, 50, 1, 100.0, 0.05)  # budget 50,000 at 100.00 -> 500 shares
    assert planned.quantity == 500
    up = size_entry(100_000, 50, 1, 101.0, 0.05, limit=101.05, max_quantity=planned.quantity)
    assert (up.quantity, up.limit_price) == (math.floor(50_000 / 101.05), 101.05)
    down = size_entry(100_000, 50, 1, 98.0, 0.05, limit=98.05, max_quantity=planned.quantity)
    assert down.quantity == 500  # cheaper: not more shares than planned
    risky = size_entry(100_000, 50, 1, 101.0, 0.05, stop=99.0, equity=100_000, risk_per_trade_percent=1,
                       limit=101.05, max_quantity=planned.quantity)
    assert risky.quantity == math.floor(1_000 / (101.05 - 99.0)) and risky.capped_by_risk


@pytest.mark.parametrize("value", ["0", "-1", "5.01", "abc", "nan"])
def test_entry_slippage_percent_outside_0_to_5_is_a_config_error_naming_the_key(tmp_path, value):
    home = make_home(tmp_path)
    write_env(home, "Som", ENTRY_SLIPPAGE_PERCENT=value)
    with pytest.raises(ConfigError) as err:
        load_settings(home, "Som")
    assert err.value.exit_code == ExitCode.CONFIG == 4 and "ENTRY_SLIPPAGE_PERCENT" in str(err.value)
    write_env(home, "Som", ENTRY_SLIPPAGE_PERCENT="5")
    assert load_settings(home, "Som").get("ENTRY_SLIPPAGE_PERCENT") == 5.0


def test_concentration_sizes_down_to_max_position_percent_order_value_and_capital_never_refuses() -> None:
    from workers.strategy.sizing import EntryPlan, fit_to_limits

    plan = EntryPlan(quantity=100, limit_price=1000.0, ltp=1000.0, tick_size=0.05, budget=100_000.0, symbol="INFY")
    # equity 300,000: 20 % is 60,000 -> 60 shares, and the run record says why
    fitted = fit_to_limits(plan, equity=300_000.0, max_position_percent=20.0, max_order_value=500_000.0)
    assert fitted.quantity == 60 and fitted.order_value <= 60_000.0
    assert fitted.sized_down == "sized down from 100 to 60 shares by MAX_POSITION_PERCENT 20 % of equity ₹300,000.00"
    # a budget above MAX_ORDER_VALUE is sized down to it, not refused
    assert fit_to_limits(plan, equity=10_000_000.0, max_position_percent=20.0, max_order_value=45_500.0).quantity == 45
    # shares already owned count against the position cap; MAX_CAPITAL's room caps too
    assert fit_to_limits(plan, equity=300_000.0, owned_value=50_000.0, max_position_percent=20.0).quantity == 10
    assert fit_to_limits(plan, equity=10_000_000.0, max_position_percent=20.0, capital_room=7_999.0).quantity == 7
    zero = fit_to_limits(plan, equity=300_000.0, owned_value=60_000.0, max_position_percent=20.0)
    assert zero.quantity == 0 and zero.reason and "MAX_POSITION_PERCENT" in zero.reason
    assert fit_to_limits(plan, equity=10_000_000.0, max_position_percent=20.0, max_order_value=None) is plan


def test_max_new_entries_per_day_counts_todays_earlier_entries() -> None:
    from datetime import date

    from workers.jobs.place_orders_daily import cap_new_entries
    from workers.run_record import Entry
    from workers.strategy.patterns import ScanResult

    today = date(2026, 3, 4)
    entries = [Entry(ScanResult(s, 5, entry=1.0, stop_loss=0.9, target_1=1.2, risk_reward=2.0), f"T{s}")
               for s in ("A", "B", "C")]
    earlier = {f"T{s}": {"kind": "order", "purpose": "entry", "session": today.isoformat(), "broker_id": "1"}
               for s in ("X", "Y")}
    keep, over = cap_new_entries(entries, earlier, today, 3)
    assert [e.row.symbol for e in keep] == ["A"] and [e.row.symbol for e in over] == ["B", "C"]
    # an entry of this plan already sent (a rerun completing it) is no new entry
    sent = {**earlier, "TB": {"kind": "order", "purpose": "entry", "session": today.isoformat(), "broker_id": "2"}}
    keep, _ = cap_new_entries(entries, sent, today, 3)
    assert [e.row.symbol for e in keep] == ["A", "B"]
    yesterday = {t: {**i, "session": "2026-03-02"} for t, i in earlier.items()}
    assert len(cap_new_entries(entries, yesterday, today, 3)[0]) == 3
@pytest.mark.parametrize(("key", "bad", "good"), [
    ("ENTRY_MAX_GAP_PERCENT", ["0", "-1", "20.5", "x"], ("20", 20.0)),
    ("ENTRY_TIMEOUT_MINUTES", ["0", "376", "1.5"], ("375", 375)),
    ("STOP_MIN_GAP_PERCENT", ["0.29", "0", "-1", "21"], ("0.3", 0.3)),
])
def test_entry_gap_timeout_and_stop_gap_outside_their_range_are_a_config_error_naming_the_key(
        tmp_path, key, bad, good):
    home = make_home(tmp_path)
    for value in bad:
        write_env(home, "Som", **{key: value})
        with pytest.raises(ConfigError) as err:
            load_settings(home, "Som")
        assert err.value.exit_code == ExitCode.CONFIG == 4 and key in str(err.value)
    write_env(home, "Som", **{key: good[0]})
    assert load_settings(home, "Som").get(key) == good[1]
    assert (KEYS["ENTRY_MAX_GAP_PERCENT"].default, KEYS["ENTRY_TIMEOUT_MINUTES"].default,
            KEYS["STOP_MIN_GAP_PERCENT"].default) == (3.0, 15, 1.0)


def test_entry_filter_skips_a_gap_up_a_price_under_the_stop_and_the_upper_circuit():
    assert entry_filter(103.0, 100.0, 95.0, 120.0, MAX_GAP) is None  # exactly 3 %: still the scan's setup
    gap = entry_filter(104.0, 100.0, 95.0, 120.0, MAX_GAP)
    assert gap is not None and gap.startswith("gapped up: LTP 104.00 is 4.00 % above the scan's entry 100.00")
    assert entry_filter(104.0, 100.0, 95.0, 120.0, max_gap_percent=5) is None
    below = entry_filter(94.9, 100.0, 95.0, 120.0, MAX_GAP)
    assert below is not None and below.startswith("below the scan's stop")
    circuit = entry_filter(110.0, 108.0, 95.0, 110.0, MAX_GAP)
    assert circuit is not None and circuit.startswith("at the upper circuit")
    # A --from list without entry and stop: only the circuit applies.
    assert entry_filter(500.0, None, None, 600.0, MAX_GAP) is None
    assert entry_filter(0.0, 100.0, 95.0, 120.0, MAX_GAP) is None


def _reprice(depth: dict, *, max_order_value: float | None = None) -> tuple[EntryPlan | None, str | None]:
    planned = size_entry(100_000.0, 50.0, 1, 100.0, 0.05, 95.0, 100_000.0, None, symbol="X")
    assert planned.quantity == 500
    fresh, ask = reprice_at_ask(planned, depth, 100.0, cash=100_000.0, deployment_percent=50.0, n_selected=1,
                                equity=100_000.0, risk_percent=None, stop=95.0, slippage_percent=1.0,
                                max_position_percent=None, max_order_value=max_order_value)
    return fresh, ask.reason


def test_reprice_at_ask_takes_the_level_covering_the_quantity_and_keeps_within_the_budget():
    fresh, _ = _reprice({"sell": [{"price": 100.1, "quantity": 200, "orders": 1},
                                  {"price": 100.5, "quantity": 800, "orders": 2}]})
    assert fresh is not None and fresh.limit_price == 100.5
    assert fresh.quantity == min(500, math.floor(50_000 / 100.5))


def test_reprice_at_ask_a_higher_ask_stays_within_max_order_value():
    # planned at the LTP inside MAX_ORDER_VALUE; the ask one step up must not push the order over it
    fresh, _ = _reprice({"sell": [{"price": 100.5, "quantity": 1000, "orders": 3}]}, max_order_value=40_000.0)
    assert fresh is not None and fresh.quantity * fresh.limit_price <= 40_000.0


def test_reprice_at_ask_refuses_with_no_sellers_or_an_ask_above_the_slippage_cap():
    assert _reprice({"sell": []}) [0] is None
    fresh, reason = _reprice({"sell": [{"price": 102.0, "quantity": 1000, "orders": 1}]})
    assert fresh is None and reason and "slippage" in reason
