"""Where the backtest's candles come from. One protocol, two sources:

* paper: the shared simulated market (``kitefleet.sim.market.Market``, the paper broker's own model,
  with its seed and scenario), read in process: no HTTP, so 250 sessions take seconds;
* live: Kite's historical candles through the user's own read-only session and the shared
  candle cache (``workers/backtest/live.py``), within Kite's rate and span limits.

A source never invents data: a symbol-day it cannot give is ``None`` and the engine reports it.
"""

from __future__ import annotations

from datetime import date
from typing import Protocol

from kitefleet.sim.book import Book
from workers.strategy.patterns import Candle


class CandleSource(Protocol):
    name: str  # "paper" | "live"

    def symbols(self) -> list[str]:
        """The universe the user's settings scan, in order."""
        ...

    def tick(self, symbol: str) -> float:
        ...

    def daily(self, symbol: str, start: date, end: date) -> list[Candle] | None:
        """Completed day candles from ``start`` to ``end`` inclusive (``date`` fields are dates)."""
        ...

    def minutes(self, symbol: str, day: date) -> list[Candle] | None:
        """The session's minute candles (aware IST datetimes, 09:15 ... 15:29)."""
        ...

    def circuit(self, symbol: str, day: date) -> tuple[float, float] | None:
        """(lower, upper) circuit limits of the day, when the source knows them."""
        ...

    def book(self, symbol: str, day: date, minute: int) -> Book | None:
        """The order book at minute ``minute`` of the session (0 = 09:15), when the source has
        depth (paper); ``None`` for history, where a fill is the minute's close plus or minus half
        the spread model's typical spread (the summary says so)."""
        ...
