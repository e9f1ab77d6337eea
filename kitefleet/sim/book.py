"""Quote and depth at a moment, from a minute path: pure functions on integer ticks.

Shared by the paper broker's engine and (later) the backtest: no SQLite, no server, no clock, no
random state of its own. Whoever owns the path (``kitefleet.sim.market``) passes the draws in, so
the same seed, symbol and day always give the same book.

The model, per simulated minute ``i`` of a symbol's day:

* ``spread`` (ticks, >= 1 for a real instrument) and ``offset`` (0..spread): while the minute
  trades at price ``p``, the best bid is ``p - offset`` and the best ask ``p - offset + spread``.
  So the last traded price always lies between bid and ask, and a minute's trade range
  ``[low, high]`` gives its ask range ``[low, high] - offset + spread`` and its bid range
  ``[low, high] - offset``. The book moves rigidly with the price inside a minute.
* The quote at an instant inside minute ``i`` is that book at the minute's first trade (its open,
  which is the previous minute's close, the LTP): what ``quote()`` shows is exactly what an order
  placed then meets.
* ``spread_path``: mostly 1-3 ticks; wider in the first 15 minutes of the session and in and just
  after a minute that jumps (a range of 0.3 % or more: a scenario's waypoint, a news gap).
* Circuit bands ``[lower, upper]`` per minute: at the upper band there are buyers and no sellers
  (no asks), at the lower band sellers and no buyers (no bids). ``dynamic_band`` is NSE's F&O
  operating range: 10 % around the previous close, slid 5 % in the direction of the move after 15
  minutes at the band (and at once when a scripted path goes beyond it: the scenario wins);
  ``fixed_band`` is a 2/5/10/20 % band of a stock outside F&O.
* Depth: five levels a side, one tick apart from the touch, sized from the minute's volume (the
  ``DEPTH_SHARE`` of it per level, times a draw) with an order count from a typical ticket size.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np

DEPTH_LEVELS = 5
#: Share of the minute's volume resting at each depth level (best first), before the draw.
DEPTH_SHARE = (0.05, 0.07, 0.09, 0.11, 0.13)
#: A typical resting order's value (Rs), for the depth's order counts.
TICKET_VALUE = 40_000.0
#: Cumulative probabilities of a 1, 2, 3, 4, 5 tick spread in an ordinary minute.
SPREAD_CUMULATIVE = (0.52, 0.82, 0.94, 0.98, 1.0)


def typical_spread_ticks() -> int:
    """The mean spread of an ordinary minute under SPREAD_CUMULATIVE, rounded up (2 ticks): what a
    backtest on history, which has no book, assumes (workers.backtest.engine)."""
    probs = [b - a for a, b in zip((0.0, *SPREAD_CUMULATIVE), SPREAD_CUMULATIVE, strict=False)]
    return math.ceil(sum((k + 1) * p for k, p in enumerate(probs)) - 1e-9)
OPENING_MINUTES = 15
#: A minute whose range is at least this many basis points of its close is a jump.
JUMP_BPS = 30
JUMP_SHARE = 0.1
JUMP_MAX_TICKS = 20
FNO_BAND_PERCENT = 10
FNO_FLEX_PERCENT = 5
FNO_COOLING_MINUTES = 15
FIXED_BANDS = (2, 5, 10, 20)


@dataclass(frozen=True)
class Level:
    price: int  # ticks
    quantity: int
    orders: int


@dataclass(frozen=True)
class Book:
    """The order book at an instant: best level first on each side; a side is empty at a band."""

    tick: float
    last: int
    bids: tuple[Level, ...]
    asks: tuple[Level, ...]
    lower: int
    upper: int
    #: Volume of the minute in progress: the base of the participation cap for an arriving order.
    volume: int

    @property
    def bid(self) -> int | None:
        return self.bids[0].price if self.bids else None

    @property
    def ask(self) -> int | None:
        return self.asks[0].price if self.asks else None

    def price(self, ticks: int) -> float:
        return to_price(ticks, self.tick)

    def depth_wire(self) -> dict[str, list[dict[str, float | int]]]:
        """Kite's ``depth``: five levels a side, empty levels as zeros."""
        def side(levels: tuple[Level, ...]) -> list[dict[str, float | int]]:
            rows: list[dict[str, float | int]] = [
                {"price": self.price(lv.price), "quantity": lv.quantity, "orders": lv.orders} for lv in levels]
            rows += [{"price": 0.0, "quantity": 0, "orders": 0}] * (DEPTH_LEVELS - len(rows))
            return rows
        return {"buy": side(self.bids), "sell": side(self.asks)}


@dataclass(frozen=True)
class Bar:
    """One completed minute as the fill model sees it (prices in ticks)."""

    start: datetime
    open: int
    low: int
    high: int
    close: int
    volume: int
    spread: int
    offset: int
    lower: int
    upper: int
    tick: float

    def price(self, ticks: int) -> float:
        return to_price(ticks, self.tick)


def to_price(ticks: int, tick: float) -> float:
    """Ticks to rupees, exact to the paisa (ticks are whole paise multiples)."""
    return round(ticks * round(tick * 100)) / 100 if tick > 0 else float(ticks) / 100


def to_ticks(price: float, tick: float) -> int:
    return round(price * 100) // round(tick * 100) if tick > 0 else round(price * 100)


