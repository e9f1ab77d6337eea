"""The simulated NSE market: one deterministic minute path per (seed, symbol, trading day).

Over 400 lines because every view (candles of each interval, LTP, OHLC, volume, the prices fills
see) is cut from the same cached minute bars inside ``Market``; apart, they could disagree.

Every view is cut from the same minute bars, so a candle of any interval, the LTP, the day's
OHLC, the volume and the order engine's fills always agree at every instant.

Time semantics (``now`` is an aware datetime; naive ones are taken as IST):

* Minute bar ``i`` of a session covers ``[open + i min, open + (i+1) min)`` and is *complete*
  once ``now >= open + (i+1) min``. Nothing that is not complete at ``now`` is ever served.
* ``ltp(now)``: before the open of a trading day, the previous trading day's close; during the
  session, the close of the last completed minute (the day's open until the first minute
  completes); after the close, the day's close; on a non-trading day, the last trading day's close.
* ``day_ohlcv(now)``: today's open/high/low/last/volume over the completed minutes. During the
  first minute it is the open four times with volume 0; before the open and on non-trading days it
  is the previous close four times with volume 0. ``last`` always equals ``ltp(now)``.
* ``prev_close(day)``: the last minute close of the last trading day before ``day``.
* ``circuit_limits(day)``: ``prev_close(day)`` -/+ 10 %, rounded inwards to the tick. The F&O
  stocks of NIFTY 50 really have a *dynamic* 10 % operating range that widens in 5 % steps; the
  simulation keeps the initial band fixed for the day and never generates a price outside it
  (a scenario may: its waypoints win).
* Candles start at ``00:00 IST`` (day) or at ``open + j * interval`` (intraday, so 60minute bars
  start 09:15, 10:15, ..., 15:15 and the last one is 15 minutes long, as on Kite). A candle is
  served when its start lies in ``[start, end]`` and at least one of its minutes is complete; the
  candle in progress is built from completed minutes only, so its close equals ``ltp(now)``.

Generation. Prices are integers of ticks (``kitefleet.ticks`` grid), so every price is exact.

1. Per symbol, a calendar-day series from ``EPOCH`` (draws seeded per (seed, token, year), so
   they do not depend on how far the calendar reaches): a Markov chain of regimes (range with
   mean reversion, up-trend, down-trend, volatile) times GARCH(1,1) volatility clustering, a beta
   to the NIFTY 50 index's own series, rare news jumps taken overnight, and weekends/holidays
   folded into the next open's gap. The series is scaled so that it closes at the instrument's
   ``base_price`` on ``ANCHOR``. Each trading day's open and close are clamped into its circuit band.
2. Per trading day, the minute path: a Brownian bridge (U-shaped variance) from the day's open to
   its close, seeded by (seed, token, day ordinal), with wicks for highs/lows and a U-shaped
   volume profile. A day candle is the aggregate of exactly these minutes.

Scenarios (``kitefleet.sim.scenario``). On a pinned day the day opens at the first waypoint's
price; before the first waypoint the path wanders calmly (within 0.3 %) around it; each waypoint
minute closes at its price; between waypoints see ``kitefleet.sim.scenario``; after the last
waypoint the path heads to the day's close (the last waypoint's price if it is the session's last
minute, else the generated close). So that the pinned day looks natural, every other day of the
symbol is shifted multiplicatively: days before the first pinned day so that the generated open
meets the first waypoint, days after the last pinned day so that they chain on the pinned close
(``prev_close(d + 1) == close(d)``), days between two pinned days by a log-linear ramp. A
scenario therefore changes the symbol's whole simulated history; without one nothing changes.

Caches: the daily series per symbol (built once), day summaries (high, low, volume) filled in
batches, an LRU of minute bars per (symbol, day) and a FIFO of books per (symbol, day, minute). Thread-safe (one lock).
"""

from __future__ import annotations

import bisect
import itertools
import math
import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import numpy as np

from kitefleet import sim
from kitefleet.calendar import NseCalendar
from kitefleet.clock import IST
from kitefleet.sim.scenario import MarketPin, PinnedPath, ScenarioError, ScenarioSet
from kitefleet.sim.universe import INDEX_TOKEN, Instrument, nifty50_universe

Candle = tuple[datetime, float, float, float, float, int]
INTERVALS: dict[str, int | None] = {
    "minute": 1, "3minute": 3, "5minute": 5, "10minute": 10, "15minute": 15, "30minute": 30,
    "60minute": 60, "day": None,
}

#: First calendar day of the simulated series; no trading day before it is served.
EPOCH = date(2016, 1, 1)
#: The day whose close equals each instrument's ``base_price``.
ANCHOR = date(2026, 11, 2)

_TAG_PARAMS, _TAG_DAILY, _TAG_MINUTE, _TAG_SPREAD, _TAG_DEPTH = 0x9A7A, 0xDA11, 0x3101, 0x5B4D, 0xD397
_BARS_CACHE = 1024
_BOOK_CACHE = 4096
_SUMMARY_CHUNK = 256
_PRE_WANDER = 0.003  # calm wander around the open before a pinned day's first waypoint

