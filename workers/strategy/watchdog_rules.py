"""hourly_candle_watchdog's pure exit rules, selected by ``WATCHDOG_RULE``.

``hourly_low`` (the default; legacy section 4.2.6, the original ``hourly_candle_watchdog``):

* Level = the lower of the lows of the last two **completed** hourly candles **of the current
  session** (:func:`completed_hourly_candles` drops the one still forming; Kite's 60minute candles
  start at 09:15, 10:15, ..., 15:15 and the last one ends at the 15:30 close, so it is 15 minutes
  long), and for a position entered today only of candles that started at or after its first
  fill (:func:`eligible_hourly_candles`). One such candle: its low. None (before 10:15, or within
  the first full hour after an entry) → no level, no hourly exit: the broker stop protects the
  position. This follows legacy's helper (it asked for the last 180 minutes of hourly candles,
  so before 10:15 it saw only today's forming candle); the project's earlier reading let the two
  candles straddle days (yesterday's 14:15 and 15:15 before 10:15), which sold any flat open of
  a position bought near yesterday's close (docs/trading-rules.md).
* Exit when LTP < level (strictly: a tie holds): SELL LIMIT, CNC, the whole quantity, at
  level × 0.995 **floored** to the tick (marketable after a gap: see Pricing). Legacy example:
  lows 414.05 and 416.05, LTP 413.75 → sell at 411.95 (legacy rounded to the nearest tick, ≈ 412.0).

``atr_trailing`` (legacy section 4.2.3/4.2.4, ``SL_watchdog.py``):

* ATR = simple mean of the last 20 true ranges of daily candles (needs ≥ 21 candles; legacy fetched
  45 calendar days); ATR % = ATR / last close × 100. Multiplier by volatility bucket: ATR % < 2 →
  Low 1.0×; 2 ≤ ATR % ≤ 4 → Medium 1.5×; > 4 → High 2.0×.
* Stop = anchor − ATR × multiplier, floored to the tick, where the anchor is the highest price seen
  (pass each polled LTP, or today's high: because the stop never moves down, feeding every LTP
  gives "highest since loaded", as legacy HEAD). The stop **only moves up**.
* Exit when LTP ≤ stop (legacy used ≤ here): SELL LIMIT, CNC, the whole quantity, at stop × 0.995
  floored to the tick (marketable after a gap: see Pricing). Legacy golden's three exit tranches
  and profit targets are not carried over: its one-shot stop tranche left the remainder without
  any stop.

Pricing (both rules): the LIMIT is level × 0.995 floored to the tick when that is at or below
the LTP (legacy). When the LTP is already below it (a gap through the level), an order there would
rest above the market and never fill while the price keeps falling, so the limit is made
marketable instead: LTP × (1 − EXIT_MARKETABLE_BUFFER) floored to the tick (the buffer is 0.5 %),
i.e. ``min(level × 0.995, LTP × 0.995)`` in that case. :func:`exit_reprice` applies the same
price to an exit that is already open when the market has fallen below its limit: the watchdog
modifies the order down to LTP × 0.995. After a modification the LTP has to fall a further 0.5 %
before the order is above the market again, so the buffer also bounds how often it is modified.

Circuit (both rules, and the bot's GTT child when the watchdog reprices it): a SELL limit is never
below the lower circuit limit of ``quote()`` (:func:`clamp_to_band`): Kite rejects a price outside
the band, and a sell at the band queues there until the price leaves it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from itertools import pairwise
from typing import Any

from kitefleet.clock import IST
from kitefleet.ticks import round_to_tick
from workers.strategy.patterns import SESSION_CLOSE, Candle, CandleLike, to_candles

RULE_HOURLY_LOW = "hourly_low"
RULE_ATR_TRAILING = "atr_trailing"

EXIT_LIMIT_FACTOR = Decimal("0.995")
#: how far under the LTP a marketable exit limit goes (0.5 %)
EXIT_MARKETABLE_BUFFER = Decimal("0.005")
HOURLY_CANDLE = dt.timedelta(hours=1)
ATR_PERIOD = 20
#: Volatility buckets by ATR %: below 2 Low (1.0×), 2 to 4 inclusive Medium (1.5×), above High (2.0×).
ATR_LOW_BELOW = 2.0
ATR_MEDIUM_UP_TO = 4.0


@dataclass(frozen=True)
class ExitDecision:
    """Sell the whole quantity with a LIMIT order at ``limit_price``."""

    rule: str
    level: float
    ltp: float
    limit_price: float
    reason: str

    @property
    def marketable(self) -> bool:
        return self.limit_price <= self.ltp


def _aware(when: dt.datetime | dt.date) -> dt.datetime:
    if not isinstance(when, dt.datetime):
        return dt.datetime.combine(when, dt.time(0), IST)
    return when.replace(tzinfo=IST) if when.tzinfo is None else when.astimezone(IST)


def completed_hourly_candles(candles: Iterable[CandleLike], now: dt.datetime,
                             session_close: dt.time = SESSION_CLOSE) -> list[Candle]:
    """The 60minute candles that have ended at ``now`` (each ends an hour after its start, or at
    the session close if that is sooner)."""
    out = []
    for c in to_candles(candles):
        start = _aware(c.date)
        end = min(start + HOURLY_CANDLE, dt.datetime.combine(start.date(), session_close, IST))
        if end <= now:
            out.append(c)
    return out


def eligible_hourly_candles(candles: Iterable[CandleLike], now: dt.datetime, since: dt.datetime) -> list[Candle]:
    """The completed hourly candles the rule may read at ``now``: of ``now``'s session, started
    at or after ``since`` (the session open, or a position's first fill today)."""
    day = now.astimezone(IST).date()
    return [c for c in completed_hourly_candles(candles, now)
            if _aware(c.date).date() == day and _aware(c.date) >= since]


def hourly_low_level(last_two_completed_hourly: Sequence[CandleLike]) -> float | None:
    """The lower of the last two completed hourly lows (the low of one, when only one is
    eligible); ``None`` without any."""
    if not last_two_completed_hourly:
        return None
    return min(c.low for c in to_candles(last_two_completed_hourly[-2:]))


def marketable_limit(ltp: float, tick: float) -> float:
    """A SELL limit that fills at once: LTP × (1 − EXIT_MARKETABLE_BUFFER), floored to the tick."""
    return round_to_tick(float(Decimal(repr(float(ltp))) * (1 - EXIT_MARKETABLE_BUFFER)), tick, "floor")


def exit_limit_price(level: float, ltp: float, tick: float) -> float:
    """The exit's SELL limit: level × 0.995 floored to the tick, or the marketable limit when
    the LTP is already below that (the order would otherwise rest above the market)."""
    price = round_to_tick(float(Decimal(repr(float(level))) * EXIT_LIMIT_FACTOR), tick, "floor")
    if price <= ltp:
        return price
    return min(price, marketable_limit(ltp, tick))


def clamp_to_band(price: float, lower: float | None, tick: float) -> float:
    """A SELL limit no lower than the lower circuit limit (``None``: not known, unchanged)."""
    if lower is None or not lower > 0 or price >= lower:
        return price
    return round_to_tick(lower, tick, "ceil")


def exit_reprice(order_price: float, ltp: float, tick: float, lower: float | None = None) -> float | None:
    """The new limit of an open exit SELL that now rests above the market (its price above the
    LTP): the marketable limit, never below the lower circuit. None when it is at or below the
    LTP (it can fill as it is), or already at the band."""
    if not ltp > 0 or not order_price > ltp:
        return None
    new = clamp_to_band(marketable_limit(ltp, tick), lower, tick)
    return new if 0 < new < order_price else None


def hourly_low_exit(ltp: float, level: float | None, tick: float) -> ExitDecision | None:
    """Exit when the LTP is strictly below the hourly-low level."""
    if level is None or not ltp > 0 or not ltp < level:
        return None
    price = exit_limit_price(level, ltp, tick)
    return ExitDecision(RULE_HOURLY_LOW, level, ltp, price,
                        f"LTP {ltp} below the last two completed hourly lows ({level})")


def true_ranges(candles: Sequence[Candle]) -> list[float]:
    """True range of every candle after the first (each needs the previous close)."""
    return [max(c.high - c.low, abs(c.high - p.close), abs(c.low - p.close))
            for p, c in pairwise(candles)]


def atr(candles: Iterable[CandleLike], period: int = ATR_PERIOD) -> float | None:
    """Simple mean of the last ``period`` true ranges; ``None`` with fewer than period + 1 candles."""
    cs = to_candles(candles)
    if period <= 0 or len(cs) < period + 1:
        return None
    trs = true_ranges(cs[-(period + 1):])
    return sum(trs) / period


def atr_multiplier(atr_percent: float) -> tuple[str, float]:
    """Volatility bucket and stop multiplier for an ATR % (ATR / last close × 100)."""
    if atr_percent < ATR_LOW_BELOW:
        return "Low", 1.0
    if atr_percent <= ATR_MEDIUM_UP_TO:
        return "Medium", 1.5
    return "High", 2.0


def atr_trailing_stop(prev_stop: float | None, candles: Iterable[CandleLike], anchor: float,
                      tick: float, multiplier: float | None = None,
                      period: int = ATR_PERIOD) -> float | None:
    """The trailing stop after seeing ``anchor`` (an LTP or the day's high): anchor − ATR ×
    multiplier floored to the tick, never below ``prev_stop``. ``multiplier`` None → by bucket.
    Without enough candles (or a usable anchor) the previous stop stands."""
    cs = to_candles(candles)
    value = atr(cs, period)
    if value is None or not anchor > 0:
        return prev_stop
    mult = multiplier if multiplier is not None else atr_multiplier(value / cs[-1].close * 100)[1]
    raw = Decimal(repr(float(anchor))) - Decimal(repr(value)) * Decimal(repr(float(mult)))
    new = round_to_tick(float(raw), tick, "floor")
    if new <= 0:
        return prev_stop
    return new if prev_stop is None else max(prev_stop, new)


def atr_exit(ltp: float, stop: float | None, tick: float) -> ExitDecision | None:
    """Exit when the LTP is at or below the trailing stop."""
    if stop is None or not ltp > 0 or ltp > stop:
        return None
    return ExitDecision(RULE_ATR_TRAILING, stop, ltp, exit_limit_price(stop, ltp, tick),
                        f"LTP {ltp} at or below the ATR trailing stop {stop}")


def exit_order_params(symbol: str, quantity: int, decision: ExitDecision,
                      exchange: str = "NSE") -> dict[str, Any]:
    """``kite.place_order`` keyword arguments for an exit (the caller adds the tag)."""
    return {
        "variety": "regular", "exchange": exchange, "tradingsymbol": symbol,
        "transaction_type": "SELL", "quantity": quantity, "product": "CNC",
        "order_type": "LIMIT", "price": decision.limit_price, "validity": "DAY",
    }
