"""The simulated market: one minute path per (seed, symbol, day), every view cut from it."""

from __future__ import annotations

import csv
import io
import itertools
import random
import time as _time
from datetime import date, datetime, time, timedelta
from pathlib import Path

import numpy as np
import pytest

from kitefleet.calendar import NseCalendar, load_calendar
from kitefleet.clock import IST
from kitefleet.sim.market import INTERVALS, Candle, Market
from kitefleet.sim.universe import CSV_COLUMNS, INDEX_TOKEN, instruments_csv, nifty50_universe
from kitefleet.ticks import nse_tick_size, on_tick

SYMBOLS = ["INFY", "TATASTEEL", "MARUTI"]  # three tick bands: 0.10, 0.01, 1.00
TODAY = date(2026, 11, 26)


@pytest.fixture(scope="module")
def calendar(tmp_path_factory: pytest.TempPathFactory) -> NseCalendar:
    return load_calendar(tmp_path_factory.mktemp("cal") / "cal.json", TODAY)


@pytest.fixture(scope="module")
def market(calendar: NseCalendar) -> Market:
    return Market(calendar, seed=1, symbols=SYMBOLS)


def at(day: date, hh: int, mm: int, ss: int = 0) -> datetime:
    return datetime.combine(day, time(hh, mm, ss), IST)


def midnight(day: date) -> datetime:
    return datetime.combine(day, time(0, 0), IST)


def tokens(market: Market) -> list[int]:
    return [i.instrument_token for i in market.instruments]


def tick_of(market: Market, token: int) -> float:
    ins = market.instrument(token)
    assert ins is not None
    return ins.tick_size


def assert_candle_ok(c: Candle, tick: float) -> None:
    _, o, h, low, close, v = c
    for p in (o, h, low, close):
        assert on_tick(p, tick), (c, tick)
    assert low <= min(o, close) <= max(o, close) <= h, c
    assert v >= 0


def aggregate(minutes: list[Candle], start: datetime) -> Candle:
    return (start, minutes[0][1], max(m[2] for m in minutes), min(m[3] for m in minutes), minutes[-1][4],
            sum(m[5] for m in minutes))


# --- universe ------------------------------------------------------------------------------------
def test_universe_is_nifty50_plus_index_with_kite_like_tokens() -> None:
    universe = nifty50_universe()
    assert len(universe) == 51
    assert len({i.instrument_token for i in universe}) == 51
    assert len({i.tradingsymbol for i in universe}) == 51
    by_symbol = {i.tradingsymbol: i for i in universe}
    assert by_symbol["INFY"].instrument_token == 408065
    assert by_symbol["INFY"].exchange_token == 1594
    index = by_symbol["NIFTY 50"]
    assert (index.instrument_token, index.segment, index.lot_size, index.tradable, index.tick_size) == (
        INDEX_TOKEN, "INDICES", 0, False, 0.05)
    for ins in universe:
        assert ins.instrument_token // 256 == ins.exchange_token
        if ins.tradable:
            assert (ins.segment, ins.exchange, ins.instrument_type, ins.lot_size) == ("NSE", "NSE", "EQ", 1)
            assert ins.tick_size == nse_tick_size(ins.base_price)


def test_instruments_csv_parses_like_the_kiteconnect_client() -> None:
    text = instruments_csv(nifty50_universe())
    rows = list(csv.DictReader(io.StringIO(text.strip())))
    assert tuple(rows[0].keys()) == CSV_COLUMNS
    assert len(rows) == 51
    for row in rows:
        # what kiteconnect 5.2.2 does to each row; an empty numeric cell would raise here
        int(row["instrument_token"]), int(row["lot_size"])
        float(row["last_price"]), float(row["strike"]), float(row["tick_size"])
        assert row["expiry"] == ""
    infy = next(r for r in rows if r["tradingsymbol"] == "INFY")
    assert (infy["instrument_token"], infy["name"], infy["segment"], infy["exchange"]) == (
        "408065", "INFOSYS", "NSE", "NSE")
    index = next(r for r in rows if r["tradingsymbol"] == "NIFTY 50")
    assert (index["segment"], index["lot_size"]) == ("INDICES", "0")
    # Kite's dump shows indices with tick_size 0; the market still moves the index on its own grid.
    assert float(index["tick_size"]) == 0.0
    assert all(float(r["tick_size"]) > 0 for r in rows if r["segment"] == "NSE")


