"""The daily scanner: seven-condition bullish reversal score, stop, targets, trend and growth pattern.

Over 400 lines because the rules below are stated in full (a third of the file); the code is one
scorer with its candle and CSV row shapes, which the scan file and the entry job both read.

Input: daily candles of **completed** sessions, oldest first (:class:`Candle` or the dicts the
kiteconnect client returns: ``date, open, high, low, close, volume``). :func:`completed_daily_candles`
drops today's candle while the session is still open. Output: one frozen :class:`ScanResult` per
symbol. ``pattern_daily`` writes them as CSV with the columns :data:`SCAN_COLUMNS`, rows ordered by
:func:`scan_sort_key`; ``place_orders_daily`` reads that CSV back with :meth:`ScanResult.from_row`.

Rules (legacy section 4.0, ``Al_Brooks_Higher_Probability_Reversal.py``; trend and growth from
section 4.4, ``Pattern_Daily.py``):

* Data: at least :data:`MIN_CANDLES` = 60 candles (about six months are fetched). Fewer → score 0,
  ``reason = "insufficient data: N candles, need 60"``. 60 = the 40-bar growth window, each bar with
  its SMA20 (19 earlier bars), plus the bar before the window for the first SMA20 crossing.
* Indicators on the last bar: SMA20 of closes; ATR14 = simple mean of the last 14 true ranges
  (TR = max(high−low, |high−prev close|, |low−prev close|); the first candle's TR is high−low);
  3-bar fractal swing high = a bar whose high is strictly above both neighbours' highs (swing low
  alike with lows), the most recent one is the "last swing high/low" (the last bar cannot be one:
  it has no right neighbour, so no look-ahead); body % = |close−open| / (high−low) × 100 (0 for a
  zero-range bar); volume ratio = volume / mean volume of the last 20 bars including this one;
  5-day momentum = (close / close 5 sessions ago − 1) × 100.
* The seven conditions, one point each (:data:`CONDITIONS`, in this order):
  1. ``close_above_swing_high``: close > last swing high (no swing high → no point);
  2. ``two_of_three_up``: at least 2 of the last 3 bars closed up (close > open, a bull bar);
  3. ``strong_bodies``: mean body % of the last 3 bars > 60;
  4. ``volume_surge``: volume ratio > 1.5;
  5. ``above_sma20``: close > SMA20;
  6. ``momentum_5d``: 5-day momentum > 2 %;
  7. ``close_near_high``: (close − low) / (high − low) > 0.7 (a zero-range bar scores no point).
  All comparisons are strict, so a tie earns no point. ``place_orders_daily`` enters scores ≥
  MIN_SCORE (default 5, as legacy "qualifies when score ≥ 5").
* Entry = last close. Stop = the lower of (close − 2.5 × ATR14) and (last swing low − 0.5 × ATR14)
  (no swing low → the first alone), **floored** to the tick. Risk = entry − stop;
  target_1 = entry + 2 × risk; target_2 = entry + 3 × risk (on the tick grid because entry and stop
  are). A stop ≤ 0 or a zero ATR gives no stop/targets and ``reason = "no valid stop: ..."``.
* Risk-reward (changed on purpose: legacy wrote a constant 2.0, so its sort by R:R never
  discriminated): reward is measured to the nearest overhead resistance, the lowest swing high
  above the entry in the candles given, capped at target_2; no resistance above → target_2, i.e.
  R:R 3.0. R:R = reward / risk, 2 decimals. A stock breaking out just under an old high ranks below
  one with clear air above it.
* Trend (section 4.4): SMA20 slope = least-squares slope of the last 8 SMA20 values ÷ the latest
  SMA20 × 100 (% per bar). > 0.5 → ``bull``; < −0.5 → ``bear``; otherwise ``sideways``.
* Growth pattern over the last 40 bars (section 4.4), first match wins; Keltner channel = SMA20 ±
  2 × ATR14; a crossing is a bar whose close-above-SMA20 flag differs from the previous bar's:
  ≥ 10 closes above KC upper → ``strong_momentum``; ≥ 30 closes above SMA20 and ≤ 4 crossings →
  ``consistent_trend``; ≥ 25 above and ≥ 5 crossings → ``break_and_base``; ≥ 8 closes below KC lower
  → ``oversold``; otherwise ``mixed``. (Changed on purpose: legacy counted the window's first bar
  as a crossing always; here it is compared with the bar before the window.) The legacy sentences
  are in :data:`GROWTH_DESCRIPTIONS`.
* Not carried over: SMA50/SMA200 and 10-day ROC (computed by legacy, used by no condition);
  Pattern_Daily's "KC Upper" stop (above the price) and its similar-historical-setups report.

Prices that may reach the broker (entry, stop, targets) are on the tick grid given, else on the NSE
grid for the close (:func:`kitefleet.ticks.nse_tick_size`). Deterministic and pure Python (no
pandas): 50 symbols × 130 candles take about 5-10 ms.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from itertools import pairwise
from typing import Any, cast

from kitefleet.clock import IST
from kitefleet.ticks import nse_tick_size, round_to_tick

SESSION_CLOSE = dt.time(15, 30)

MIN_CANDLES = 60
SMA_PERIOD = 20
ATR_PERIOD = 14
VOLUME_PERIOD = 20
MOMENTUM_DAYS = 5
SLOPE_POINTS = 8
GROWTH_WINDOW = 40
KELTNER_ATR_MULTIPLE = 2.0
STOP_ATR_MULTIPLE = 2.5
SWING_STOP_ATR_MULTIPLE = 0.5
TARGET_1_R = 2
TARGET_2_R = 3

BODY_PERCENT_MIN = 60.0
VOLUME_RATIO_MIN = 1.5
MOMENTUM_MIN = 2.0
CLOSE_POSITION_MIN = 0.7
TREND_SLOPE = 0.5

CONDITIONS: tuple[str, ...] = (
    "close_above_swing_high",
    "two_of_three_up",
    "strong_bodies",
    "volume_surge",
    "above_sma20",
    "momentum_5d",
    "close_near_high",
)

TREND_BULL, TREND_BEAR, TREND_SIDEWAYS = "bull", "bear", "sideways"

GROWTH_DESCRIPTIONS: Mapping[str, str] = {
    "strong_momentum": "Strong momentum growth with frequent Keltner Channel upper band breaks",
    "consistent_trend": "Consistent trend growth staying above SMA20",
    "break_and_base": "Break and base cycle with SMA20 as support",
    "oversold": "Oversold with potential for reversal",
    "mixed": "Mixed pattern without clear trend characteristics",
}

#: CSV column order of the scan file pattern_daily writes, one row per symbol.
#: ``conditions`` joins the names of the conditions hit with ";"; empty cells mean "not computed".
SCAN_COLUMNS: tuple[str, ...] = (
    "symbol", "score", "conditions", "entry", "stop_loss", "target_1", "target_2", "risk",
    "risk_reward", "atr", "volume_ratio", "momentum_5d", "sma20", "sma20_slope", "trend",
    "growth_pattern", "last_session", "candles", "reason",
)


@dataclass(frozen=True, slots=True)
class Candle:
    date: dt.datetime | dt.date
    open: float
    high: float
    low: float
    close: float
    volume: float = 0.0


CandleLike = Candle | Mapping[str, Any]


def to_candle(row: CandleLike) -> Candle:
    """A :class:`Candle` from itself or from a kiteconnect candle dict."""
    if isinstance(row, Candle):
        return row
    return Candle(row["date"], float(row["open"]), float(row["high"]), float(row["low"]),
                  float(row["close"]), float(row.get("volume") or 0.0))


def to_candles(rows: Iterable[CandleLike]) -> list[Candle]:
    return [to_candle(r) for r in rows]


def session_date(when: dt.datetime | dt.date) -> dt.date:
    """The IST trading date of a candle timestamp (naive datetimes are taken as IST)."""
    if isinstance(when, dt.datetime):
        return when.astimezone(IST).date() if when.tzinfo is not None else when.date()
    return when


def completed_daily_candles(candles: Iterable[CandleLike], now: dt.datetime,
                            session_close: dt.time = SESSION_CLOSE) -> list[Candle]:
    """Daily candles of sessions complete at ``now``: before today, or today once the session
    has closed (Kite returns today's candle, still forming, during the session)."""
    local = now.astimezone(IST)
    today = local.date()
    closed_today = local.time() >= session_close
    out = []
    for c in to_candles(candles):
        d = session_date(c.date)
        if d < today or (d == today and closed_today):
            out.append(c)
    return out


@dataclass(frozen=True)
class ScanResult:
    symbol: str
    score: int
    conditions: tuple[str, ...] = ()
    entry: float | None = None
    stop_loss: float | None = None
    target_1: float | None = None
    target_2: float | None = None
    risk: float | None = None
    risk_reward: float = 0.0
    atr: float | None = None
    volume_ratio: float | None = None
    momentum_5d: float | None = None
    sma20: float | None = None
    sma20_slope: float | None = None
    trend: str | None = None
    growth_pattern: str | None = None
    last_session: str | None = None
    candles: int = 0
    reason: str | None = None

    @property
    def growth_description(self) -> str | None:
        return None if self.growth_pattern is None else GROWTH_DESCRIPTIONS[self.growth_pattern]

    def as_row(self) -> dict[str, str | int | float]:
        """The CSV row, keyed by :data:`SCAN_COLUMNS`; ``None`` becomes an empty cell."""
        row: dict[str, str | int | float] = {}
        for col in SCAN_COLUMNS:
            value = getattr(self, col)
            if col == "conditions":
                value = ";".join(value)
            row[col] = "" if value is None else value
        return row

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> ScanResult:
        """Parse a row written by :meth:`as_row` (values may be strings, as csv.DictReader gives)."""

        def num(col: str) -> float | None:
            v = row.get(col)
            return None if v is None or v == "" else float(v)

        def text(col: str) -> str | None:
            v = row.get(col)
            return None if v is None or v == "" else str(v)

        conditions = row.get("conditions") or ""
        if not isinstance(conditions, str):
            conditions = ";".join(conditions)
        return cls(
            symbol=str(row["symbol"]).strip().upper(),
            score=int(float(row.get("score") or 0)),
            conditions=tuple(c for c in conditions.split(";") if c),
            entry=num("entry"), stop_loss=num("stop_loss"), target_1=num("target_1"),
            target_2=num("target_2"), risk=num("risk"), risk_reward=num("risk_reward") or 0.0,
            atr=num("atr"), volume_ratio=num("volume_ratio"), momentum_5d=num("momentum_5d"),
            sma20=num("sma20"), sma20_slope=num("sma20_slope"), trend=text("trend"),
            growth_pattern=text("growth_pattern"), last_session=text("last_session"),
            candles=int(float(row.get("candles") or 0)), reason=text("reason"),
        )


def scan_sort_key(result: ScanResult) -> tuple[int, float, str]:
    """Score descending, then risk-reward descending, then symbol (so ties are deterministic)."""
    return (-result.score, -(result.risk_reward or 0.0), result.symbol)


@dataclass(frozen=True, slots=True)
class _Columns:
    dates: list[dt.date]
    open: list[float]
    high: list[float]
    low: list[float]
    close: list[float]
    volume: list[float]


def _columns(rows: Sequence[CandleLike]) -> _Columns:
    # Column lists straight from the input: building a Candle per row costs more than the scan.
    kind = type(rows[0])
    if not all(type(r) is kind for r in rows):
        rows, kind = to_candles(rows), Candle
    fields = ("date", "open", "high", "low", "close")
    get: list[list[Any]]
    if kind is Candle:
        candles = cast("Sequence[Candle]", rows)
        get = [[getattr(c, f) for c in candles] for f in (*fields, "volume")]
    else:
        dicts = cast("Sequence[Mapping[str, Any]]", rows)
        get = [[r[f] for r in dicts] for f in fields]
        get.append([r.get("volume") or 0.0 for r in dicts])
    return _Columns([session_date(d) for d in get[0]], *(list(map(float, col)) for col in get[1:]))


def _validate(cols: _Columns) -> str | None:
    for i, (o, h, lo, c, v) in enumerate(zip(cols.open, cols.high, cols.low, cols.close, cols.volume,
                                            strict=True)):
        if not math.isfinite(o + h + lo + c + v) or lo <= 0 or h < lo or v < 0:
            return f"bad candle on {cols.dates[i]}: {(o, h, lo, c, v)}"
    for prev, d in pairwise(cols.dates):
        if d <= prev:
            return f"candles not oldest-first with one per session: {d} after {prev}"
    return None


def _mean(values: Sequence[float]) -> float:
    return math.fsum(values) / len(values)


def _trend(slope_pct: float) -> str:
    if slope_pct > TREND_SLOPE:
        return TREND_BULL
    if slope_pct < -TREND_SLOPE:
        return TREND_BEAR
    return TREND_SIDEWAYS


def _growth(closes: Sequence[float], sma: Sequence[float], atr: Sequence[float]) -> str:
    """``closes``, ``sma`` and ``atr`` cover the window plus the bar before it (41 values)."""
    above_prev = closes[0] > sma[0]
    above = crossings = above_kc = below_kc = 0
    for c, s, a in zip(closes[1:], sma[1:], atr[1:], strict=True):
        is_above = c > s
        above += is_above
        crossings += is_above != above_prev
        above_prev = is_above
        above_kc += c > s + KELTNER_ATR_MULTIPLE * a
        below_kc += c < s - KELTNER_ATR_MULTIPLE * a
    if above_kc >= 10:
        return "strong_momentum"
    if above >= 30 and crossings <= 4:
        return "consistent_trend"
    if above >= 25 and crossings >= 5:
        return "break_and_base"
    if below_kc >= 8:
        return "oversold"
    return "mixed"


def _dec(x: float) -> Decimal:
    return Decimal(repr(x))


def scan_symbol(symbol: str, candles: Iterable[CandleLike], tick_size: float | None = None) -> ScanResult:
    """Score ``symbol`` on its completed daily candles (oldest first). ``tick_size`` is the
    instrument master's; ``None`` or 0 uses the NSE price-band tick for the last close."""
    symbol = symbol.strip().upper()
    rows = candles if isinstance(candles, Sequence) else list(candles)
    n = len(rows)
    if n < MIN_CANDLES:
        last_session = session_date(to_candle(rows[-1]).date).isoformat() if rows else None
        return ScanResult(symbol, 0, last_session=last_session, candles=n,
                          reason=f"insufficient data: {n} candles, need {MIN_CANDLES}")
    cols = _columns(rows)
    last_session = cols.dates[-1].isoformat()
    bad = _validate(cols)
    if bad is not None:
        return ScanResult(symbol, 0, last_session=last_session, candles=n, reason=bad)

    o, h, lo, cl, vol = cols.open, cols.high, cols.low, cols.close, cols.volume
    tr = [h[0] - lo[0]] + [
        max(h[i] - lo[i], abs(h[i] - cl[i - 1]), abs(lo[i] - cl[i - 1])) for i in range(1, n)
    ]
    # Indicators only for the bars the rules look at: the growth window and the bar before it.
    first = n - GROWTH_WINDOW - 1
    sma = [_mean(cl[i - SMA_PERIOD + 1:i + 1]) for i in range(first, n)]
    atr = [_mean(tr[i - ATR_PERIOD + 1:i + 1]) for i in range(first, n)]
    sma_last, atr_last, close = sma[-1], atr[-1], cl[-1]

    swing_highs = [i for i in range(1, n - 1) if h[i] > h[i - 1] and h[i] > h[i + 1]]
    swing_lows = [i for i in range(1, n - 1) if lo[i] < lo[i - 1] and lo[i] < lo[i + 1]]
    last_swing_high = h[swing_highs[-1]] if swing_highs else None
    last_swing_low = lo[swing_lows[-1]] if swing_lows else None

    def body_pct(i: int) -> float:
        rng = h[i] - lo[i]
        return abs(cl[i] - o[i]) / rng * 100 if rng > 0 else 0.0

    avg_volume = _mean(vol[-VOLUME_PERIOD:])
    volume_ratio = vol[-1] / avg_volume if avg_volume > 0 else 0.0
    momentum = (close / cl[-1 - MOMENTUM_DAYS] - 1) * 100
    rng = h[-1] - lo[-1]
    close_position = (close - lo[-1]) / rng if rng > 0 else 0.0

    hits = (
        last_swing_high is not None and close > last_swing_high,
        sum(cl[i] > o[i] for i in range(n - 3, n)) >= 2,
        _mean([body_pct(i) for i in range(n - 3, n)]) > BODY_PERCENT_MIN,
        volume_ratio > VOLUME_RATIO_MIN,
        close > sma_last,
        momentum > MOMENTUM_MIN,
        close_position > CLOSE_POSITION_MIN,
    )
    conditions = tuple(name for name, hit in zip(CONDITIONS, hits, strict=True) if hit)

    ys = sma[-SLOPE_POINTS:]
    x_mean = (SLOPE_POINTS - 1) / 2
    y_mean = _mean(ys)
    slope = math.fsum((x - x_mean) * (y - y_mean) for x, y in enumerate(ys)) / math.fsum(
        (x - x_mean) ** 2 for x in range(SLOPE_POINTS))
    slope_pct = slope / sma_last * 100 if sma_last > 0 else 0.0

    tick = tick_size if tick_size is not None and tick_size > 0 else nse_tick_size(close)
    entry = round_to_tick(close, tick, "nearest")
    stop_raw = close - STOP_ATR_MULTIPLE * atr_last
    if last_swing_low is not None:
        stop_raw = min(stop_raw, last_swing_low - SWING_STOP_ATR_MULTIPLE * atr_last)
    stop = round_to_tick(stop_raw, tick, "floor")

    base = ScanResult(
        symbol=symbol, score=len(conditions), conditions=conditions, entry=entry,
        atr=round(atr_last, 4), volume_ratio=round(volume_ratio, 2), momentum_5d=round(momentum, 2),
        sma20=round(sma_last, 4), sma20_slope=round(slope_pct, 4), trend=_trend(slope_pct),
        growth_pattern=_growth(cl[first:], sma, atr), last_session=last_session, candles=n,
    )
    if atr_last <= 0 or stop <= 0 or stop >= entry:
        return replace(base, reason=f"no valid stop: ATR14 {atr_last:.4f}, stop {stop}")

    risk = _dec(entry) - _dec(stop)
    target_1 = _dec(entry) + TARGET_1_R * risk
    target_2 = _dec(entry) + TARGET_2_R * risk
    resistance = min((h[i] for i in swing_highs if h[i] > entry), default=None)
    reward_to = target_2 if resistance is None else min(_dec(resistance), target_2)
    risk_reward = round(float((reward_to - _dec(entry)) / risk), 2)
    return replace(base, stop_loss=stop, target_1=float(target_1), target_2=float(target_2),
                   risk=float(risk), risk_reward=risk_reward)


def scan_many(candles_by_symbol: Mapping[str, Iterable[CandleLike]],
              tick_sizes: Mapping[str, float] | None = None) -> list[ScanResult]:
    """:func:`scan_symbol` for each symbol, ordered by :func:`scan_sort_key`."""
    ticks = tick_sizes or {}
    results = [scan_symbol(s, c, ticks.get(s)) for s, c in candles_by_symbol.items()]
    return sorted(results, key=scan_sort_key)