def touch(p: int, spread: int, offset: int, lower: int, upper: int) -> tuple[int | None, int | None]:
    """(best bid, best ask) while the minute trades at ``p``; None for a side emptied by a band."""
    bid = max(p - offset, lower, 1) if p > lower else None
    ask = min(p - offset + spread, upper) if p < upper else None
    if bid is not None and ask is not None and ask < bid:  # squeezed against a band
        ask = bid
    return bid, ask


def book_at(last: int, spread: int, offset: int, lower: int, upper: int, volume: int, tick: float,
            draws: Sequence[float]) -> Book:
    """The book when the minute trades at ``last``. ``draws``: ten standard normals (quantities
    of the five bid then the five ask levels)."""
    bid, ask = touch(last, spread, offset, lower, upper)
    if bid is None and ask is None:  # a band of zero width cannot happen on a real price
        ask = last
    if bid is None and ask is not None and last <= lower:
        ask = lower  # at the lower band the sellers queue at the band
    if ask is None and bid is not None and last >= upper:
        bid = upper
    price = to_price(last, tick)
    bids = _levels(bid, -1, lower, volume, price, draws[:DEPTH_LEVELS]) if bid is not None else ()
    asks = _levels(ask, +1, upper, volume, price, draws[DEPTH_LEVELS:]) if ask is not None else ()
    return Book(tick=tick, last=last, bids=bids, asks=asks, lower=lower, upper=upper, volume=volume)


def _levels(best: int, step: int, band: int, volume: int, price: float, draws: Sequence[float]) -> tuple[Level, ...]:
    out: list[Level] = []
    for k in range(DEPTH_LEVELS):
        p = best + step * k
        if p < 1 or (step > 0 and p > band) or (step < 0 and p < band):
            break
        quantity = max(1, int(volume * DEPTH_SHARE[k] * math.exp(0.35 * float(draws[k]) - 0.06)))
        orders = max(1, min(quantity, round(quantity * price / TICKET_VALUE)))
        out.append(Level(p, quantity, orders))
    return tuple(out)


# --- per-minute series (vectorised, for a whole day at once) ---------------------------------
def spread_path(u: np.ndarray, parity: np.ndarray, high: np.ndarray, low: np.ndarray, close: np.ndarray,
                pinned: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(spread, offset) in ticks for each minute of a day. ``u``, ``parity``: uniform draws in [0, 1);
    ``pinned``: a scenario's spread per minute (0 where none) that overrides the model."""
    n = len(u)
    spread = np.searchsorted(np.array(SPREAD_CUMULATIVE), u, side="right").astype(np.int64) + 1
    spread = np.minimum(spread, len(SPREAD_CUMULATIVE))
    m = np.arange(n)
    spread += np.where(m < OPENING_MINUTES, np.ceil((OPENING_MINUTES - m) / 4), 0).astype(np.int64)
    rng = (high - low).astype(np.int64)
    jump = np.where(rng * 10_000 >= JUMP_BPS * np.maximum(close, 1),
                    np.minimum(JUMP_MAX_TICKS, np.ceil(JUMP_SHARE * rng)), 0).astype(np.int64)
    around = jump.copy()
    around[1:] = np.maximum(around[1:], jump[:-1] // 2)
    around[2:] = np.maximum(around[2:], jump[:-2] // 4)
    spread += around
    if pinned is not None:
        spread = np.where(pinned > 0, pinned, spread)
    offset = spread // 2 + np.where(spread % 2 == 1, (parity < 0.5).astype(np.int64), 0)
    return spread, offset


def band_ticks(prev: int, low_pct: int, high_pct: int) -> tuple[int, int]:
    """A band around ``prev`` (ticks), rounded inwards; never below one tick."""
    return max(1, -((-prev * (100 + low_pct)) // 100)), max(1, (prev * (100 + high_pct)) // 100)


def fixed_band(prev: int, percent: int) -> tuple[int, int]:
    if percent not in FIXED_BANDS:
        raise ValueError(f"band {percent} % is not one of {FIXED_BANDS}")
    return band_ticks(prev, -percent, percent)


def dynamic_band(prev: int, close: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The F&O operating range in force in each minute (see the module docstring)."""
    n = len(close)
    lower = np.empty(n, dtype=np.int64)
    upper = np.empty(n, dtype=np.int64)
    lo_pct, hi_pct = -FNO_BAND_PERCENT, FNO_BAND_PERCENT
    at_band = 0
    for i, c in enumerate(close.tolist()):
        lo, hi = band_ticks(prev, lo_pct, hi_pct)
        while c > hi:  # a scripted path beyond the band: the band slides with it at once
            lo_pct, hi_pct = lo_pct + FNO_FLEX_PERCENT, hi_pct + FNO_FLEX_PERCENT
            lo, hi = band_ticks(prev, lo_pct, hi_pct)
        while c < lo:
            lo_pct, hi_pct = lo_pct - FNO_FLEX_PERCENT, hi_pct - FNO_FLEX_PERCENT
            lo, hi = band_ticks(prev, lo_pct, hi_pct)
        lower[i], upper[i] = lo, hi
        side = 1 if c >= hi else -1 if c <= lo else 0
        at_band = at_band + side if side and (at_band == 0 or (at_band > 0) == (side > 0)) else side
        if abs(at_band) >= FNO_COOLING_MINUTES:
            step = FNO_FLEX_PERCENT if at_band > 0 else -FNO_FLEX_PERCENT
            lo_pct, hi_pct = lo_pct + step, hi_pct + step
            at_band = 0
    return lower, upper
