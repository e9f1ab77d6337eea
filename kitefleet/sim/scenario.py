"""Scenario files: pin a symbol's simulated path on a given day (``paper_broker --scenario FILE``).

On-disk contract (JSON, read once at start, never written by the broker)::

    {"paths": [{"symbol": "INFY", "date": "2026-11-25",
                "waypoints": [["09:15", 1500.0], ["11:00", 1495.0], ["11:20", 1479.0], ["15:29", 1470.0]]}]}

A waypoint ``[HH:MM, price]`` names the one-minute bar that *starts* at HH:MM: that bar closes at
``price`` (rounded to the instrument's tick). So "INFY falls through 1,480 at 11:20" is the bar
11:20-11:21 closing at 1479, and the LTP shows it from 11:21:00 on. Between two waypoints the
minute closes, highs and lows stay within the earlier price and the point a quarter of the way
back from the later one, so the last quarter of the move happens in the waypoint's own minute:
every level in that quarter is crossed exactly at the stated minute. What the market does around
the waypoints (the day's open, the calm path before the first and after the last waypoint, and the
rebasing of the other days) is described in ``kitefleet.sim.market``.

Times must be strictly increasing and inside the day's session; that and the symbol are checked
against the calendar and the universe when the market is built.

A second, optional list pins the market's microstructure for a symbol and a minute range (both
ends inclusive, minutes named by their start as above)::

    {"market": [{"symbol": "INFY", "date": "2026-11-25", "from": "10:00", "to": "11:00",
                 "spread_ticks": 4, "volume": 200, "band_percent": 5}]}

* ``spread_ticks``: the bid-ask spread in ticks (a whole number, at least 1) for every minute.
* ``volume``: the minute volume in shares (a whole number, at least 1): fills take at most 10 % of
  it per minute, so a small volume makes fills partial.
* ``band_percent``: a fixed circuit band (2, 5, 10 or 20 % around the previous close) in place of
  the F&O operating range; the path is held inside it (the band wins over a waypoint).

A third, optional list puts corporate actions on a symbol (``paper_broker.corporate``)::

    {"actions": [{"symbol": "INFY", "ex_date": "2026-11-25", "kind": "split", "ratio": 2},
                 {"symbol": "TCS", "ex_date": "2026-11-26", "kind": "bonus", "ratio": 1.5,
                  "credit_sessions": 2},
                 {"symbol": "SBIN", "ex_date": "2026-11-27", "kind": "delist"}]}

* ``kind``: ``split`` or ``bonus`` (``ratio`` = shares after per share before: a 1:2 split or a
  1:1 bonus is 2, a 1:2 bonus 1.5; it must be greater than 0 and not 1), or ``delist``.
* ``ex_date``: a trading day; ``credit_sessions`` (default 2): the new shares reach the holdings
  that many sessions after the ex-date.

Each market entry needs at least one of the three. A file with neither list entry, a negative spread, a
band outside {2, 5, 10, 20} or an unknown symbol is refused with one line naming the file and the
entry; the paper broker then exits 2 (``ScenarioError`` is a usage error: the ``--scenario``
argument) and does not start.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import date, time
from pathlib import Path

from kitefleet.errors import ConfigError
from kitefleet.exitcodes import ExitCode

FIXED_BAND_PERCENTS = (2, 5, 10, 20)


class ScenarioError(ConfigError):
    """A scenario file that cannot be used; the message names the file and the bad entry.

    A configuration error by kind, but the file is a command-line argument of the broker, so it
    exits as a usage error (2)."""

    exit_code = ExitCode.USAGE


@dataclass(frozen=True)
class PinnedPath:
    symbol: str
    day: date
    waypoints: tuple[tuple[time, float], ...]


@dataclass(frozen=True)
class MarketPin:
    """A symbol's spread, volume and/or fixed band over minutes ``first..last`` (times, inclusive)."""

    symbol: str
    day: date
    first: time
    last: time
    spread_ticks: int | None
    volume: int | None
    band_percent: int | None
    where: str  # "scenario file X: market[i] (SYM)", for messages


@dataclass(frozen=True)
class CorporateAction:
    """A split, bonus or delisting of ``symbol`` from ``ex_date`` (see the module docstring)."""

    symbol: str
    ex_date: date
    kind: str  # split | bonus | delist
    ratio: float  # shares after per share before; 1.0 for a delisting
    credit_sessions: int
    where: str


