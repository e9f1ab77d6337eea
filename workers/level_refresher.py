"""The watchdog's level refresher: one background thread fetching candles, so that an hour
boundary with many positions never delays an LTP poll (the historical class has its own rate
limit). The watchdog submits (symbol, "hourly"|"daily", as_of) and drains the results on its own
thread; until a symbol's new level arrives the previous one stays in use.

Hourly levels read the current session only (one request per symbol: today's candles, never
cached), and for a position entered today only candles started at or after its first fill
(``since``; workers.strategy.watchdog_rules.eligible_hourly_candles). A request may carry a
``not_before`` (trading clock): the watchdog spreads an hour's refresh over one poll interval
instead of sending every symbol's request at the boundary. Daily candles (the ATR) come from
the shared cache (workers.marketdata), which the evening scan filled: no request at start-up.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from kitefleet.calendar import NseCalendar
from kitefleet.clock import IST
from kitefleet.errors import KitefleetError
from workers.strategy.watchdog_rules import eligible_hourly_candles, hourly_low_level

#: calendar days of daily candles read for the ATR (20 sessions and holidays)
ATR_LOOKBACK_DAYS = 45


@dataclass(frozen=True)
class LevelResult:
    symbol: str
    kind: str  # "hourly" | "daily"
    as_of: str
    lows: list[list[Any]] = field(default_factory=list)
    #: hourly: the first instant a candle may start at (the open, or the entry's first fill)
    since: str | None = None
    level: float | None = None
    complete: bool = True
    candles: list[Any] = field(default_factory=list)
    error: str | None = None


class LevelRefresher:
    """One background thread fetching candles (the historical class has its own rate limit, so
    it never slows the LTP polls). ``submit`` is idempotent while a request is in flight."""

    def __init__(self, market: Any, calendar: NseCalendar, log: logging.Logger,
                 stop: threading.Event, now: Callable[[], datetime]) -> None:
        self.market, self.calendar, self.log, self.stop, self.now = market, calendar, log, stop, now
        self._todo: queue.Queue[tuple[str, str, datetime, datetime | None, datetime | None]] = queue.Queue()
        self._done: queue.Queue[LevelResult] = queue.Queue()
        self._inflight: set[tuple[str, str]] = set()
        self._lock = threading.Lock()
        self._halt = threading.Event()
        self._thread = threading.Thread(target=self._run, name="level-refresher", daemon=True)
        self._thread.start()

    def submit(self, symbol: str, kind: str, as_of: datetime, *, since: datetime | None = None,
               not_before: datetime | None = None) -> bool:
        """Queue a refresh; ``since``: hourly candles started before it are not read;
        ``not_before``: not requested before this trading-clock instant (requests are taken in
        the order submitted)."""
        with self._lock:
            if (symbol, kind) in self._inflight:
                return False
            self._inflight.add((symbol, kind))
        self._todo.put((symbol, kind, as_of, since, not_before))
        return True

    def busy(self, symbol: str, kind: str) -> bool:
        with self._lock:
            return (symbol, kind) in self._inflight

    def drain(self) -> list[LevelResult]:
        out: list[LevelResult] = []
        while True:
            try:
                result = self._done.get_nowait()
            except queue.Empty:
                return out
            with self._lock:
                self._inflight.discard((result.symbol, result.kind))
            out.append(result)

    def close(self, timeout: float) -> None:
        """Stop after the request in flight (a daemon thread: a hung request cannot hold the exit)."""
        self._halt.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        while not (self.stop.is_set() or self._halt.is_set()):
            try:
                symbol, kind, as_of, since, not_before = self._todo.get(timeout=0.2)
            except queue.Empty:
                continue
            while not_before is not None and self.now() < not_before:
                if self.stop.wait(0.05) or self._halt.is_set():
                    return
            try:
                result = self._hourly(symbol, as_of, since) if kind == "hourly" else self._daily(symbol, as_of)
            except (KitefleetError, OSError, ValueError, KeyError) as exc:
                result = LevelResult(symbol, kind, as_of.isoformat(), error=f"{type(exc).__name__}: {exc}")
            except Exception as exc:  # a bug here must not kill the thread silently
                self.log.exception("candle refresh of %s failed", symbol)
                result = LevelResult(symbol, kind, as_of.isoformat(), error=f"{type(exc).__name__}: {exc}")
            self._done.put(result)

    def _hourly(self, symbol: str, as_of: datetime, since: datetime | None) -> LevelResult:
        now = self.now()
        day = as_of.date()
        since = since or self.calendar.session_bounds(day)[0]
        candles = self.market.hourly_candles(symbol, day, day, now=now)
        done = [c for c in eligible_hourly_candles(candles, now, since) if candle_start(c.date) <= as_of]
        last_two = done[-2:]
        lows = [[candle_start(c.date).isoformat(), c.low] for c in last_two]
        complete = bool(last_two) and candle_start(last_two[-1].date) == as_of
        return LevelResult(symbol, "hourly", as_of.isoformat(), lows, since=since.isoformat(),
                           level=hourly_low_level(last_two), complete=complete)

    def _daily(self, symbol: str, as_of: datetime) -> LevelResult:
        last = self.calendar.last_completed_session(self.now())
        candles = self.market.daily_candles(symbol, last - timedelta(days=ATR_LOOKBACK_DAYS), last,
                                            last_completed=last)
        return LevelResult(symbol, "daily", as_of.isoformat(), candles=candles)


def candle_start(when: datetime | date) -> datetime:
    if not isinstance(when, datetime):
        return datetime.combine(when, datetime.min.time(), IST)
    return when.replace(tzinfo=IST) if when.tzinfo is None else when.astimezone(IST)
