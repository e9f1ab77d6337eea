"""The backtest's paper source and engine on a few sessions and symbols (in process, no HTTP)."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from kitefleet.calendar import NseCalendar, build_from_library
from workers.backtest import engine
from workers.backtest.model import BacktestSpec, RuleResult
from workers.backtest.paper import PaperSource

DAY = date(2026, 11, 3)


@pytest.fixture(scope="module")
def calendar() -> NseCalendar:
    return build_from_library(date(2025, 1, 1), date(2027, 12, 31))[0]


def test_paper_source_reads_the_shared_market_deterministically(calendar: NseCalendar) -> None:
    a = PaperSource(calendar, 1, None, ["TCS", "RELIANCE"])
    b = PaperSource(calendar, 1, None, ["TCS", "RELIANCE"])
    assert sorted(a.symbols()) == ["RELIANCE", "TCS"]
    minutes = a.minutes("TCS", DAY)
    assert minutes is not None and len(minutes) == 375
    assert minutes == b.minutes("TCS", DAY)
    daily = a.daily("TCS", date(2026, 10, 20), DAY)
    assert daily is not None and daily[-1].date == DAY
    # the day candle is the session's minutes: one model, two views
    assert daily[-1].close == minutes[-1].close
    assert daily[-1].high == max(m.high for m in minutes)
    other = PaperSource(calendar, 2, None, ["TCS"]).minutes("TCS", DAY)
    assert other != minutes
    lower, upper = a.circuit("TCS", DAY) or (0.0, 0.0)
    book = a.book("TCS", DAY, 15)
    assert book is not None and lower < book.last * book.tick < upper


SYMBOLS = ["TCS", "RELIANCE", "INFY", "HDFCBANK", "ITC"]


def _spec(rules: tuple[str, ...] = ("hourly_low",), **settings: object) -> BacktestSpec:
    return BacktestSpec(user="Som", start=date(2026, 10, 5), end=date(2026, 11, 6), rules=rules,
                        initial_cash=1_000_000.0, settings={"MIN_SCORE": 0, **settings})


@pytest.fixture(scope="module")
def results(calendar: NseCalendar) -> list[RuleResult]:
    return engine.run(_spec(), PaperSource(calendar, 1, None, SYMBOLS), calendar)


def test_replay_is_deterministic(calendar: NseCalendar, results: list[RuleResult]) -> None:
    again = engine.run(_spec(), PaperSource(calendar, 1, None, SYMBOLS), calendar)
    assert again == results


def test_replay_enters_exits_and_books_equity(calendar: NseCalendar, results: list[RuleResult]) -> None:
    (res,) = results
    sessions = calendar.trading_days_between(date(2026, 10, 5), date(2026, 11, 6))
    assert [e.session for e in res.equity] == sessions
    entries = [o for o in res.orders if o.purpose == "entry" and o.filled]
    assert entries, "the scan with MIN_SCORE 0 selects rows and the book fills them"
    assert res.trades, "some position is closed by the hourly-low rule or its stop"
    for t in res.trades:
        assert t.exit_reason in ("hourly_low", "atr_trailing", "stop")
        assert t.exit_time > t.entry_time and t.quantity > 0 and t.charges > 0
    # cash accounts for every fill and charge
    cash = 1_000_000.0
    for o in res.orders:
        if (o.filled and o.status == "COMPLETE") or (o.side == "BUY" and o.filled):
            sign = -1 if o.side == "BUY" else 1
            cash += sign * o.filled * (o.average_price or 0) - o.charges
    assert abs(cash - res.equity[-1].cash) < 0.05


def test_hourly_low_exit_waits_for_a_full_hourly_candle_after_the_fill(results: list[RuleResult]) -> None:
    for t in results[0].trades:
        if t.exit_reason == "hourly_low" and t.holding_days == 0:
            assert t.exit_time - t.entry_time >= timedelta(hours=1)


def test_both_rules_share_entries_and_differ_in_exits(calendar: NseCalendar) -> None:
    hl, atr = engine.run(_spec(("hourly_low", "atr_trailing")), PaperSource(calendar, 1, None, SYMBOLS), calendar)
    first = [(o.symbol, o.quantity, o.price) for o in hl.orders if o.purpose == "entry"][:1]
    assert first == [(o.symbol, o.quantity, o.price) for o in atr.orders if o.purpose == "entry"][:1]
    assert {t.exit_reason for t in atr.trades} <= {"atr_trailing", "stop"}
    assert atr.trades and [t.exit_time for t in atr.trades] != [t.exit_time for t in hl.trades]
    # the ATR rule lets positions run for days
    assert max(t.holding_days for t in atr.trades) >= 1


def test_stops_are_never_lowered_and_fire_as_gtt(calendar: NseCalendar, results: list[RuleResult]) -> None:
    stops_ = [o for o in results[0].orders if o.purpose == "stop"]
    for o in stops_:
        assert o.side == "SELL" and o.reason == "stop"


def test_fills_respect_their_limits_and_happen_once(results: list[RuleResult]) -> None:
    for o in results[0].orders:
        assert 0 <= o.filled <= o.quantity
        if o.filled and o.side == "BUY":
            assert (o.average_price or 0) <= o.price
        if o.filled and o.side == "SELL":
            assert (o.average_price or 0) >= o.price
    sold = sum(t.quantity for t in results[0].trades)
    bought = sum(o.filled for o in results[0].orders if o.side == "BUY")
    held = results[0].equity[-1].holdings_value
    assert sold <= bought and (sold < bought or held == 0)