LISTS = ("paths", "market", "actions")
ACTION_KINDS = ("split", "bonus", "delist")


@dataclass(frozen=True)
class ScenarioSet:
    paths: tuple[PinnedPath, ...] = ()
    source: str = "<scenario>"
    market: tuple[MarketPin, ...] = ()
    actions: tuple[CorporateAction, ...] = ()
    _index: dict[tuple[str, date], PinnedPath] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        for p in self.paths:
            if (p.symbol, p.day) in self._index:
                raise ScenarioError(f"{self.source}: {p.symbol} on {p.day} is pinned twice")
            self._index[(p.symbol, p.day)] = p

    @classmethod
    def load(cls, path: str | Path) -> ScenarioSet:
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ScenarioError(f"scenario file {path}: not found") from None
        except OSError as exc:
            raise ScenarioError(f"scenario file {path}: cannot be read ({exc.strerror})") from None
        except ValueError as exc:
            raise ScenarioError(f"scenario file {path}: not valid JSON ({exc})") from None
        return cls.from_json(data, source=f"scenario file {path}")

    @classmethod
    def from_json(cls, data: object, *, source: str = "<scenario>") -> ScenarioSet:
        if not isinstance(data, dict) or not all(isinstance(data.get(k, []), list) for k in LISTS) \
                or not any(k in data for k in LISTS):
            raise ScenarioError(f'{source}: expected {{"paths": [...]}}, {{"market": [...]}} and/or '
                                '{"actions": [...]} at the top level')
        paths = tuple(_parse_path(entry, i, source) for i, entry in enumerate(data.get("paths", [])))
        market = tuple(_parse_market(entry, i, source) for i, entry in enumerate(data.get("market", [])))
        actions = tuple(_parse_action(entry, i, source) for i, entry in enumerate(data.get("actions", [])))
        return cls(paths, source, market, actions)

    def pinned(self, symbol: str, day: date) -> PinnedPath | None:
        return self._index.get((symbol, day))

    def days_for(self, symbol: str) -> list[date]:
        return sorted(p.day for p in self.paths if p.symbol == symbol)

    def market_pins(self, symbol: str) -> list[MarketPin]:
        return [m for m in self.market if m.symbol == symbol]

    def symbols(self) -> list[tuple[str, str]]:
        """(symbol, where) of every entry, for the universe check."""
        return ([(p.symbol, f"{self.source}: paths ({p.symbol} on {p.day})") for p in self.paths]
                + [(m.symbol, m.where) for m in self.market] + [(a.symbol, a.where) for a in self.actions])


def _symbol(entry: dict[str, object], where: str) -> str:
    symbol = entry.get("symbol")
    if not isinstance(symbol, str) or not symbol.strip():
        raise ScenarioError(f"{where}: symbol missing or not a string")
    symbol = symbol.strip()
    return symbol[4:] if symbol.upper().startswith("NSE:") else symbol


def _hhmm(value: object, where: str) -> time:
    try:
        if not isinstance(value, str) or len(value) != 5:
            raise ValueError
        return time.fromisoformat(value)
    except ValueError:
        raise ScenarioError(f"{where}: time must be HH:MM") from None


def _whole(entry: dict[str, object], key: str, where: str) -> int | None:
    value = entry.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
        raise ScenarioError(f"{where}: {key} {value!r} must be a whole number")
    return int(value)


