"""kitefleet/sim: the shared fill model on plain data, and the figures issue 16 asks of the
simulated market, measured over one seeded day (the market model plus the pure functions, no HTTP)."""

from __future__ import annotations

import ast
from datetime import date, datetime, time, timedelta
from pathlib import Path

import numpy as np
import pytest

from kitefleet import sim
from kitefleet.calendar import NseCalendar, load_calendar
from kitefleet.clock import IST
from kitefleet.sim.market import Market

START = datetime(2026, 11, 23, 10, 0, tzinfo=IST)
DRAWS = [0.0] * 10


def bar(o: int, low: int, high: int, c: int, *, volume: int = 10_000, spread: int = 2, offset: int = 1,
        lower: int = 1, upper: int = 10**9) -> sim.Bar:
    return sim.Bar(START, o, low, high, c, volume, spread, offset, lower, upper, 0.05)


# --- the book ----------------------------------------------------------------------------------
def test_last_price_lies_between_bid_and_ask_with_five_levels_a_side() -> None:
    book = sim.book_at(30_000, 3, 1, 27_000, 33_000, 20_000, 0.05, DRAWS)
    assert (book.bid, book.ask) == (29_999, 30_002)
    assert [lv.price for lv in book.bids] == [29_999, 29_998, 29_997, 29_996, 29_995]
    assert [lv.price for lv in book.asks] == [30_002, 30_003, 30_004, 30_005, 30_006]
    assert all(lv.quantity > 0 and 1 <= lv.orders <= lv.quantity for lv in book.bids + book.asks)
    wire = book.depth_wire()
    assert wire["sell"][0]["price"] == 1500.1 and wire["buy"][0]["price"] == 1499.95


def test_at_the_lower_band_there_are_sellers_and_no_buyers() -> None:
    book = sim.book_at(27_000, 2, 1, 27_000, 33_000, 20_000, 0.05, DRAWS)
    assert book.bids == () and book.ask == 27_000
    assert book.depth_wire()["buy"] == [{"price": 0.0, "quantity": 0, "orders": 0}] * 5
    top = sim.book_at(33_000, 2, 1, 27_000, 33_000, 20_000, 0.05, DRAWS)
    assert top.asks == () and top.bid == 33_000


def test_spread_is_wider_at_the_open_and_around_a_jump_and_a_pin_wins() -> None:
    n = 60
    u = np.full(n, 0.1)  # the model's narrowest draw: 1 tick
    flat = np.full(n, 30_000)
    spread, offset = sim.spread_path(u, np.zeros(n), flat, flat, flat)
    assert spread[0] > spread[10] > spread[15] == 1 and (offset <= spread).all() and (offset >= 0).all()
    high = flat.copy()
    high[40] = 30_300  # a 1 % minute
    spread, _ = sim.spread_path(u, np.zeros(n), high, flat, flat)
    assert spread[40] > spread[41] > spread[42] > spread[43] == 1
    pinned = np.zeros(n, dtype=np.int64)
    pinned[20:30] = 7
    spread, _ = sim.spread_path(u, np.zeros(n), flat, flat, flat, pinned)
    assert set(spread[20:30].tolist()) == {7} and spread[30] == 1


def test_fno_band_slides_after_15_minutes_at_the_band_and_fixed_bands_are_nse_s() -> None:
    closes = np.array([10_500] * 5 + [11_000] * 20 + [11_200] * 5)
    lower, upper = sim.dynamic_band(10_000, closes)
    assert (lower[0], upper[0]) == (9_000, 11_000)
    assert upper[5 + 14] == 11_000 and (lower[5 + 15], upper[5 + 15]) == (9_500, 11_500)
    assert sim.fixed_band(10_000, 5) == (9_500, 10_500)
    with pytest.raises(ValueError):
        sim.fixed_band(10_000, 7)


# --- fills -------------------------------------------------------------------------------------
def test_arrival_walks_the_depth_within_the_limit_one_fill_per_level() -> None:
    book = sim.book_at(30_000, 2, 1, 27_000, 33_000, 1_000_000, 0.05, DRAWS)
    assert sim.fill_on_arrival(True, book.ask - 1, 10, book) == []  # one tick under the ask rests
    assert sim.fill_on_arrival(True, book.ask, 10, book) == [sim.Fill(10, book.ask)]
    big = book.asks[0].quantity + 5
    fills = sim.fill_on_arrival(True, book.ask + 4, big, book)
    assert fills == [sim.Fill(book.asks[0].quantity, book.ask), sim.Fill(5, book.ask + 1)]
    assert sim.fill_on_arrival(False, book.bid, 10, book) == [sim.Fill(10, book.bid)]


def test_arrival_takes_at_most_10_percent_of_the_minutes_volume() -> None:
    book = sim.book_at(30_000, 2, 1, 27_000, 33_000, 400, 0.05, DRAWS)
    fills = sim.fill_on_arrival(True, book.ask + 4, 1_000, book)
    assert sum(f.quantity for f in fills) == 40


