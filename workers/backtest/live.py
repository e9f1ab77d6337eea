"""The backtest's live source: Kite's historical candles through the user's own read-only session
and the shared candle cache (``workers.marketdata``: ``data/shared/<source>/candles/``), so a
second run, or another user's scan, costs no request for what is already cached.

Kite's limits (reference/kite-api.md 3.14 and the rate table): minute data in requests of at most
60 days (``MAX_SPAN_DAYS``: 55, a margin), day data 2000 days (1990), historical 3 requests/s (the
user's shared rate limiter in the client). :func:`plan_requests` is the pure plan the run prints
before starting (``requests_needed``). History has no order book: ``book()`` is None and the
engine fills at the minute's close plus or minus half the typical spread (it says so).
A symbol-day Kite does not have is ``None`` and listed in ``missing``: never invented.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import date, datetime, timedelta
from typing import Any

from kitefleet import clock
from kitefleet.calendar import NseCalendar
from kitefleet.clock import IST
from kitefleet.sim.book import Book
from workers.backtest.model import BacktestSpec
from workers.marketdata import DAY, MAX_SPAN_DAYS, MarketData, _chunks, missing_ranges
from workers.strategy.patterns import Candle

MINUTE = "minute"
#: Calendar days of day candles before the range's first session, for the scan's indicators.
LOOKBACK_DAYS = 400


def plan_requests(start: date, end: date, *, interval: str,
                  covered: Iterable[tuple[date, date]] = ()) -> list[tuple[date, date]]:
    """The historical requests [lo, hi] that fetch what ``covered`` lacks of [start, end]."""
    span = MAX_SPAN_DAYS[interval]
    return [chunk for lo, hi in missing_ranges(list(covered), start, end) for chunk in _chunks(lo, hi, span)]


def count_requests(start: date, end: date, *, lookback_days: int = LOOKBACK_DAYS,
                   covered_day: Iterable[tuple[date, date]] = (),
                   covered_minute: Iterable[tuple[date, date]] = ()) -> int:
    """One symbol's requests: its day candles from the lookback, its minute candles of the range."""
    daily = plan_requests(start - timedelta(days=lookback_days), end, interval=DAY, covered=covered_day)
    minutes = plan_requests(start, end, interval=MINUTE, covered=covered_minute)
    return len(daily) + len(minutes)


class LiveSource:
    """The CandleSource protocol on Kite history (``workers.backtest.data``)."""

    name = "live"

    def __init__(self, market: MarketData, calendar: NseCalendar, symbols: list[str],
                 log: logging.Logger, *, lookback_days: int = LOOKBACK_DAYS) -> None:
        self.market = market
        self.calendar = calendar
        self._symbols = list(symbols)
        self.log = log
        self.lookback_days = lookback_days
        #: what Kite did not have, one line each (the engine and the summary report it)
        self.missing: list[str] = []
        self._minutes: dict[tuple[str, date], list[Candle]] = {}

    def symbols(self) -> list[str]:
        return list(self._symbols)

    def tick(self, symbol: str) -> float:
        return self.market.tick_size(symbol)

    def _covered(self, symbol: str, interval: str) -> list[tuple[date, date]]:
        token = self.market.token(symbol)
        path, _ = self.market._candle_paths(token, interval)
        return self.market._covered(self.market._load_candles(path, token, interval))

    def requests_needed(self, spec: BacktestSpec) -> int:
        """Historical requests this run makes, given what the shared cache holds (+1 instruments
        list when it is not cached today)."""
        total = 0
        for symbol in self._symbols:
            total += count_requests(spec.start, spec.end, lookback_days=self.lookback_days,
                                    covered_day=self._covered(symbol, DAY),
                                    covered_minute=self._covered(symbol, MINUTE))
        return total

    def _last_completed(self) -> date:
        # Never cache a session that has not closed yet as "covered": it would read as empty forever.
        return self.calendar.last_completed_session(clock.now())

    def daily(self, symbol: str, start: date, end: date) -> list[Candle] | None:
        end = min(end, self._last_completed())
        if end < start:
            self.missing.append(f"{symbol}: no completed session {start}..")
            return None
        rows = self.market.candles(symbol, DAY, start, end, last_completed=end,
                                   now=datetime.combine(end + timedelta(days=1), datetime.min.time(), IST))
        if not rows:
            self.missing.append(f"{symbol}: no day candles {start}..{end}")
            return None
        return [Candle(date=_as_date(r["date"]), open=r["open"], high=r["high"], low=r["low"],
                       close=r["close"], volume=r.get("volume", 0)) for r in rows]

    def minutes(self, symbol: str, day: date) -> list[Candle] | None:
        key = (symbol, day)
        if key not in self._minutes:
            self._load_minutes(symbol, day)
        rows = self._minutes.get(key)
        if not rows:
            self.missing.append(f"{symbol}: no minute candles on {day}")
            return None
        return rows

    def _load_minutes(self, symbol: str, day: date) -> None:
        # One fetch per 55-day chunk: the first minute asked of a chunk loads the whole chunk.
        lo = day
        hi = min(day + timedelta(days=MAX_SPAN_DAYS[MINUTE] - 1), self._last_completed())
        if hi < lo:
            return
        rows = self.market.candles(symbol, MINUTE, lo, hi, last_completed=hi,
                                   now=datetime.combine(hi + timedelta(days=1), datetime.min.time(), IST))
        for r in rows:
            stamp = r["date"].astimezone(IST)
            self._minutes.setdefault((symbol, stamp.date()), []).append(
                Candle(date=stamp, open=r["open"], high=r["high"], low=r["low"], close=r["close"],
                       volume=r.get("volume", 0)))
        cursor = lo
        while cursor <= hi:
            self._minutes.setdefault((symbol, cursor), [])
            cursor += timedelta(days=1)

    def circuit(self, symbol: str, day: date) -> tuple[float, float] | None:
        return None  # history does not carry the day's bands

    def book(self, symbol: str, day: date, minute: int) -> Book | None:
        return None


def _as_date(value: Any) -> date:
    return value.astimezone(IST).date() if isinstance(value, datetime) else value