def test_instrument_lookup_by_token_key_or_symbol(market: Market) -> None:
    infy = market.instrument("INFY")
    assert infy is not None
    assert market.instrument(408065) is infy
    assert market.instrument("408065") is infy
    assert market.instrument("NSE:INFY") is infy
    assert market.instrument("NSE:NIFTY 50") is market.instrument(INDEX_TOKEN)
    assert market.instrument("BSE:INFY") is None
    assert market.instrument("TCS") is None  # not in this small market
    assert [i.tradingsymbol for i in market.instruments] == [*sorted(SYMBOLS), "NIFTY 50"]


def test_unknown_symbol_subset_is_refused(calendar: NseCalendar) -> None:
    with pytest.raises(ValueError, match="NOPE"):
        Market(calendar, symbols=["INFY", "NOPE"])


# --- determinism ---------------------------------------------------------------------------------
def test_same_seed_same_prices_other_seed_other_prices(calendar: NseCalendar, market: Market) -> None:
    again = Market(calendar, seed=1, symbols=["INFY"])
    other = Market(calendar, seed=2, symbols=["INFY"])
    day = date(2026, 11, 20)
    now = at(TODAY, 15, 30)
    for interval in ("day", "minute"):
        start = midnight(day) if interval == "minute" else now - timedelta(days=400)
        end = at(day, 15, 30) if interval == "minute" else now
        a = market.candles(408065, interval, start, end, now)
        assert again.candles(408065, interval, start, end, now) == a
        b = other.candles(408065, interval, start, end, now)
        assert len(b) == len(a) and b != a
    # a subset market and the full universe agree on a symbol's prices
    full = Market(calendar, seed=1)
    assert full.candles(408065, "day", now - timedelta(days=100), now, now) == market.candles(
        408065, "day", now - timedelta(days=100), now, now)


# --- one path, every view ------------------------------------------------------------------------
def test_every_price_is_on_the_tick_grid(market: Market) -> None:
    now = at(TODAY, 15, 30)
    for token in tokens(market):
        tick = tick_of(market, token)
        for c in market.candles(token, "day", now - timedelta(days=2000), now, now):
            assert_candle_ok(c, tick)
        for day in (date(2026, 11, 23), date(2023, 3, 1)):
            for c in market.candles(token, "minute", midnight(day), at(day, 23, 59), now):
                assert_candle_ok(c, tick)
        lower, upper = market.circuit_limits(token, TODAY)
        assert on_tick(lower, tick) and on_tick(upper, tick)
        assert on_tick(market.ltp(token, at(TODAY, 11, 7, 31)), tick)
        assert on_tick(market.prev_close(token, TODAY), tick)


def test_candles_of_every_interval_agree_with_minutes_and_ltp_at_random_instants(
        calendar: NseCalendar, market: Market) -> None:
    rnd = random.Random(7)
    days = calendar.trading_days_between(date(2025, 1, 1), TODAY)
    for _ in range(12):
        day = rnd.choice(days)
        opening, closing = calendar.session_bounds(day)
        now = opening + timedelta(seconds=rnd.randrange(0, int((closing - opening).total_seconds()) + 600))
        token = rnd.choice(tokens(market))
        minutes = market.candles(token, "minute", midnight(day), at(day, 23, 59), now)
        ltp = market.ltp(token, now)
        if minutes:
            assert minutes[-1][0] + timedelta(minutes=1) <= now
            assert minutes[-1][4] == ltp
        for interval, step in INTERVALS.items():
            got = market.candles(token, interval, midnight(day), at(day, 23, 59), now)
            if step is None:
                assert len(got) == (1 if minutes else 0)
                if minutes:
                    assert got[0] == aggregate(minutes, midnight(day))
                    assert got[0][1:] == (*market.day_ohlcv(token, now)[:4], market.day_ohlcv(token, now)[4])
                continue
            expected = []
            for j in range(0, len(minutes), step):
                group = minutes[j: j + step]
                assert group[0][0] == opening + timedelta(minutes=j)
                expected.append(aggregate(group, group[0][0]))
            assert got == expected, (interval, day, now)
            if got:
                assert got[-1][4] == ltp


