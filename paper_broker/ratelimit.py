"""Kite's rate limits, per API key, as sliding windows of wall-clock time.

Each class allows at most N requests in any sliding one-second window of market time: wall seconds
at real speed (as Kite counts them), and under a replay clock faster than real time a second of
that clock, i.e. the window divided by its speed (the client's limiter, workers.ratelimit, counts
the same way, so a 900x replay keeps its jobs' real pace in market time instead of spending 15
market minutes per quote read). A jump of the clock frees no slot: the windows are still measured
in wall time, only shortened by the speed.

    quote       /quote, /quote/ohlc, /quote/ltp            1 / s
    historical  /instruments/historical/...                3 / s
    orders      POST, PUT, DELETE /orders/...             10 / s
    other       every other call, reads combined           10 / s

Order placements are also capped at 400 in any sliding 60 seconds (market time, as above) and 5,000 per simulated
trading date (the "orders of the day" cap resets when the broker's date changes, so a replay of
many days is not starved by an earlier day's orders).

Only accepted requests are counted: a client that keeps retrying while blocked is let through as
soon as the window has room again, as on Kite. Answers over the limit are HTTP 429
NetworkException "Too many requests".
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date

from paper_broker.errors import rate_limited

QUOTE, HISTORICAL, ORDERS, OTHER = "quote", "historical", "orders", "other"

PER_SECOND: dict[str, int] = {QUOTE: 1, HISTORICAL: 3, ORDERS: 10, OTHER: 10}
ORDERS_PER_MINUTE = 400
ORDERS_PER_DAY = 5000


@dataclass
class SlidingWindow:
    """At most ``limit`` events in any window of ``seconds``; ``allow`` records an accepted event."""

    limit: int
    seconds: float
    events: deque[float] = field(default_factory=deque)

    def _expire(self, now: float) -> None:
        edge = now - self.seconds
        events = self.events
        while events and events[0] <= edge:
            events.popleft()

    def has_room(self, now: float) -> bool:
        self._expire(now)
        return len(self.events) < self.limit

    def record(self, now: float) -> None:
        self.events.append(now)


class RateLimiter:
    """Thread-safe. ``check`` raises the 429 KiteError or records the request."""

    def __init__(self, *, enabled: bool = True, monotonic: Callable[[], float] = time.monotonic,
                 per_second: dict[str, int] | None = None, orders_per_minute: int = ORDERS_PER_MINUTE,
                 orders_per_day: int = ORDERS_PER_DAY, speed: Callable[[], float] = lambda: 1.0) -> None:
        self.enabled = enabled
        self._monotonic = monotonic
        self._speed = speed  # the clock's market seconds per wall second
        self._per_second = dict(PER_SECOND if per_second is None else per_second)
        self._orders_per_minute = orders_per_minute
        self._orders_per_day = orders_per_day
        self._windows: dict[tuple[str, str], SlidingWindow] = {}
        self._day_counts: dict[str, tuple[date | None, int]] = {}
        self._lock = threading.Lock()

    def _window(self, api_key: str, kind: str, limit: int, seconds: float) -> SlidingWindow:
        window = self._windows.get((api_key, kind))
        if window is None:
            window = self._windows[(api_key, kind)] = SlidingWindow(limit, seconds)
        window.seconds = seconds  # the clock's speed may have changed since
        return window

    def check(self, api_key: str, klass: str, *, places_order: bool = False, day: date | None = None) -> None:
        """Admit one request of ``klass`` for ``api_key``. ``places_order`` adds the per-minute
        and per-day order caps (``day`` is the broker's simulated trading date)."""
        if not self.enabled:
            return
        now = self._monotonic()
        scale = max(1.0, float(self._speed()))
        with self._lock:
            second = self._window(api_key, klass, self._per_second[klass], 1.0 / scale)
            if not second.has_room(now):
                raise rate_limited()
            if places_order:
                minute = self._window(api_key, "orders/min", self._orders_per_minute, 60.0 / scale)
                if not minute.has_room(now):
                    raise rate_limited()
                counted_day, count = self._day_counts.get(api_key, (day, 0))
                if counted_day != day:
                    count = 0
                if count >= self._orders_per_day:
                    raise rate_limited()
                minute.record(now)
                self._day_counts[api_key] = (day, count + 1)
            second.record(now)