def test_resting_buy_fills_when_the_ask_reaches_it_at_the_ask() -> None:
    # trades 30_000..30_010, spread 2, offset 1: asks 30_001..30_011
    b = bar(30_010, 30_000, 30_010, 30_005)
    assert sim.fill_in_minute(True, 30_000, 10, b) is None
    assert sim.fill_in_minute(True, 30_001, 10, b) == sim.Fill(10, 30_001)
    # already through the limit when the minute opened: at the opening ask
    assert sim.fill_in_minute(True, 30_020, 10, b) == sim.Fill(10, 30_011)
    assert sim.fill_in_minute(False, 30_009, 10, b) == sim.Fill(10, 30_009)
    assert sim.fill_in_minute(False, 30_010, 10, b) is None


def test_participation_counts_the_volume_at_or_better_than_the_limit() -> None:
    b = bar(30_010, 30_000, 30_009, 30_005, volume=1_000)  # asks 30_001..30_010, 10 ticks
    assert sim.fill_in_minute(True, 30_010, 500, b) == sim.Fill(100, 30_010)
    assert sim.fill_in_minute(True, 30_001, 500, b) == sim.Fill(10, 30_001)


def test_a_sell_at_a_fixed_lower_band_waits_until_the_path_leaves_it() -> None:
    pinned = bar(27_000, 27_000, 27_000, 27_000, lower=27_000, upper=33_000)
    assert sim.fill_in_minute(False, 27_000, 10, pinned) is None
    leaves = bar(27_000, 27_000, 27_004, 27_004, lower=27_000, upper=33_000)
    assert sim.fill_in_minute(False, 27_000, 10, leaves) == sim.Fill(10, 27_000)


def test_a_triggered_stop_fills_at_the_bid_where_it_triggered() -> None:
    falling = bar(30_100, 29_950, 30_100, 29_960)
    assert sim.fill_in_minute(False, 29_900, 10, falling, trigger=30_000) == sim.Fill(10, 29_999)
    assert sim.fill_in_minute(False, 30_000, 10, falling, trigger=30_000) is None  # rests as a LIMIT
    gapped = bar(29_800, 29_700, 29_850, 29_800)
    assert sim.fill_in_minute(False, 29_500, 10, gapped, trigger=30_000) == sim.Fill(10, 29_799)


def test_sim_imports_no_storage_server_or_clock() -> None:
    root = Path(sim.__file__).parent
    for path in root.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if isinstance(node, ast.ImportFrom) and node.module == "kitefleet.clock":
                # the time zone constant, not a clock: the market is asked with ``now`` passed in
                assert [a.name for a in node.names] == ["IST"], f"{path.name} imports a clock"
                continue
            for name in names:
                assert not name.startswith(("sqlite3", "paper_broker", "workers", "http", "kitefleet.clock")), \
                    f"{path.name} imports {name}"


# --- the figures over one seeded day -----------------------------------------------------------
@pytest.fixture(scope="module")
def calendar(tmp_path_factory: pytest.TempPathFactory) -> NseCalendar:
    return load_calendar(tmp_path_factory.mktemp("cal") / "cal.json", date(2026, 11, 26))


def test_spread_and_first_minute_fills_over_one_seeded_day(calendar: NseCalendar) -> None:
    """After 09:30 the spread is 1-3 ticks on >= 90 % of minutes, and a Rs 5 lakh BUY priced at the
    ask level that covers it fills within its first minute on >= 95 % of minutes, for NIFTY 50."""
    market = Market(calendar, seed=1)
    day = date(2026, 11, 23)
    opening, closing = calendar.session_bounds(day)
    narrow = minutes = filled = orders = 0
    first_five: list[int] = []
    later: list[int] = []
    for ins in (i for i in market.instruments if i.tradable):
        bars = market.minute_bars(ins.instrument_token, opening, closing)
        first_five += [b.spread for b in bars[:5]]
        later += [b.spread for b in bars[15:]]
        after = bars[15:]
        minutes += len(after)
        narrow += sum(1 <= b.spread <= 3 for b in after)
        for b in after[::5]:
            book = market.book(ins.instrument_token, b.start + timedelta(seconds=20))
            assert book.bid is not None and book.ask is not None
            assert book.bid <= book.last <= book.ask and book.price(book.last) == market.ltp(
                ins.instrument_token, b.start + timedelta(seconds=20))
            quantity = int(500_000 // book.price(book.ask))
            cumulative, limit = 0, book.asks[-1].price
            for level in book.asks:
                cumulative += level.quantity
                if cumulative >= quantity:
                    limit = level.price
                    break
            orders += 1
            filled += sum(f.quantity for f in sim.fill_on_arrival(True, limit, quantity, book)) == quantity
    assert narrow / minutes >= 0.90, f"spread 1-3 ticks on {narrow / minutes:.1%} of minutes after 09:30"
    assert filled / orders >= 0.95, f"Rs 5 lakh filled in its first minute on {filled / orders:.1%}"
    assert np.mean(first_five) >= 2 * np.mean(later)  # wider in the first minutes


def test_book_is_deterministic_per_seed_symbol_and_day(calendar: NseCalendar) -> None:
    now = datetime.combine(date(2026, 11, 23), time(11, 7, 30), IST)
    a, b = Market(calendar, seed=3, symbols=["INFY"]), Market(calendar, seed=3, symbols=["INFY"])
    assert a.book(408065, now) == b.book(408065, now)
    assert Market(calendar, seed=4, symbols=["INFY"]).book(408065, now) != a.book(408065, now)