def test_nothing_after_now_is_served(calendar: NseCalendar, market: Market) -> None:
    day = date(2026, 11, 25)
    far = at(day, 23, 59) + timedelta(days=30)
    for now in (at(day, 9, 15), at(day, 9, 15, 59), at(day, 9, 16), at(day, 11, 20, 30), at(day, 15, 29, 59)):
        for interval in INTERVALS:
            got = market.candles(408065, interval, midnight(day) - timedelta(days=3), far, now)
            for c in got:
                assert c[0] <= now
            today = [c for c in got if c[0] >= midnight(day)]
            if now < at(day, 9, 16):
                assert today == []  # no minute of today has completed yet
            else:
                assert today and today[-1][4] == market.ltp(408065, now)
        minutes = market.candles(408065, "minute", midnight(day), far, now)
        assert all(c[0] + timedelta(minutes=1) <= now for c in minutes)
    # the first minute: LTP is the open, but no candle of today is served yet
    opening = at(day, 9, 15, 30)
    assert market.ltp(408065, opening) == market.day_ohlcv(408065, opening)[0]
    assert market.day_ohlcv(408065, opening)[4] == 0


def test_ltp_and_day_ohlcv_through_a_day(calendar: NseCalendar, market: Market) -> None:
    day = date(2026, 11, 20)  # a Friday
    token = 408065
    prev = market.prev_close(token, day)
    full = market.candles(token, "day", midnight(day), midnight(day), at(day, 16, 0))[0]
    minutes = market.candles(token, "minute", midnight(day), at(day, 23, 0), at(day, 16, 0))
    assert len(minutes) == 375
    assert market.ltp(token, at(day, 9, 14, 59)) == prev
    assert market.day_ohlcv(token, at(day, 8, 0)) == (prev, prev, prev, prev, 0)
    assert market.ltp(token, at(day, 9, 15)) == full[1] == minutes[0][1]
    assert market.ltp(token, at(day, 9, 16)) == minutes[0][4]
    assert market.ltp(token, at(day, 12, 0, 59)) == minutes[164][4]  # 11:59 minute
    assert market.ltp(token, at(day, 15, 30)) == full[4] == minutes[-1][4]
    assert market.ltp(token, at(day, 22, 0)) == full[4]
    saturday = day + timedelta(days=1)
    assert market.ltp(token, at(saturday, 11, 0)) == full[4]
    assert market.prev_close(token, saturday) == full[4]
    assert market.day_ohlcv(token, at(saturday, 11, 0)) == (full[4],) * 4 + (0,)
    assert market.day_ohlcv(token, at(day, 18, 0)) == full[1:]
    volumes = [market.volume(token, at(day, 9, 15) + timedelta(minutes=m)) for m in range(0, 376, 25)]
    assert volumes == sorted(volumes) and volumes[-1] == full[5] > 0


def test_day_candles_are_the_aggregate_of_their_minutes(calendar: NseCalendar, market: Market) -> None:
    now = at(TODAY, 15, 30)
    rnd = random.Random(3)
    for token in tokens(market):
        days = market.candles(token, "day", now - timedelta(days=2000), now, now)  # batch-built summaries
        for c in rnd.sample(days, 6):
            day = c[0].date()
            minutes = market.candles(token, "minute", midnight(day), at(day, 23, 59), now)
            assert c == aggregate(minutes, midnight(day))
            if token == INDEX_TOKEN:
                assert c[5] == 0


