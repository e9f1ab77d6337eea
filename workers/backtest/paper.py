"""The paper candle source: the shared simulated market (``kitefleet.sim.market.Market``) read in
process, with the paper broker's own seed and scenario loading, so a backtest replays the very paths
the paper broker would serve, without HTTP."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path

from kitefleet.calendar import NseCalendar
from kitefleet.sim.book import Book
from kitefleet.sim.market import Market
from kitefleet.sim.scenario import ScenarioSet
from workers.strategy.patterns import Candle


class PaperSource:
    name = "paper"

    def __init__(self, calendar: NseCalendar, seed: int, scenario: Path | None,
                 symbols: list[str] | None) -> None:
        self.calendar = calendar
        scenarios = ScenarioSet.load(scenario) if scenario is not None else None
        self.market = Market(calendar, seed=seed, scenarios=scenarios, symbols=symbols)
        wanted = None if symbols is None else set(symbols)
        self._symbols = [i.tradingsymbol for i in self.market.instruments
                         if i.segment != "INDICES" and (wanted is None or i.tradingsymbol in wanted)]
        self._tokens = {s: self.market.instrument(s).instrument_token for s in self._symbols}  # type: ignore[union-attr]

    def symbols(self) -> list[str]:
        return list(self._symbols)

    def tick(self, symbol: str) -> float:
        ins = self.market.instrument(symbol)
        assert ins is not None, symbol
        return float(ins.tick_size)

    def _bounds(self, day: date) -> tuple[datetime, datetime]:
        return self.calendar.session_bounds(day)

    def daily(self, symbol: str, start: date, end: date) -> list[Candle] | None:
        if not self.calendar.covers(start) or not self.calendar.covers(end):
            return None
        t0 = self._bounds(start)[0] if self.calendar.is_trading_day(start) else \
            self._bounds(self.calendar.next_trading_day(start))[0]
        last = end if self.calendar.is_trading_day(end) else self.calendar.previous_trading_day(end)
        t1 = self._bounds(last)[1]
        rows = self.market.candles(self._tokens[symbol], "day", t0, t1, t1 + timedelta(minutes=1))
        return [Candle(t.date() if isinstance(t, datetime) else t, o, h, lo, c, v) for t, o, h, lo, c, v in rows]

    def minutes(self, symbol: str, day: date) -> list[Candle] | None:
        if not self.calendar.is_trading_day(day):
            return None
        t0, t1 = self._bounds(day)
        rows = self.market.candles(self._tokens[symbol], "minute", t0, t1, t1 + timedelta(minutes=1))
        return [Candle(t, o, h, lo, c, v) for t, o, h, lo, c, v in rows]

    def circuit(self, symbol: str, day: date) -> tuple[float, float] | None:
        return self.market.circuit_limits(self._tokens[symbol], day)

    def book(self, symbol: str, day: date, minute: int) -> Book | None:
        t0, _ = self._bounds(day)
        return self.market.book(self._tokens[symbol], t0 + timedelta(minutes=minute, seconds=1))
