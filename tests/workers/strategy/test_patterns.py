"""The daily scanner on small hand-made series (legacy section 4.0 score, section 4.4 trend/growth)."""

from __future__ import annotations

import csv
import datetime as dt
import io
import time

import pytest

from kitefleet.clock import IST
from workers.strategy.patterns import (
    CONDITIONS,
    MIN_CANDLES,
    SCAN_COLUMNS,
    Candle,
    ScanResult,
    _trend,
    completed_daily_candles,
    scan_many,
    scan_sort_key,
    scan_symbol,
)

D0 = dt.date(2026, 1, 1)


def series(closes: list[float], spread: float = 1.0, volume: float = 1000) -> list[Candle]:
    """Doji candles (open = close) of high/low ``spread`` around each close, one a day."""
    return [Candle(D0 + dt.timedelta(days=i), c, c + spread, c - spread, c, volume)
            for i, c in enumerate(closes)]


def reversal(last: tuple[float, float, float, float, float] = (103, 106.5, 102.5, 106, 5000),
             resistance: float | None = None) -> list[Candle]:
    """55 flat bars at 100 (high 101, low 99), then: a swing high at 104, a swing low at 97, two
    bull bars and the last bar ``last`` = (open, high, low, close, volume)."""
    cs = series([100.0] * 55)
    if resistance is not None:
        # an old swing high, outside the ATR window
        cs[10] = Candle(cs[10].date, 100, resistance, 99, 100, 1000)
    tail = [(100, 104, 99, 100, 1000), (100, 100.5, 97, 99, 1000), (99, 101.5, 98.5, 101, 1000),
            (101, 103.5, 100.5, 103, 1000), last]
    for k, (o, h, lo, c, v) in enumerate(tail):
        cs.append(Candle(D0 + dt.timedelta(days=55 + k), o, h, lo, c, v))
    return cs


def test_insufficient_data_scores_zero_with_reason():
    r = scan_symbol("infy", series([100.0] * (MIN_CANDLES - 1)))
    assert r.symbol == "INFY"
    assert r.score == 0 and r.conditions == ()
    assert r.reason == f"insufficient data: {MIN_CANDLES - 1} candles, need {MIN_CANDLES}"
    assert r.stop_loss is None and r.risk_reward == 0.0
    assert scan_symbol("X", []).reason == f"insufficient data: 0 candles, need {MIN_CANDLES}"


def test_seven_of_seven_with_stop_and_targets():
    r = scan_symbol("ABC", reversal(), tick_size=0.05)
    assert r.score == 7 and r.conditions == CONDITIONS and r.reason is None
    # ATR14 = (9 x 2 + 5 + 3.5 + 3 + 3 + 4) / 14; stop = min(106 - 2.5 ATR, 97 - 0.5 ATR) = 95.696...
    assert r.atr == pytest.approx(36.5 / 14, abs=1e-4)
    assert r.entry == 106.0
    assert r.stop_loss == 95.65  # floored to the 0.05 tick
    assert r.risk == pytest.approx(10.35)
    assert (r.target_1, r.target_2) == (126.7, 137.05)
    assert r.risk_reward == 3.0  # no swing high above the entry: reward to target 2
    assert r.volume_ratio == pytest.approx(5000 / 1200, abs=0.01)
    assert r.momentum_5d == 6.0
    assert r.last_session == (D0 + dt.timedelta(days=59)).isoformat() and r.candles == 60


def test_default_tick_is_the_nse_band_for_the_close():
    r = scan_symbol("ABC", reversal())  # close 106 < 250: tick 0.01
    assert r.stop_loss == 95.69


def test_risk_reward_is_measured_to_the_nearest_resistance():
    r = scan_symbol("ABC", reversal(resistance=110), tick_size=0.05)
    assert r.score == 7
    assert r.risk_reward == round(4 / 10.35, 2)  # (110 - 106) / risk
    far = scan_symbol("ABC", reversal(resistance=200), tick_size=0.05)
    assert far.risk_reward == 3.0  # capped at target 2


def test_ties_earn_no_point():
    # close exactly at the last swing high (104): condition 1 is strict
    r = scan_symbol("ABC", reversal(last=(103, 104.5, 102.5, 104, 5000)))
    assert "close_above_swing_high" not in r.conditions
    assert r.score == 6
    flat = scan_symbol("FLAT", series([100.0] * 60))
    # close = SMA20, ratio 1, momentum 0, doji bars, close mid-range, no swing points
    assert flat.score == 0 and flat.conditions == ()
    assert flat.stop_loss == 95.0 and flat.risk_reward == 3.0
    assert flat.trend == "sideways" and flat.growth_pattern == "mixed"


def test_zero_range_last_bar_scores_no_close_position():
    cs = [*series([100.0] * 59), Candle(D0 + dt.timedelta(days=59), 100, 100, 100, 100, 1000)]
    r = scan_symbol("Z", cs)
    assert "close_near_high" not in r.conditions and "strong_bodies" not in r.conditions


def test_each_condition_can_fail_alone():
    base = reversal()
    low_volume = [*base[:-1], Candle(base[-1].date, 103, 106.5, 102.5, 106, 1000)]
    assert set(CONDITIONS) - set(scan_symbol("A", low_volume).conditions) == {"volume_surge"}
    weak_close = [*base[:-1], Candle(base[-1].date, 103, 108, 102.5, 106, 5000)]
    # close position (106 - 102.5) / 5.5 = 0.64; body 3 / 5.5 keeps the mean body above 60
    assert "close_near_high" not in scan_symbol("A", weak_close).conditions


