"""The backtest's paper source and engine on a few sessions and symbols (in process, no HTTP)."""

from __future__ import annotations

from datetime import date

import pytest

from kitefleet.calendar import NseCalendar, build_from_library
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
