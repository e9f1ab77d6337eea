"""hourly_candle_watchdog's exit rules on hand-made candles (legacy sections 4.2.3, 4.2.6)."""

from __future__ import annotations

import datetime as dt

import pytest

from kitefleet.clock import IST
from kitefleet.ticks import round_to_tick
from workers.strategy.patterns import Candle
from workers.strategy.watchdog_rules import (
    RULE_ATR_TRAILING,
    RULE_HOURLY_LOW,
    atr,
    atr_exit,
    atr_multiplier,
    atr_trailing_stop,
    completed_hourly_candles,
    eligible_hourly_candles,
    exit_order_params,
    exit_reprice,
    hourly_low_exit,
    hourly_low_level,
    marketable_limit,
)

DAY = dt.date(2026, 3, 4)


def hourly(day: dt.date, lows: list[float] | None = None) -> list[Candle]:
    """Kite's seven 60minute candles of a session: 09:15, 10:15, ..., 15:15."""
    starts = [dt.datetime.combine(day, dt.time(9 + k, 15), IST) for k in range(7)]
    lows = lows or [100.0 + k for k in range(7)]
    return [Candle(s, lo + 1, lo + 2, lo, lo + 1, 100) for s, lo in zip(starts, lows, strict=True)]


def at(hour: int, minute: int, day: dt.date = DAY) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour, minute), IST)


def starts(candles: list[Candle]) -> list[str]:
    return [c.date.strftime("%d %H:%M") for c in candles]  # type: ignore[union-attr]


def test_completed_hourly_candles_drop_the_forming_one():
    prev = hourly(DAY - dt.timedelta(days=1))
    today = hourly(DAY)
    cs = prev + today
    # 10:20: today's 09:15 candle is done, the 10:15 one is forming
    assert starts(completed_hourly_candles(cs, at(10, 20)))[-2:] == ["03 15:15", "04 09:15"]
    # exactly at 10:15 the 09:15 candle has just completed
    assert starts(completed_hourly_candles(cs, at(10, 15)))[-1] == "04 09:15"
    assert starts(completed_hourly_candles(cs, at(10, 14)))[-1] == "03 15:15"
    # the last candle of the day is 15 minutes long: complete at 15:30, not 16:15
    assert starts(completed_hourly_candles(cs, at(15, 29)))[-1] == "04 14:15"
    assert starts(completed_hourly_candles(cs, at(15, 30)))[-1] == "04 15:15"
    # naive timestamps are taken as IST
    naive = [Candle(c.date.replace(tzinfo=None), c.open, c.high, c.low, c.close, c.volume)  # type: ignore[union-attr]
             for c in today]
    assert len(completed_hourly_candles(naive, at(12, 0))) == 2


def test_hourly_low_level_is_the_lower_of_the_last_two():
    cs = hourly(DAY, [400.0, 420.0, 410.0, 416.05, 414.05, 430.0, 431.0])
    assert hourly_low_level(cs[3:5]) == 414.05
    assert hourly_low_level(cs[:5]) == 414.05  # only the last two count
    assert hourly_low_level(cs[:1]) == 400.0  # one eligible candle: its low
    assert hourly_low_level([]) is None


PREV = dt.date(2026, 3, 2)


def test_hourly_candles_of_the_current_session_only():
    # Bug: before 10:15 the level came from yesterday's 14:15 and 15:15 candles, whose lows sit
    # just under the close the scanner bought near: any flat open sold (issue 20).
    cs = hourly(PREV, [90.0] * 7) + hourly(DAY, [100.0, 101.0, 102.0, 103.0, 104.0, 105.0, 106.0])
    opening = at(9, 15)
    assert eligible_hourly_candles(cs, at(10, 14), opening) == []
    assert hourly_low_level(eligible_hourly_candles(cs, at(10, 14), opening)) is None
    assert starts(eligible_hourly_candles(cs, at(10, 15), opening)) == ["04 09:15"]
    assert hourly_low_level(eligible_hourly_candles(cs, at(11, 15), opening)[-2:]) == 100.0