def test_prev_close_chains_days_and_circuits_hold(market: Market) -> None:
    now = at(TODAY, 15, 30)
    for token in tokens(market):
        days = market.candles(token, "day", now - timedelta(days=2000), now, now)
        for prev, cur in itertools.pairwise(days):
            day = cur[0].date()
            assert market.prev_close(token, day) == prev[4]
            lower, upper = market.circuit_limits(token, day)
            assert lower < prev[4] < upper
            assert lower <= cur[3] and cur[2] <= upper, (token, day)
            assert upper / prev[4] == pytest.approx(1.10, abs=0.01)
            assert lower / prev[4] == pytest.approx(0.90, abs=0.01)


def test_minutes_between_spans_days_with_end_in_half_open_interval(calendar: NseCalendar, market: Market) -> None:
    d1 = date(2026, 11, 20)
    d2 = calendar.next_trading_day(d1)
    got = market.minutes_between(408065, at(d1, 15, 0), at(d2, 10, 0))
    assert len(got) == 30 + 45
    assert got[0][0] == at(d1, 15, 0) and got[29][0] == at(d1, 15, 29) and got[30][0] == at(d2, 9, 15)
    minutes = {c[0]: c for c in market.candles(408065, "minute", midnight(d1), at(d2, 23, 0), at(d2, 16, 0))}
    for start, low, high, close in got:
        c = minutes[start]
        assert (low, high, close) == (c[3], c[2], c[4])
    # a minute ending exactly at t0 is excluded, one ending exactly at t1 included
    assert [m[0] for m in market.minutes_between(408065, at(d1, 9, 16), at(d1, 9, 18))] == [
        at(d1, 9, 16), at(d1, 9, 17)]
    assert market.minutes_between(408065, at(d1, 9, 16, 30), at(d1, 9, 17))[0][0] == at(d1, 9, 16)
    assert market.minutes_between(408065, at(d1, 9, 18), at(d1, 9, 18)) == []


def test_60minute_candles_start_at_09_15_and_the_last_is_15_minutes(market: Market) -> None:
    day = date(2026, 11, 23)
    now = at(day, 18, 0)
    hours = market.candles(408065, "60minute", midnight(day), at(day, 23, 0), now)
    assert [c[0].strftime("%H:%M") for c in hours] == [
        "09:15", "10:15", "11:15", "12:15", "13:15", "14:15", "15:15"]
    minutes = market.candles(408065, "minute", at(day, 15, 15), at(day, 15, 29), now)
    assert len(minutes) == 15 and hours[-1] == aggregate(minutes, at(day, 15, 15))
    # the range is inclusive on both ends and filters on the candle's start
    assert [c[0] for c in market.candles(408065, "15minute", at(day, 10, 0), at(day, 10, 30), now)] == [
        at(day, 10, 0), at(day, 10, 15), at(day, 10, 30)]
    assert market.candles(408065, "day", at(day, 9, 15), at(day, 15, 30), now) == []  # day candle starts 00:00