# regimes: range (mean-reverting), up-trend, down-trend, volatile
_REGIME_P = (0.35, 0.30, 0.22, 0.13)
_REGIME_MU = (0.0, 0.0020, -0.0030, 0.0)
_REGIME_VOL = (0.75, 0.9, 1.25, 2.0)
_REGIME_SWITCH = (1 / 20, 1 / 22, 1 / 16, 1 / 8)
_RANGE_PULL = 0.07
_GARCH_A, _GARCH_B = 0.07, 0.90
_JUMP_P, _JUMP_SIZE = 0.02, 0.035
_MAX_DAY_MOVE = 0.09
_INDEX_SIGMA = 0.0085


@dataclass(frozen=True)
class _DayBars:
    open_dt: datetime
    o: np.ndarray
    h: np.ndarray
    lo: np.ndarray
    c: np.ndarray
    v: np.ndarray
    spread: np.ndarray  # ticks, per minute (kitefleet.sim.spread_path)
    offset: np.ndarray
    lower: np.ndarray   # circuit band in force, per minute (ticks)
    upper: np.ndarray


@dataclass
class _Series:
    """One symbol's trading days, in ticks."""

    ins: Instrument
    tick_cents: int
    days: list[date]
    index: dict[date, int]
    opens_at: list[datetime]
    closes_at: list[datetime]
    n_min: np.ndarray        # minutes per session
    o: np.ndarray            # open, ticks
    c: np.ndarray            # close, ticks
    prev0: int               # close before days[0], ticks
    sigma: np.ndarray        # day's log volatility, for the intraday bridge
    vol_target: np.ndarray   # expected day volume
    pins: dict[int, tuple[PinnedPath, list[tuple[int, int]]]]  # k -> (path, [(minute, ticks)])
    tweaks: dict[int, list[tuple[int, int, MarketPin]]]  # k -> [(first minute, last minute, pin)]
    h: np.ndarray            # day summaries, filled lazily
    lo: np.ndarray
    v: np.ndarray
    done: np.ndarray

    def prev_close(self, k: int) -> int:
        return int(self.c[k - 1]) if k > 0 else self.prev0

    def price(self, ticks: int) -> float:
        return ticks * self.tick_cents / 100

    def prices(self, ticks: np.ndarray) -> list[float]:
        return (ticks * self.tick_cents / 100.0).tolist()

    def last_day_before(self, day: date) -> int:
        """Index of the last trading day strictly before ``day`` (-1: none)."""
        return bisect.bisect_left(self.days, day) - 1