def test_a_position_entered_today_reads_only_candles_started_after_its_first_fill():
    cs = hourly(DAY, [100.0, 101.0, 102.0, 103.0, 104.0, 105.0, 106.0])
    filled = at(9, 20)
    assert eligible_hourly_candles(cs, at(11, 14), filled) == []  # the 09:15 candle began before the fill
    assert starts(eligible_hourly_candles(cs, at(11, 15), filled)) == ["04 10:15"]
    assert starts(eligible_hourly_candles(cs, at(12, 15), filled)) == ["04 10:15", "04 11:15"]
    # a fill at a candle's first instant: that candle counts
    assert starts(eligible_hourly_candles(cs, at(11, 15), at(10, 15))) == ["04 10:15"]


def test_legacy_hourly_example():
    # lows 414.05 and 416.05, LTP 413.75 -> sell at 414.05 x 0.995 = 411.97975, floored: 411.95
    d = hourly_low_exit(413.75, 414.05, 0.05)
    assert d is not None
    assert (d.rule, d.level, d.limit_price, d.marketable) == (RULE_HOURLY_LOW, 414.05, 411.95, True)


def test_hourly_exit_needs_ltp_strictly_below():
    assert hourly_low_exit(414.05, 414.05, 0.05) is None
    assert hourly_low_exit(500.0, 414.05, 0.05) is None
    assert hourly_low_exit(400.0, None, 0.05) is None


def test_exit_price_is_floored_to_the_tick():
    near = hourly_low_exit(1486.0, 1486.9, 0.10)  # 1486.9 x 0.995 = 1479.4655
    assert near is not None and near.limit_price == 1479.4 and near.marketable
    at_limit = hourly_low_exit(1479.45, 1486.9, 0.05)  # the LTP is the rule's limit: still the rule's
    assert at_limit is not None and at_limit.limit_price == 1479.45 and at_limit.marketable


@pytest.mark.parametrize(("ltp", "tick", "price"), [
    (1400.0, 0.05, 1393.0),     # 1400 x 0.995
    (1479.4, 0.05, 1472.0),     # just under the rule's 1479.45: 1472.003 floored
    (1479.0, 0.10, 1471.6),     # 1471.605 floored to 0.10
    (7.3, 0.01, 7.26),          # 7.2635: a penny stock's own tick
])
def test_a_gap_below_the_rule_limit_prices_the_exit_marketable(ltp, tick, price):
    # level 1486.9: the rule's limit (1479.45) would rest above an LTP below it
    d = hourly_low_exit(ltp, 1486.9 if ltp > 100 else 7.5, tick)
    assert d is not None
    assert d.limit_price == price
    assert d.marketable and d.limit_price <= ltp * 0.995 + 1e-9
    assert d.limit_price == min(round_to_tick(d.level * 0.995, tick, "floor"), marketable_limit(ltp, tick))


def test_atr_exit_after_a_gap_is_marketable_too():
    d = atr_exit(100.0, 107.0, 0.05)  # the stop's limit would be 106.45
    assert d is not None and d.limit_price == 99.5 and d.marketable


@pytest.mark.parametrize(("price", "ltp", "tick", "expected"), [
    (1479.45, 1440.0, 0.05, 1432.8),   # resting above the market: down to LTP x 0.995
    (1479.45, 1479.45, 0.05, None),    # at the LTP: it can fill as it is
    (1432.8, 1440.0, 0.05, None),      # below the LTP: marketable already
    (1432.8, 1432.0, 0.05, 1424.8),    # the market fell under a repriced limit again
    (1479.45, 0.0, 0.05, None),        # no LTP
    (0.06, 0.05, 0.05, None),          # 0.05 x 0.995 floors to 0: never a zero price
])
def test_exit_reprice(price, ltp, tick, expected):
    assert exit_reprice(price, ltp, tick) == expected