def _parse_market(entry: object, i: int, source: str) -> MarketPin:
    where = f"{source}: market[{i}]"
    if not isinstance(entry, dict):
        raise ScenarioError(f"{where}: expected an object with symbol, date, from, to and a spread, volume or band")
    symbol = _symbol(entry, where)
    where = f"{source}: market[{i}] ({symbol})"
    try:
        day = date.fromisoformat(str(entry.get("date")))
    except ValueError:
        raise ScenarioError(f"{where}: date {entry.get('date')!r} is not YYYY-MM-DD") from None
    first = _hhmm(entry.get("from"), f"{where}: from {entry.get('from')!r}")
    last = _hhmm(entry.get("to"), f"{where}: to {entry.get('to')!r}")
    if last < first:
        raise ScenarioError(f"{where}: to {entry.get('to')!r} is before from {entry.get('from')!r}")
    spread = _whole(entry, "spread_ticks", where)
    if spread is not None and spread < 1:
        raise ScenarioError(f"{where}: spread_ticks {spread} must be at least 1 (a spread cannot be negative or zero)")
    volume = _whole(entry, "volume", where)
    if volume is not None and volume < 1:
        raise ScenarioError(f"{where}: volume {volume} must be at least 1 share a minute")
    band = _whole(entry, "band_percent", where)
    if band is not None and band not in FIXED_BAND_PERCENTS:
        raise ScenarioError(f"{where}: band_percent {band} must be one of 2, 5, 10, 20")
    if spread is None and volume is None and band is None:
        raise ScenarioError(f"{where}: give at least one of spread_ticks, volume, band_percent")
    return MarketPin(symbol, day, first, last, spread, volume, band, where)


def _parse_action(entry: object, i: int, source: str) -> CorporateAction:
    where = f"{source}: actions[{i}]"
    if not isinstance(entry, dict):
        raise ScenarioError(f"{where}: expected an object with symbol, ex_date, kind and ratio")
    symbol = _symbol(entry, where)
    where = f"{source}: actions[{i}] ({symbol})"
    try:
        ex_date = date.fromisoformat(str(entry.get("ex_date")))
    except ValueError:
        raise ScenarioError(f"{where}: ex_date {entry.get('ex_date')!r} is not YYYY-MM-DD") from None
    kind = entry.get("kind")
    if kind not in ACTION_KINDS:
        raise ScenarioError(f"{where}: kind {kind!r} must be one of {', '.join(ACTION_KINDS)}")
    ratio = 1.0
    if kind != "delist":
        raw = entry.get("ratio")
        if isinstance(raw, bool) or not isinstance(raw, int | float) or not math.isfinite(raw) or raw <= 0:
            raise ScenarioError(f"{where}: ratio {raw!r} must be a number greater than 0 (shares after per "
                                "share before, e.g. 2 for a 1:2 split)")
        if raw == 1:
            raise ScenarioError(f"{where}: ratio 1 changes nothing; give the shares after per share before")
        ratio = float(raw)
    credit = _whole(entry, "credit_sessions", where)
    if credit is not None and credit < 0:
        raise ScenarioError(f"{where}: credit_sessions {credit} must be 0 or more")
    return CorporateAction(symbol, ex_date, str(kind), ratio, 2 if credit is None else credit, where)


def _parse_path(entry: object, i: int, source: str) -> PinnedPath:
    where = f"{source}: paths[{i}]"
    if not isinstance(entry, dict):
        raise ScenarioError(f"{where}: expected an object with symbol, date and waypoints")
    symbol = _symbol(entry, where)
    where = f"{source}: paths[{i}] ({symbol})"
    try:
        day = date.fromisoformat(str(entry.get("date")))
    except ValueError:
        raise ScenarioError(f"{where}: date {entry.get('date')!r} is not YYYY-MM-DD") from None
    raw = entry.get("waypoints")
    if not isinstance(raw, list) or not raw:
        raise ScenarioError(f"{where}: waypoints must be a non-empty list of [\"HH:MM\", price]")
    waypoints: list[tuple[time, float]] = []
    for j, wp in enumerate(raw):
        wwhere = f"{where}: waypoints[{j}] {wp!r}"
        if not isinstance(wp, list | tuple) or len(wp) != 2:
            raise ScenarioError(f"{wwhere}: expected [\"HH:MM\", price]")
        text, price = wp
        try:
            if not isinstance(text, str) or len(text) != 5:
                raise ValueError
            at = time.fromisoformat(text)
        except ValueError:
            raise ScenarioError(f"{wwhere}: time must be HH:MM") from None
        if isinstance(price, bool) or not isinstance(price, int | float) or not math.isfinite(price) \
                or price <= 0:
            raise ScenarioError(f"{wwhere}: price must be a positive number")
        if waypoints and at <= waypoints[-1][0]:
            raise ScenarioError(f"{wwhere}: times must be strictly increasing")
        waypoints.append((at, float(price)))
    return PinnedPath(symbol, day, tuple(waypoints))