def test_special_session_has_its_own_length(calendar: NseCalendar, market: Market) -> None:
    special = date(2021, 2, 24)
    # The export must carry it (from exchange_calendars): losing it is a bug, not a reason to skip.
    assert special in calendar.special_sessions, "the NSE calendar export lost the 2021-02-24 extended session"
    opening, closing = calendar.session_bounds(special)
    n = int((closing - opening).total_seconds() // 60)
    minutes = market.candles(408065, "minute", midnight(special), at(special, 23, 0), at(TODAY, 16, 0))
    assert len(minutes) == n and minutes[-1][0] == closing - timedelta(minutes=1)
    day = market.candles(408065, "day", midnight(special), midnight(special), at(TODAY, 16, 0))
    assert day == [aggregate(minutes, midnight(special))]


def test_unknown_interval_is_refused(market: Market) -> None:
    with pytest.raises(ValueError, match="interval"):
        market.candles(408065, "2minute", at(TODAY, 9, 0), at(TODAY, 10, 0), at(TODAY, 10, 0))


# --- history and realism -------------------------------------------------------------------------
def test_2000_calendar_days_of_day_candles_are_served_fast(calendar: NseCalendar) -> None:
    fresh = Market(calendar, seed=5, symbols=["INFY"])
    now = at(TODAY, 15, 30)
    t0 = _time.perf_counter()
    days = fresh.candles(408065, "day", now - timedelta(days=2000), now, now)
    first = _time.perf_counter() - t0
    t0 = _time.perf_counter()
    again = fresh.candles(408065, "day", now - timedelta(days=2000), now, now)
    cached = _time.perf_counter() - t0
    assert again == days
    assert days[0][0].date() <= (now - timedelta(days=1990)).date()
    assert len(days) > 1300
    print(f"2000 day candles: first {first * 1000:.0f} ms, cached {cached * 1000:.1f} ms")
    assert first < 2.0 and cached < 0.2  # generous: shared 2-core CI machine


def _daily(market: Market, token: int) -> np.ndarray:
    now = at(TODAY, 15, 30)
    rows = market.candles(token, "day", now - timedelta(days=2000), now, now)
    return np.array([c[1:6] for c in rows], dtype=float)


def test_realistic_mix_of_moves_gaps_regimes_and_setups(market: Market) -> None:
    big_moves = gaps = reversals = stops = n_days = 0
    vol_ratios = []
    for token in tokens(market):
        d = _daily(market, token)
        o, h, low, c, v = d.T
        ret = c[1:] / c[:-1] - 1
        big_moves += int((np.abs(ret) > 0.02).sum())
        gaps += int((np.abs(o[1:] / c[:-1] - 1) > 0.01).sum())
        stops += int((low[1:] < low[:-1]).sum())  # a stop at the previous day's low is hit
        n_days += len(ret)
        rolling = np.array([ret[i - 20: i].std() for i in range(20, len(ret))])
        vol_ratios.append(rolling.max() / rolling.min())
        for i in range(3, len(c)):
            lower_lows = low[i - 1] < low[i - 2] < low[i - 3]
            strong_up = c[i] > c[i - 1] * 1.015 and (c[i] - low[i]) > 0.7 * (h[i] - low[i])
            reversals += int(lower_lows and strong_up)
        if token != INDEX_TOKEN:
            assert v.min() > 0 and np.median(v[1:] / v[:-1]) == pytest.approx(1.0, abs=0.3)
            assert (v[20:] / np.array([v[i - 20: i].mean() for i in range(20, len(v))]) > 1.5).any()
    assert 0.03 < big_moves / n_days < 0.5
    assert gaps > 20
    assert 0.25 < stops / n_days < 0.75
    assert min(vol_ratios) > 2.0  # volatility clusters: calm and wild stretches
    assert reversals >= 5


def test_trends_and_ranges_both_occur(market: Market) -> None:
    moves = []
    for token in tokens(market):
        c = _daily(market, token)[:, 3]
        moves.extend(abs(c[i + 40] / c[i] - 1) for i in range(0, len(c) - 40, 40))
    moves_arr = np.array(moves)
    assert (moves_arr > 0.10).mean() > 0.1  # trending stretches
    assert (moves_arr < 0.03).mean() > 0.05  # flat stretches


def test_dates_outside_the_simulated_range_are_refused(market: Market) -> None:
    with pytest.raises(ValueError, match="no simulated prices"):
        market.ltp(408065, at(date(2015, 6, 1), 12, 0))
    assert market.candles(408065, "day", at(date(2014, 1, 1), 0, 0), at(date(2014, 2, 1), 0, 0),
                          at(TODAY, 12, 0)) == []


def test_history_does_not_depend_on_when_the_calendar_was_exported(tmp_path: Path, market: Market) -> None:
    other = load_calendar(tmp_path / "cal.json", date(2026, 6, 1))
    assert other.first != market.calendar.first
    a = Market(other, symbols=["INFY"])
    day = date(2025, 6, 2)
    now = at(day, 16, 0)
    assert a.candles(408065, "minute", midnight(day), now, now) == market.candles(
        408065, "minute", midnight(day), now, now)