def test_a_repriced_exit_needs_a_further_fall_of_the_buffer_before_the_next_modification():
    price, modifications = 1479.45, 0
    for ltp in (1470.0, 1469.0, 1465.0, 1463.0, 1462.7, 1455.0):
        new = exit_reprice(price, ltp, 0.05)
        if new is not None:
            price, modifications = new, modifications + 1
            assert price == marketable_limit(ltp, 0.05)
    # 1470 -> 1462.65; 1469, 1465, 1463 and 1462.7 are above it; 1455 -> 1447.7
    assert (price, modifications) == (1447.7, 2)


def daily(closes: list[float], spread: float = 1.0) -> list[Candle]:
    d0 = dt.date(2026, 1, 1)
    return [Candle(d0 + dt.timedelta(days=i), c, c + spread, c - spread, c, 1)
            for i, c in enumerate(closes)]


def test_atr_is_a_simple_mean_of_20_true_ranges():
    cs = daily([100.0] * 21)
    assert atr(cs) == 2.0
    assert atr(cs[:20]) is None  # 20 candles give only 19 true ranges
    gap = daily([100.0] * 20 + [110.0])  # last TR = max(2, |111 - 100|, |109 - 100|) = 11
    assert atr(gap) == pytest.approx((19 * 2 + 11) / 20)


@pytest.mark.parametrize(("pct", "bucket", "mult"), [
    (1.99, "Low", 1.0), (2.0, "Medium", 1.5), (4.0, "Medium", 1.5), (4.01, "High", 2.0)])
def test_atr_buckets(pct, bucket, mult):
    assert atr_multiplier(pct) == (bucket, mult)


def test_atr_trailing_stop_trails_up_and_never_down():
    cs = daily([100.0] * 21)  # ATR 2, ATR% 2 -> Medium, 1.5x -> 3 below the anchor
    stop = atr_trailing_stop(None, cs, 110.0, 0.05)
    assert stop == 107.0
    stops = [stop]
    for anchor in [112.0, 111.0, 105.0, 90.0, 113.47]:
        stop = atr_trailing_stop(stop, cs, anchor, 0.05)
        stops.append(stop)
    assert stops == [107.0, 109.0, 109.0, 109.0, 109.0, 110.45]  # 113.47 - 3 = 110.47, floored


def test_atr_stop_never_lowered_over_a_falling_series():
    closes = [200.0 - 2 * i for i in range(60)]
    stop = None
    history = []
    for end in range(21, 61):
        window = daily(closes[:end], spread=3.0)
        stop = atr_trailing_stop(stop, window, window[-1].close, 0.05)
        history.append(stop)
    assert history == sorted(history)  # non-decreasing
    assert history[0] == history[-1]


def test_atr_stop_explicit_multiplier_and_missing_data():
    cs = daily([100.0] * 21)
    assert atr_trailing_stop(None, cs, 110.0, 0.05, multiplier=2.5) == 105.0
    assert atr_trailing_stop(95.0, cs[:5], 110.0, 0.05) == 95.0
    assert atr_trailing_stop(None, cs[:5], 110.0, 0.05) is None


def test_atr_exit_at_or_below_the_stop():
    d = atr_exit(107.0, 107.0, 0.05)
    assert d is not None and d.rule == RULE_ATR_TRAILING
    assert d.limit_price == 106.45  # 107 x 0.995 = 106.465, floored
    assert atr_exit(107.05, 107.0, 0.05) is None
    assert atr_exit(100.0, None, 0.05) is None


def test_exit_order_is_a_cnc_limit_sell_of_the_whole_quantity():
    d = hourly_low_exit(413.75, 414.05, 0.05)
    assert d is not None
    assert exit_order_params("ABC", 37, d) == {
        "variety": "regular", "exchange": "NSE", "tradingsymbol": "ABC", "transaction_type": "SELL",
        "quantity": 37, "product": "CNC", "order_type": "LIMIT", "price": 411.95, "validity": "DAY"}
