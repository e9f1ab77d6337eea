"""The live source's request planning (pure): Kite's span limits, the cache's covered ranges."""

from __future__ import annotations

import itertools
from datetime import date, timedelta

from workers.backtest.live import LOOKBACK_DAYS, count_requests, plan_requests
from workers.marketdata import DAY


def test_minute_data_goes_in_requests_of_at_most_60_days() -> None:
    chunks = plan_requests(date(2025, 1, 1), date(2025, 12, 31), interval="minute")
    assert len(chunks) == 7  # 365 days / 55
    assert all((hi - lo).days + 1 <= 60 for lo, hi in chunks)
    assert chunks[0][0] == date(2025, 1, 1) and chunks[-1][1] == date(2025, 12, 31)
    assert all(b[0] == a[1] + timedelta(days=1) for a, b in itertools.pairwise(chunks))


def test_day_data_spans_up_to_2000_days() -> None:
    assert len(plan_requests(date(2020, 1, 1), date(2025, 1, 1), interval=DAY)) == 1
    chunks = plan_requests(date(2015, 1, 1), date(2025, 1, 1), interval=DAY)
    assert len(chunks) == 2 and all((hi - lo).days + 1 <= 2000 for lo, hi in chunks)


def test_what_the_cache_covers_costs_no_request() -> None:
    start, end = date(2025, 1, 1), date(2025, 3, 31)
    assert plan_requests(start, end, interval="minute", covered=[(start, end)]) == []
    assert plan_requests(start, end, interval="minute", covered=[(start, date(2025, 3, 1))]) == [
        (date(2025, 3, 2), end)]


def test_one_symbol_a_year_uncached() -> None:
    # 1 day request (the lookback and the year fit in 1990 days) + 7 minute requests
    assert count_requests(date(2025, 1, 1), date(2025, 12, 31)) == 8
    covered_day = [(date(2025, 1, 1) - timedelta(days=LOOKBACK_DAYS), date(2025, 12, 31))]
    assert count_requests(date(2025, 1, 1), date(2025, 12, 31), covered_day=covered_day) == 7