def _band(prev: int) -> tuple[int, int]:
    """Circuit band around ``prev`` (ticks): -10 % rounded up, +10 % rounded down."""
    return max(1, -((-prev * 9) // 10)), max(1, (prev * 11) // 10)


def _ist(t: datetime) -> datetime:
    return t.replace(tzinfo=IST) if t.tzinfo is None else t.astimezone(IST)


class Market:
    def __init__(self, calendar: NseCalendar, *, seed: int = 1, scenarios: ScenarioSet | None = None,
                 instruments: list[Instrument] | None = None, symbols: list[str] | None = None) -> None:
        self.calendar = calendar
        self.seed = int(seed)
        self.scenarios = scenarios or ScenarioSet()
        universe = list(instruments) if instruments is not None else nifty50_universe()
        known = {i.tradingsymbol for i in universe}
        if symbols is not None:
            unknown = sorted(set(symbols) - known)
            if unknown:
                raise ValueError(f"symbols not in the universe: {', '.join(unknown)}")
            wanted = set(symbols)
            universe = [i for i in universe if i.tradingsymbol in wanted or i.instrument_token == INDEX_TOKEN]
        self.instruments: list[Instrument] = universe
        self._by_token = {i.instrument_token: i for i in universe}
        self._by_symbol = {i.tradingsymbol: i for i in universe}
        for symbol, where in self.scenarios.symbols():
            if symbol not in known:
                raise ScenarioError(f"{where}: symbol {symbol!r} is not in the universe")
        last = max(calendar.last, ANCHOR + timedelta(days=31))
        self._n_cal = (last - EPOCH).days + 1
        self._lock = threading.RLock()
        self._raw: dict[int, tuple[np.ndarray, ...]] = {}
        self._series_cache: dict[int, _Series] = {}
        self._bars_cache: OrderedDict[tuple[int, int], _DayBars] = OrderedDict()
        self._book_cache: OrderedDict[tuple[int, int, int, int], sim.Book] = OrderedDict()
        # Validate pinned days up front: a bad scenario must fail at start, not at 11:20.
        for path in self.scenarios.paths:
            if path.symbol in self._by_symbol:
                self._pin_knots(path)
        for pin in self.scenarios.market:
            if pin.symbol in self._by_symbol:
                self._pin_minutes(pin)

    # --- lookup ------------------------------------------------------------------------------
    def instrument(self, key: str | int) -> Instrument | None:
        if isinstance(key, bool):
            return None
        if isinstance(key, int):
            return self._by_token.get(key)
        key = key.strip()
        if key.isdigit():
            return self._by_token.get(int(key))
        if ":" in key:
            exchange, _, key = key.partition(":")
            if exchange.strip().upper() != "NSE":
                return None
        return self._by_symbol.get(key.strip())

    # --- public views ------------------------------------------------------------------------
    def ltp(self, token: int, now: datetime) -> float:
        s = self._series(token)
        return s.price(self._ltp_ticks(s, _ist(now)))

    def prev_close(self, token: int, day: date) -> float:
        s = self._series(token)
        k = s.last_day_before(day)
        if k < 0:
            self._check_day(s, day)
            return s.price(s.prev0)
        return s.price(int(s.c[k]))

    def day_ohlcv(self, token: int, now: datetime) -> tuple[float, float, float, float, int]:
        s = self._series(token)
        now = _ist(now)
        k, done = self._progress(s, now)
        if k is None:
            p = s.price(self._ltp_ticks(s, now))
            return p, p, p, p, 0
        if done == 0:
            p = s.price(int(s.o[k]))
            return p, p, p, p, 0
        if done == int(s.n_min[k]):
            self._ensure_summaries(s, k, k)
            return (s.price(int(s.o[k])), s.price(int(s.h[k])), s.price(int(s.lo[k])),
                    s.price(int(s.c[k])), int(s.v[k]))
        bars = self._bars(s, k)
        return (s.price(int(bars.o[0])), s.price(int(bars.h[:done].max())), s.price(int(bars.lo[:done].min())),
                s.price(int(bars.c[done - 1])), int(bars.v[:done].sum()))

    def volume(self, token: int, now: datetime) -> int:
        return self.day_ohlcv(token, now)[4]

    def circuit_limits(self, token: int, day: date) -> tuple[float, float]:
        s = self._series(token)
        k = s.last_day_before(day)
        if k < 0:
            self._check_day(s, day)
        lower, upper = _band(s.prev_close(k + 1))
        return s.price(lower), s.price(upper)

    def candles(self, token: int, interval: str, start: datetime, end: datetime, now: datetime) -> list[Candle]:
        """Candles whose start lies in [start, end], built from minutes completed at ``now``."""
        if interval not in INTERVALS:
            raise ValueError(f"unknown interval {interval!r}; one of {', '.join(INTERVALS)}")
        s = self._series(token)
        start, end, now = _ist(start), _ist(end), _ist(now)
        end = min(end, now)
        if start > end:
            return []
        lo_k = bisect.bisect_left(s.days, start.date())
        hi_k = bisect.bisect_right(s.days, end.date())
        if lo_k >= hi_k:
            return []
        step = INTERVALS[interval]
        if step is None:
            return self._day_candles(s, lo_k, hi_k, start, end, now)
        out: list[Candle] = []
        for k in range(lo_k, hi_k):
            out.extend(self._intraday_candles(s, k, step, start, end, now))
        return out

    def minutes_between(self, token: int, t0: datetime, t1: datetime) -> list[tuple[datetime, float, float, float]]:
        """Completed minutes whose end lies in (t0, t1], across days: (start, low, high, close)."""
        s = self._series(token)
        t0, t1 = _ist(t0), _ist(t1)
        if t1 <= t0:
            return []
        out: list[tuple[datetime, float, float, float]] = []
        for k in range(bisect.bisect_left(s.days, t0.date()), bisect.bisect_right(s.days, t1.date())):
            opening, n = s.opens_at[k], int(s.n_min[k])
            # minute i ends at opening + (i+1) min; keep t0 < end <= t1
            first = max(0, math.floor((t0 - opening).total_seconds() / 60))
            stop = min(n, math.floor((t1 - opening).total_seconds() / 60))
            if stop <= first:
                continue
            bars = self._bars(s, k)
            lows, highs, closes = (s.prices(a[first:stop]) for a in (bars.lo, bars.h, bars.c))
            out.extend(
                (opening + timedelta(minutes=first + j), lows[j], highs[j], closes[j])
                for j in range(stop - first)
            )
        return out

    def book(self, token: int, now: datetime) -> sim.Book:
        """The order book at ``now`` (``kitefleet.sim.book``): around the LTP with the spread, volume
        and band of the minute in progress (outside the session: of the last minute traded)."""
        s = self._series(token)
        now = _ist(now)
        last = self._ltp_ticks(s, now)
        k, done = self._progress(s, now)
        if k is None:
            k = s.last_day_before(now.date())
            if k < 0:
                lower, upper = _band(s.prev0)
                return sim.Book(s.ins.tick_size, last, (), (), lower, upper, 0)
            i = int(s.n_min[k]) - 1
        else:
            i = min(done, int(s.n_min[k]) - 1)
        key = (s.ins.instrument_token, k, i, last)
        cached = self._book_cache.get(key)
        if cached is not None:  # the book only changes from minute to minute: the hot order path
            return cached
        bars = self._bars(s, k)
        lower, upper = int(bars.lower[i]), int(bars.upper[i])
        if not s.ins.tradable:
            return sim.Book(s.ins.tick_size, last, (), (), lower, upper, 0)
        draws = np.random.default_rng([self.seed, s.ins.instrument_token, s.days[k].toordinal(), i,
                                       _TAG_DEPTH]).standard_normal(2 * sim.DEPTH_LEVELS)
        book = sim.book_at(last, int(bars.spread[i]), int(bars.offset[i]), lower, upper, int(bars.v[i]),
                           s.ins.tick_size, draws.tolist())
        with self._lock:
            self._book_cache[key] = book
            if len(self._book_cache) > _BOOK_CACHE:
                self._book_cache.popitem(last=False)
        return book

    def minute_bars(self, token: int, t0: datetime, t1: datetime) -> list[sim.Bar]:
        """Completed minutes whose end lies in (t0, t1], across days, as the fill model sees them."""
        s = self._series(token)
        t0, t1 = _ist(t0), _ist(t1)
        if t1 <= t0:
            return []
        out: list[sim.Bar] = []
        tick = s.ins.tick_size
        for k in range(bisect.bisect_left(s.days, t0.date()), bisect.bisect_right(s.days, t1.date())):
            opening, n = s.opens_at[k], int(s.n_min[k])
            first = max(0, math.floor((t0 - opening).total_seconds() / 60))
            stop = min(n, math.floor((t1 - opening).total_seconds() / 60))
            if stop <= first:
                continue
            b = self._bars(s, k)
            o, lo, h, c, v, spread, offset, lower, upper = (
                a[first:stop].tolist() for a in (b.o, b.lo, b.h, b.c, b.v, b.spread, b.offset, b.lower, b.upper))
            out.extend(sim.Bar(opening + timedelta(minutes=first + j), int(o[j]), int(lo[j]), int(h[j]), int(c[j]),
                               int(v[j]), int(spread[j]), int(offset[j]), int(lower[j]), int(upper[j]), tick)
                       for j in range(stop - first))
        return out

    # --- time helpers --------------------------------------------------------------------------
    def _check_day(self, s: _Series, day: date) -> None:
        if not s.days or day < s.days[0] or day > s.days[-1] + timedelta(days=7):
            first = s.days[0] if s.days else None
            raise ValueError(f"no simulated prices for {day}: the market covers {first}..{self.calendar.last}")

    def _progress(self, s: _Series, now: datetime) -> tuple[int | None, int]:
        """(k, completed minutes) when ``now`` is at or after today's open; (None, 0) otherwise."""
        d = now.date()
        k = s.index.get(d)
        if k is None:
            self._check_day(s, d)
            return None, 0
        opening = s.opens_at[k]
        if now < opening:
            return None, 0
        done = int((now - opening).total_seconds() // 60)
        return k, min(done, int(s.n_min[k]))

    def _ltp_ticks(self, s: _Series, now: datetime) -> int:
        k, done = self._progress(s, now)
        if k is None:
            j = s.last_day_before(now.date())
            return int(s.c[j]) if j >= 0 else s.prev0
        if done == 0:
            return int(s.o[k])
        if done == int(s.n_min[k]):
            return int(s.c[k])
        return int(self._bars(s, k).c[done - 1])

    # --- candles -------------------------------------------------------------------------------
    def _day_candles(self, s: _Series, lo_k: int, hi_k: int, start: datetime, end: datetime,
                     now: datetime) -> list[Candle]:
        ks = [k for k in range(lo_k, hi_k) if start <= datetime.combine(s.days[k], datetime.min.time(), IST) <= end]
        if not ks:
            return []
        out: list[Candle] = []
        last = ks[-1]
        forming: Candle | None = None
        if now < s.closes_at[last]:
            ks.pop()
            o, h, low, c, v = self.day_ohlcv(s.ins.instrument_token, now)
            k_now, done = self._progress(s, now)
            if k_now == last and done > 0:
                forming = (datetime.combine(s.days[last], datetime.min.time(), IST), o, h, low, c, v)
        if ks:
            a, b = ks[0], ks[-1]
            self._ensure_summaries(s, a, b)
            sl = slice(a, b + 1)
            rows = zip(s.prices(s.o[sl]), s.prices(s.h[sl]), s.prices(s.lo[sl]), s.prices(s.c[sl]),
                       s.v[sl].tolist(), strict=True)
            out = [
                (datetime.combine(s.days[k], datetime.min.time(), IST), o, h, low, c, int(v))
                for k, (o, h, low, c, v) in zip(range(a, b + 1), rows, strict=True)
            ]
        if forming is not None:
            out.append(forming)
        return out

    def _intraday_candles(self, s: _Series, k: int, step: int, start: datetime, end: datetime,
                          now: datetime) -> list[Candle]:
        opening, n = s.opens_at[k], int(s.n_min[k])
        done = n if now >= s.closes_at[k] else max(0, int((now - opening).total_seconds() // 60))
        if done <= 0:
            return []
        starts = np.arange(0, done, step)
        t0 = (start - opening).total_seconds() / 60
        t1 = (end - opening).total_seconds() / 60
        keep = (starts >= t0) & (starts <= t1)
        if not keep.any():
            return []
        bars = self._bars(s, k)
        ends = np.minimum(starts + step, done)
        o = bars.o[starts]
        c = bars.c[ends - 1]
        h = np.maximum.reduceat(bars.h[:done], starts)
        low = np.minimum.reduceat(bars.lo[:done], starts)
        v = np.add.reduceat(bars.v[:done], starts)
        sel = np.nonzero(keep)[0]
        cols = [s.prices(a[sel]) for a in (o, h, low, c)]
        vols = v[sel].tolist()
        mins = starts[sel].tolist()
        return [
            (opening + timedelta(minutes=m), oo, hh, ll, cc, int(vv))
            for m, oo, hh, ll, cc, vv in zip(mins, *cols, vols, strict=True)
        ]

    # --- daily series --------------------------------------------------------------------------
    def _series(self, token: int) -> _Series:
        s = self._series_cache.get(token)
        if s is not None:
            return s
        with self._lock:
            s = self._series_cache.get(token)
            if s is None:
                ins = self._by_token.get(int(token))
                if ins is None:
                    raise KeyError(f"unknown instrument token {token}")
                s = self._build_series(ins)
                self._series_cache[ins.instrument_token] = s
            return s

    def _raw_series(self, ins: Instrument) -> tuple[np.ndarray, ...]:
        """Calendar-day series from EPOCH: (log close, overnight gap, log return, day sigma, volume noise)."""
        token = ins.instrument_token
        cached = self._raw.get(token)
        if cached is not None:
            return cached
        market = None
        if token != INDEX_TOKEN and INDEX_TOKEN in self._by_token:
            market = self._raw_series(self._by_token[INDEX_TOKEN])
        prng = np.random.default_rng([self.seed, token, _TAG_PARAMS])
        u = prng.random(4)
        if market is None:
            beta, idio = 0.0, _INDEX_SIGMA
        else:
            beta = 0.6 + 0.6 * u[0]
            total = 0.009 + 0.007 * u[1]
            idio = math.sqrt(max(total**2 - (beta * _INDEX_SIGMA) ** 2, 0.006**2))
        last = EPOCH + timedelta(days=self._n_cal - 1)
        zs, us = [], []
        for year in range(EPOCH.year, last.year + 1):
            rng = np.random.default_rng([self.seed, token, year, _TAG_DAILY])
            days_in_year = (date(year + 1, 1, 1) - date(year, 1, 1)).days
            z = rng.standard_normal((366, 4))[:days_in_year]
            uu = rng.random((366, 3))[:days_in_year]
            lo = (EPOCH - date(year, 1, 1)).days if year == EPOCH.year else 0
            hi = (last - date(year, 1, 1)).days + 1 if year == last.year else days_in_year
            zs.append(z[lo:hi])
            us.append(uu[lo:hi])
        z_all = np.concatenate(zs)
        u_all = np.concatenate(us)
        n = self._n_cal
        z0, z1, z2 = (z_all[:, i].tolist() for i in range(3))
        u0, u1, u2 = (u_all[:, i].tolist() for i in range(3))
        m_r = market[2].tolist() if market is not None else [0.0] * n
        m_gap = market[1].tolist() if market is not None else [0.0] * n
        m_sig = market[3].tolist() if market is not None else [0.0] * n
        weekday0 = EPOCH.weekday()
        logc = [0.0] * n
        gap = [0.0] * n
        ret = [0.0] * n
        sig = [0.0] * n
        regime, level, logp = 0, 0.0, 0.0
        h, zprev = idio * idio, 0.0
        omega = idio * idio * (1 - _GARCH_A - _GARCH_B)
        cum = np.cumsum(_REGIME_P).tolist()
        for t in range(n):
            if (weekday0 + t) % 7 >= 5:
                s = 0.12 * idio
                r = s * z0[t] + beta * m_r[t]
                g = r
            else:
                if u0[t] < _REGIME_SWITCH[regime]:
                    regime = bisect.bisect_right(cum, u1[t] * cum[-1])
                    regime = min(regime, 3)
                    level = logp
                h = omega + _GARCH_A * h * zprev * zprev + _GARCH_B * h
                s = math.sqrt(h) * _REGIME_VOL[regime]
                mu = -_RANGE_PULL * (logp - level) if regime == 0 else _REGIME_MU[regime]
                jump = _JUMP_SIZE * z1[t] if u2[t] < _JUMP_P else 0.0
                r = mu + beta * m_r[t] + s * z0[t] + jump
                r = min(max(r, -_MAX_DAY_MOVE), _MAX_DAY_MOVE)
                g = jump + 0.3 * s * z2[t] + beta * m_gap[t]
                g = min(max(g, -0.06), 0.06)
                zprev = z0[t]
            logp += r
            logc[t], gap[t], ret[t] = logp, g, r
            sig[t] = math.sqrt(s * s + (beta * m_sig[t]) ** 2)
        raw = (np.array(logc), np.array(gap), np.array(ret), np.array(sig), z_all[:, 3].copy(),
               np.array([idio]))
        self._raw[token] = raw
        return raw

    def _build_series(self, ins: Instrument) -> _Series:
        tick_cents = round(ins.tick_size * 100)
        if tick_cents <= 0 or abs(tick_cents - ins.tick_size * 100) > 1e-9:
            raise ValueError(f"{ins.tradingsymbol}: tick size {ins.tick_size} is not a whole number of paise")
        logc, gap, ret, sig, zvol, _ = self._raw_series(ins)
        last = EPOCH + timedelta(days=self._n_cal - 1)
        days = [d for d in self.calendar.trading_days if EPOCH < d <= last]
        t = np.array([(d - EPOCH).days for d in days], dtype=np.int64)
        shift = math.log(ins.base_price / ins.tick_size) - float(logc[(ANCHOR - EPOCH).days])
        log_o = logc[t - 1] + gap[t] + shift
        log_c = logc[t] + shift
        log_prev0 = float(logc[t[0] - 1]) + shift
        index = {d: k for k, d in enumerate(days)}
        opens_at, closes_at, n_min = [], [], []
        for d in days:
            a, b = self.calendar.session_bounds(d)
            opens_at.append(a)
            closes_at.append(b)
            n_min.append(int((b - a).total_seconds() // 60))
        n_arr = np.array(n_min, dtype=np.int64)

        # scenario offsets (log), see the module docstring
        pins: dict[int, tuple[PinnedPath, list[tuple[int, int]]]] = {}
        off = np.zeros(len(days))
        anchors: list[tuple[int, float, float]] = []  # (k, offset in, offset out)
        fixed: dict[int, tuple[int, int]] = {}
        for day in self.scenarios.days_for(ins.tradingsymbol):
            path = self.scenarios.pinned(ins.tradingsymbol, day)
            assert path is not None
            k = index[day]
            knots = self._pin_knots(path)
            first_t, last_t = knots[0][1], knots[-1][1]
            in_off = math.log(first_t) - float(log_o[k])
            close_t = last_t if knots[-1][0] == n_min[k] - 1 else round(math.exp(float(log_c[k]) + in_off))
            out_off = math.log(close_t) - float(log_c[k])
            anchors.append((k, in_off, out_off))
            fixed[k] = (first_t, close_t)
            pins[k] = (path, knots)
        if anchors:
            off[: anchors[0][0]] = anchors[0][1]
            off[anchors[-1][0] + 1:] = anchors[-1][2]
            for (ka, _, out_a), (kb, in_b, _) in itertools.pairwise(anchors):
                if kb > ka + 1:
                    frac = (np.arange(ka + 1, kb) - ka) / (kb - ka)
                    off[ka + 1: kb] = out_a + (in_b - out_a) * frac
            log_prev0 += anchors[0][1]
        tweaks: dict[int, list[tuple[int, int, MarketPin]]] = {}
        for pin in self.scenarios.market_pins(ins.tradingsymbol):
            tweaks.setdefault(index[pin.day], []).append((*self._pin_minutes(pin), pin))
        o_t = np.maximum(np.rint(np.exp(log_o + off)), 1).astype(np.int64)
        c_t = np.maximum(np.rint(np.exp(log_c + off)), 1).astype(np.int64)
        prev0 = max(1, round(math.exp(log_prev0)))
        # Clamp into each day's circuit band (sequential: the band moves with the close).
        o_l, c_l = o_t.tolist(), c_t.tolist()
        prev = prev0
        for k in range(len(days)):
            if k in fixed:
                o_l[k], c_l[k] = fixed[k]
            else:
                lower, upper = _band(prev)
                o_l[k] = min(max(o_l[k], lower), upper)
                c_l[k] = min(max(c_l[k], lower), upper)
            for first, last_minute, pin in tweaks.get(k, ()):
                if pin.band_percent is not None:  # a fixed band holds the open and close too
                    lower, upper = sim.fixed_band(prev, pin.band_percent)
                    if first == 0:
                        o_l[k] = min(max(o_l[k], lower), upper)
                    if last_minute == n_min[k] - 1:
                        c_l[k] = min(max(c_l[k], lower), upper)
            prev = c_l[k]
        if ins.instrument_token == INDEX_TOKEN:
            vol_target = np.zeros(len(days))
        else:
            vrng = np.random.default_rng([self.seed, ins.instrument_token, _TAG_PARAMS, 1])
            # Rs 1,400 cr a day for a typical name; calibrated so a Rs 5 lakh order fills in its first
            # minute at 10 % participation on >= 95 % of ordinary minutes (tests/kitefleet/test_sim.py).
            turnover = 1.4e10 * math.exp(0.3 * float(vrng.standard_normal()))
            base_vol = turnover / ins.base_price
            idio = float(self._raw[ins.instrument_token][5][0])
            move = np.abs(ret[t]) / max(idio, 1e-9)
            vol_target = base_vol * np.exp(0.35 * zvol[t] - 0.06) * (0.55 + 0.45 * np.minimum(move, 5.0))
        k_all = len(days)
        return _Series(
            ins=ins, tick_cents=tick_cents, days=days, index=index, opens_at=opens_at, closes_at=closes_at,
            n_min=n_arr, o=np.array(o_l, dtype=np.int64), c=np.array(c_l, dtype=np.int64), prev0=prev0,
            sigma=sig[t], vol_target=vol_target, pins=pins, tweaks=tweaks,
            h=np.zeros(k_all, dtype=np.int64), lo=np.zeros(k_all, dtype=np.int64),
            v=np.zeros(k_all, dtype=np.int64), done=np.zeros(k_all, dtype=bool),
        )

    def _pin_knots(self, path: PinnedPath) -> list[tuple[int, int]]:
        """Waypoints as (minute index, price in ticks), validated against the calendar."""
        ins = self._by_symbol[path.symbol]
        where = f"{self.scenarios.source}: {path.symbol} on {path.day}"
        if not self.calendar.covers(path.day) or path.day <= EPOCH:
            raise ScenarioError(
                f"{where}: outside the simulated range {max(self.calendar.first, EPOCH)}..{self.calendar.last}"
            )
        if not self.calendar.is_trading_day(path.day):
            raise ScenarioError(f"{where}: not an NSE trading day")
        opening, closing = self.calendar.session_bounds(path.day)
        n = int((closing - opening).total_seconds() // 60)
        tick_cents = round(ins.tick_size * 100)
        knots: list[tuple[int, int]] = []
        for at, price in path.waypoints:
            minute = int((datetime.combine(path.day, at, IST) - opening).total_seconds() // 60)
            if not 0 <= minute < n:
                last = (closing - timedelta(minutes=1)).strftime("%H:%M")
                raise ScenarioError(
                    f"{where}: waypoint {at.strftime('%H:%M')} is outside the session "
                    f"({opening.strftime('%H:%M')}..{last})"
                )
            knots.append((minute, max(1, round(price * 100 / tick_cents))))
        return knots

    def _pin_minutes(self, pin: MarketPin) -> tuple[int, int]:
        """A market pin's minute range (first, last minute index), validated against the calendar."""
        where = f"{pin.where} on {pin.day}"
        if not self.calendar.covers(pin.day) or pin.day <= EPOCH:
            raise ScenarioError(
                f"{where}: outside the simulated range {max(self.calendar.first, EPOCH)}..{self.calendar.last}"
            )
        if not self.calendar.is_trading_day(pin.day):
            raise ScenarioError(f"{where}: not an NSE trading day")
        opening, closing = self.calendar.session_bounds(pin.day)
        n = int((closing - opening).total_seconds() // 60)
        out = []
        for at in (pin.first, pin.last):
            minute = int((datetime.combine(pin.day, at, IST) - opening).total_seconds() // 60)
            if not 0 <= minute < n:
                last = (closing - timedelta(minutes=1)).strftime("%H:%M")
                raise ScenarioError(f"{where}: {at.strftime('%H:%M')} is outside the session "
                                    f"({opening.strftime('%H:%M')}..{last})")
            out.append(minute)
        return out[0], out[1]

    # --- minute bars ---------------------------------------------------------------------------
    def _bars(self, s: _Series, k: int) -> _DayBars:
        key = (s.ins.instrument_token, k)
        with self._lock:
            bars = self._bars_cache.get(key)
            if bars is not None:
                self._bars_cache.move_to_end(key)
                return bars
            if k in s.pins:
                o, h, low, c, v = self._pinned_minutes(s, k)
            else:
                o, h, low, c, v = (a[0] for a in self._gen_minutes(s, [k]))
            bars = self._microstructure(s, k, o, h, low, c, v)
            o, h, low, v = bars.o, bars.h, bars.lo, bars.v
            self._bars_cache[key] = bars
            if len(self._bars_cache) > _BARS_CACHE:
                self._bars_cache.popitem(last=False)
            if not s.done[k]:
                s.h[k], s.lo[k], s.v[k] = int(h.max()), int(low.min()), int(v.sum())
                s.done[k] = True
            return bars

    def _ensure_summaries(self, s: _Series, a: int, b: int) -> None:
        if s.done[a: b + 1].all():
            return
        with self._lock:
            missing = [k for k in range(a, b + 1) if not s.done[k]]
            by_len: dict[int, list[int]] = {}
            for k in missing:
                if k in s.pins or k in s.tweaks:
                    self._bars(s, k)
                else:
                    by_len.setdefault(int(s.n_min[k]), []).append(k)
            for ks in by_len.values():
                for i in range(0, len(ks), _SUMMARY_CHUNK):
                    chunk = ks[i: i + _SUMMARY_CHUNK]
                    _, h, low, _, v = self._gen_minutes(s, chunk)
                    idx = np.array(chunk)
                    s.h[idx] = h.max(axis=1)
                    s.lo[idx] = low.min(axis=1)
                    s.v[idx] = v.sum(axis=1)
                    s.done[idx] = True

    def _microstructure(self, s: _Series, k: int, o: np.ndarray, h: np.ndarray, low: np.ndarray,
                        c: np.ndarray, v: np.ndarray) -> _DayBars:
        """A day's bars with the scenario's market pins applied, plus spread, offset and band."""
        n = len(c)
        prev = s.prev_close(k)
        pinned_spread = np.zeros(n, dtype=np.int64)
        fixed: list[tuple[int, int, int]] = []
        for first, last, pin in s.tweaks.get(k, ()):
            rows = slice(first, last + 1)
            if pin.volume is not None:
                v = v.copy()
                v[rows] = pin.volume
            if pin.spread_ticks is not None:
                pinned_spread[rows] = pin.spread_ticks
            if pin.band_percent is not None:
                fixed.append((first, last, pin.band_percent))
        for first, last, percent in fixed:
            lo_b, hi_b = sim.fixed_band(prev, percent)
            rows = slice(first, last + 1)
            o, h, low, c = (a.copy() for a in (o, h, low, c))
            for a in (o, h, low, c):
                a[rows] = np.clip(a[rows], lo_b, hi_b)
        lower, upper = sim.dynamic_band(prev, c)
        for first, last, percent in fixed:
            lower[first: last + 1], upper[first: last + 1] = sim.fixed_band(prev, percent)
        draws = np.random.default_rng([self.seed, s.ins.instrument_token, s.days[k].toordinal(),
                                       _TAG_SPREAD]).random((2, n))
        spread, offset = sim.spread_path(draws[0], draws[1], h, low, c, pinned_spread)
        return _DayBars(s.opens_at[k], o, h, low, c, v, spread, offset, lower, upper)

    def _minute_noise(self, s: _Series, k: int, n: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, s.ins.instrument_token, s.days[k].toordinal(), _TAG_MINUTE])
        return rng.standard_normal((4, n))

    def _gen_minutes(self, s: _Series, ks: list[int]) -> tuple[np.ndarray, ...]:
        """Minute bars (ticks) of unpinned days ``ks`` (all of one session length), vectorised.
        Returns open, high, low, close, volume, each of shape (len(ks), n)."""
        n = int(s.n_min[ks[0]])
        z = np.stack([self._minute_noise(s, k, n) for k in ks])
        idx = np.array(ks)
        x = (np.arange(n) + 0.5) / n
        var = 0.6 + 1.6 * (2 * x - 1) ** 2
        var /= var.sum()
        cumv = np.cumsum(var)
        sd = np.sqrt(var)
        sig = s.sigma[idx][:, None]
        walk = np.cumsum(z[:, 0, :] * sd * sig, axis=1)
        bridge = walk - cumv * walk[:, -1:]
        o_day = s.o[idx]
        c_day = s.c[idx]
        log_o = np.log(o_day.astype(float))[:, None]
        log_c = np.log(c_day.astype(float))[:, None]
        path = np.exp(log_o + cumv * (log_c - log_o) + bridge)
        prev = np.array([s.prev_close(k) for k in ks], dtype=np.int64)
        lower = np.maximum(1, -((-prev * 9) // 10))[:, None]
        upper = np.maximum(1, (prev * 11) // 10)[:, None]
        close = np.clip(np.rint(path).astype(np.int64), lower, upper)
        close[:, -1] = c_day
        opens = np.empty_like(close)
        opens[:, 0] = o_day
        opens[:, 1:] = close[:, :-1]
        wick = 0.45 * sd * sig * close
        high = np.minimum(np.maximum(opens, close) + np.floor(np.abs(z[:, 1, :]) * wick).astype(np.int64), upper)
        low = np.maximum(np.minimum(opens, close) - np.floor(np.abs(z[:, 2, :]) * wick).astype(np.int64), lower)
        vol = self._minute_volume(s.vol_target[idx], z[:, 3, :], z[:, 0, :], n)
        return opens, high, low, close, vol

    @staticmethod
    def _minute_volume(target: np.ndarray, zv: np.ndarray, zmove: np.ndarray, n: int) -> np.ndarray:
        i = np.arange(n)
        prof = 0.75 + 2.0 * np.exp(-i / 20) + 1.3 * np.exp(-(n - 1 - i) / 25)
        prof /= prof.sum()
        noise = np.exp(0.4 * zv - 0.08) * (0.75 + 0.3 * np.abs(zmove))
        return np.floor(target[:, None] * prof * noise).astype(np.int64)

    def _pinned_minutes(self, s: _Series, k: int) -> tuple[np.ndarray, ...]:
        """Minute bars of a pinned day (see kitefleet.sim.scenario for the guarantees)."""
        _, knots = s.pins[k]
        n = int(s.n_min[k])
        z = self._minute_noise(s, k, n)
        o_day, c_day = int(s.o[k]), int(s.c[k])
        if knots[-1][0] != n - 1:
            knots = [*knots, (n - 1, c_day)]
        close = np.zeros(n, dtype=np.int64)
        seg_lo = np.zeros(n, dtype=np.int64)
        seg_hi = np.zeros(n, dtype=np.int64)
        # before the first waypoint: a calm wander around the open (which is the first price)
        m0, p0 = knots[0]
        if m0 > 0:
            width = max(1.0, _PRE_WANDER * o_day)
            wander = np.cumsum(z[0, :m0]) * (width / 3) / math.sqrt(max(m0, 1))
            a, b = math.ceil(o_day - width), math.floor(o_day + width)
            close[:m0] = np.clip(np.rint(o_day + wander), a, b)
            seg_lo[:m0], seg_hi[:m0] = a, b
        close[m0] = p0
        for (ma, pa), (mb, pb) in itertools.pairwise(knots):
            q = pb + 0.25 * (pa - pb)
            a, b = (pa, math.floor(q)) if q >= pa else (math.ceil(q), pa)
            inner = mb - ma - 1
            if inner > 0:
                frac = np.arange(1, inner + 1) / inner
                noise = z[0, ma + 1: mb] * 0.1 * abs(q - pa)
                close[ma + 1: mb] = np.clip(np.rint(pa + (q - pa) * frac + noise), a, b)
                seg_lo[ma + 1: mb], seg_hi[ma + 1: mb] = a, b
            close[mb] = pb
        opens = np.empty_like(close)
        opens[0] = o_day
        opens[1:] = close[:-1]
        body_hi, body_lo = np.maximum(opens, close), np.minimum(opens, close)
        wick = 0.3 * np.abs(np.diff(np.concatenate([[o_day], close]))) + 0.0004 * close
        high = np.maximum(body_hi, np.minimum(body_hi + np.floor(np.abs(z[1]) * wick).astype(np.int64), seg_hi))
        low = np.minimum(body_lo, np.maximum(body_lo - np.floor(np.abs(z[2]) * wick).astype(np.int64), seg_lo))
        waypoint_minutes = [m for m, _ in knots]
        high[waypoint_minutes] = body_hi[waypoint_minutes]
        low[waypoint_minutes] = np.maximum(1, body_lo[waypoint_minutes])
        low = np.maximum(low, 1)
        vol = self._minute_volume(s.vol_target[[k]], z[3][None, :], z[0][None, :], n)[0]
        return opens, high, low, close, vol
