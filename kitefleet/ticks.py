"""Prices on the instrument's tick grid. Used by the paper broker and by every job."""

from __future__ import annotations

import math
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_UP, Decimal

# NSE cash-market tick sizes by price since 15 Apr 2025 (reference/kite-api.md section 5).
_TICK_BANDS: tuple[tuple[float, float], ...] = (
    (250.0, 0.01),
    (1000.0, 0.05),
    (5000.0, 0.10),
    (10000.0, 0.50),
    (20000.0, 1.00),
    (math.inf, 5.00),
)

_MODES = {"floor": ROUND_FLOOR, "ceil": ROUND_CEILING, "nearest": ROUND_HALF_UP}


def nse_tick_size(price: float) -> float:
    for upper, tick in _TICK_BANDS:
        if price < upper:
            return tick
    return _TICK_BANDS[-1][1]


def round_to_tick(price: float, tick: float, mode: str = "nearest") -> float:
    """``price`` on the ``tick`` grid, rounded down ("floor"), up ("ceil") or to the nearest.

    Decimal arithmetic: 1479.45 / 0.05 is 29588.999... in binary floating point, and a floor
    there would lose a whole tick.
    """
    if tick <= 0:
        return round(price, 2)
    d_tick = Decimal(str(tick))
    steps = (Decimal(repr(price)) / d_tick).quantize(Decimal(1), rounding=_MODES[mode])
    return float(steps * d_tick)


def on_tick(price: float, tick: float) -> bool:
    if tick <= 0:
        return True
    d_tick = Decimal(str(tick))
    return (Decimal(repr(price)) % d_tick) == 0
