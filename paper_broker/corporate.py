"""Corporate actions (a scenario's ``actions``: split, bonus, delisting) on the simulated market.

The generated series of a symbol is read as its *adjusted* price history. A split or bonus of
``ratio`` (shares after per share before) on ``ex_date`` makes every price the market traded
before the ex-date ``ratio`` times that series: on the ex-date the price drops by the ratio at
the open, as on the exchange, and ``prev_close(ex_date)`` is already the adjusted close (the base
of the day's circuit band, as NSE sets it).

History is served as Kite serves it: back-adjusted from the ex-date. Every candle served at
``now`` is priced with the multiplier of ``now``'s date, so before the ex-date the whole history
is at the old (unadjusted) level, and from the ex-date on at the new one: a cache of completed
candles taken before the ex-date no longer matches a fresh fetch (workers.marketdata checks that
once a day). Volumes are left as generated.

``AdjustedMarket`` wraps ``kitefleet.sim.market.Market`` with that multiplier (only symbols with a
split or bonus pay for it) and carries the actions (``corporate_actions``) for the order engine,
which applies the account side (``paper_broker.engine``): on the ex-date every active GTT of the
symbol becomes ``disabled`` (``cancelled`` for a delisting), and the holders' new quantity and
average price reach the holdings on the credit day (ex-date + ``credit_sessions`` sessions).
"""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import date, datetime
from typing import Any

from kitefleet import sim
from kitefleet.calendar import NseCalendar
from kitefleet.clock import IST
from kitefleet.sim.scenario import CorporateAction, ScenarioError


def _day(now: datetime) -> date:
    return (now.replace(tzinfo=IST) if now.tzinfo is None else now.astimezone(IST)).date()


class AdjustedMarket:
    """The Market contract with corporate actions applied (see the module docstring)."""

    def __init__(self, market: Any, actions: tuple[CorporateAction, ...], calendar: NseCalendar) -> None:
        self._market = market
        self.corporate_actions = actions
        self._ratios: dict[int, list[tuple[date, float]]] = {}
        for a in actions:
            if not calendar.is_trading_day(a.ex_date):
                raise ScenarioError(f"{a.where}: ex_date {a.ex_date} is not an NSE trading day")
            inst = market.instrument(f"NSE:{a.symbol}")
            if inst is None:
                raise ScenarioError(f"{a.where}: symbol {a.symbol!r} is not in the universe")
            if a.kind != "delist":
                self._ratios.setdefault(int(inst.instrument_token), []).append((a.ex_date, a.ratio))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._market, name)

    def multiplier(self, token: int, day: date) -> float:
        """What the market traded on ``day`` is this many times the adjusted series."""
        return math.prod(r for ex, r in self._ratios.get(token, ()) if ex > day)

    def _scale(self, token: int, price: float, m: float) -> float:
        tick = float(self._market.instrument(token).tick_size)
        return sim.to_price(round(sim.to_ticks(price, tick) * m), tick)

    # --- the views the engine and the routes use ------------------------------------------------
    def ltp(self, token: int, now: datetime) -> float:
        price = self._market.ltp(token, now)
        if token not in self._ratios:
            return price
        return self._scale(token, price, self.multiplier(token, _day(now)))

    def prev_close(self, token: int, day: date) -> float:
        price = self._market.prev_close(token, day)
        if token not in self._ratios:
            return price
        return self._scale(token, price, self.multiplier(token, day))

    def day_ohlcv(self, token: int, now: datetime) -> tuple[float, float, float, float, int]:
        row = self._market.day_ohlcv(token, now)
        if token not in self._ratios:
            return row
        m = self.multiplier(token, _day(now))
        return (*(self._scale(token, p, m) for p in row[:4]), row[4])

    def circuit_limits(self, token: int, day: date) -> tuple[float, float]:
        lower, upper = self._market.circuit_limits(token, day)
        if token not in self._ratios:
            return lower, upper
        m = self.multiplier(token, day)
        return self._scale(token, lower, m), self._scale(token, upper, m)

    def candles(self, token: int, interval: str, start: datetime, end: datetime, now: datetime) -> list[Any]:
        rows = self._market.candles(token, interval, start, end, now)
        if token not in self._ratios:
            return rows
        m = self.multiplier(token, _day(now))  # back-adjusted as of today
        if m == 1:
            return rows
        return [(t, *(self._scale(token, p, m) for p in (o, h, lo, c)), v) for t, o, h, lo, c, v in rows]

    def minutes_between(self, token: int, t0: datetime, t1: datetime) -> list[tuple[datetime, float, float, float]]:
        rows = self._market.minutes_between(token, t0, t1)
        if token not in self._ratios:
            return rows
        out = []
        for start, low, high, close in rows:
            m = self.multiplier(token, _day(start))
            out.append((start, *(self._scale(token, p, m) for p in (low, high, close))))
        return out

    def book(self, token: int, now: datetime) -> sim.Book:
        book = self._market.book(token, now)
        if token not in self._ratios:
            return book
        m = self.multiplier(token, _day(now))
        if m == 1:
            return book
        tk = lambda t: round(t * m)  # noqa: E731
        return replace(book, last=tk(book.last), lower=tk(book.lower), upper=tk(book.upper),
                       bids=tuple(replace(lv, price=tk(lv.price)) for lv in book.bids),
                       asks=tuple(replace(lv, price=tk(lv.price)) for lv in book.asks))

    def minute_bars(self, token: int, t0: datetime, t1: datetime) -> list[sim.Bar]:
        bars = self._market.minute_bars(token, t0, t1)
        if token not in self._ratios:
            return bars
        out = []
        for b in bars:
            m = self.multiplier(token, _day(b.start))
            if m == 1:
                out.append(b)
                continue
            out.append(replace(b, open=round(b.open * m), low=round(b.low * m), high=round(b.high * m),
                               close=round(b.close * m), lower=round(b.lower * m), upper=round(b.upper * m)))
        return out