def test_trend_thresholds_are_strict():
    assert _trend(0.51) == "bull" and _trend(0.5) == "sideways"
    assert _trend(-0.5) == "sideways" and _trend(-0.51) == "bear"
    up = scan_symbol("UP", series([100.0 + i for i in range(60)], 0.1))
    assert up.trend == "bull" and up.sma20_slope == pytest.approx(1 / 149.5 * 100, abs=1e-4)
    assert scan_symbol("DN", series([200.0 - i for i in range(60)], 0.1)).trend == "bear"


def trend_with_dips(dips: set[int], n: int = 60) -> list[Candle]:
    """A slow uptrend (0.5 a bar, wide bars) whose closes drop 8 below the trend on ``dips``."""
    return series([100 + 0.5 * i - (8 if i in dips else 0) for i in range(n)], spread=5.0)


@pytest.mark.parametrize(("candles", "pattern"), [
    (series([100.0 + i for i in range(60)], 0.1), "strong_momentum"),
    (series([100 + 0.2 * i for i in range(60)], 3.0), "consistent_trend"),
    (trend_with_dips({22, 30, 38, 46, 54}), "break_and_base"),
    (series([200.0 - i for i in range(60)], 0.1), "oversold"),
    (series([100.0] * 60), "mixed"),
])
def test_growth_patterns(candles, pattern):
    r = scan_symbol("G", candles)
    assert r.growth_pattern == pattern
    assert r.growth_description is not None


def test_growth_crossings_compare_the_first_bar_with_the_bar_before_the_window():
    # two one-bar dips inside the window: 4 crossings, so consistent (legacy counted the
    # window's first bar too, giving 5 and "break and base")
    assert scan_symbol("G", trend_with_dips({30, 45})).growth_pattern == "consistent_trend"
    # a dip on the bar just before the window makes its first bar a real crossing: 5
    assert scan_symbol("G", trend_with_dips({19, 30, 45})).growth_pattern == "break_and_base"


def test_bad_candles_are_refused_with_a_reason():
    cs = series([100.0] * 60)
    swapped = [*cs[:30], cs[31], cs[30], *cs[32:]]
    assert "oldest-first" in (scan_symbol("A", swapped).reason or "")
    broken = [*cs[:-1], Candle(cs[-1].date, 100, 99, 101, 100, 10)]
    r = scan_symbol("A", broken)
    assert r.score == 0 and (r.reason or "").startswith("bad candle")


def test_kite_dicts_give_the_same_result():
    cs = reversal()
    dicts = [{"date": dt.datetime.combine(c.date, dt.time(0), IST), "open": c.open, "high": c.high,
              "low": c.low, "close": c.close, "volume": int(c.volume)} for c in cs]
    a, b = scan_symbol("A", cs), scan_symbol("A", dicts)
    assert a == b


def test_csv_round_trip():
    results = [scan_symbol("ABC", reversal()), scan_symbol("SHORT", series([1.0] * 3))]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=SCAN_COLUMNS)
    writer.writeheader()
    writer.writerows(r.as_row() for r in results)
    buf.seek(0)
    header = buf.readline().strip().split(",")
    assert tuple(header) == SCAN_COLUMNS
    buf.seek(0)
    back = [ScanResult.from_row(row) for row in csv.DictReader(buf)]
    assert back == results


def test_sort_key_score_then_risk_reward_then_symbol():
    rows = [ScanResult("B", 5, risk_reward=1.0), ScanResult("A", 5, risk_reward=1.0),
            ScanResult("C", 6, risk_reward=0.5), ScanResult("D", 5, risk_reward=2.0),
            ScanResult("E", 0, reason="insufficient data: 3 candles, need 60")]
    assert [r.symbol for r in sorted(rows, key=scan_sort_key)] == ["C", "D", "A", "B", "E"]


def test_completed_daily_candles_drops_the_forming_session():
    days = [dt.datetime(2026, 3, d, tzinfo=IST) for d in (2, 3, 4)]
    cs = [Candle(d, 10, 11, 9, 10, 1) for d in days]
    at = dt.datetime(2026, 3, 4, 14, 0, tzinfo=IST)
    assert [c.date for c in completed_daily_candles(cs, at)] == days[:2]
    assert [c.date for c in completed_daily_candles(cs, at.replace(hour=15, minute=30))] == days


def test_fifty_symbols_of_130_candles_scan_in_milliseconds():
    import random

    rng = random.Random(7)
    universe = {}
    for k in range(50):
        price, cs = 100.0 + k, []
        for i in range(130):
            o = price
            price = max(1.0, price * (1 + rng.uniform(-0.03, 0.03)))
            cs.append({"date": D0 + dt.timedelta(days=i), "open": o, "high": max(o, price) * 1.01,
                       "low": min(o, price) * 0.99, "close": price, "volume": rng.randint(1, 10**6)})
        universe[f"S{k:02d}"] = cs
    scan_many(universe)  # warm-up
    t0 = time.perf_counter()
    results = scan_many(universe)
    elapsed = time.perf_counter() - t0
    assert len(results) == 50 and all(r.reason is None for r in results)
    assert results == sorted(results, key=scan_sort_key)
    assert scan_many(universe) == results  # deterministic
    # a few ms on a quiet machine; the bound leaves room for a busy CI box
    assert elapsed < 0.25, elapsed
