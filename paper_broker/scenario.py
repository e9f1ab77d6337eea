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
rebasing of the other days) is described in ``paper_broker.market``.

Times must be strictly increasing and inside the day's session; that and the symbol are checked
against the calendar and the universe when the market is built.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import date, time
from pathlib import Path

from kitefleet.errors import ConfigError


class ScenarioError(ConfigError):
    """A scenario file that cannot be used; the message names the file and the bad entry."""


@dataclass(frozen=True)
class PinnedPath:
    symbol: str
    day: date
    waypoints: tuple[tuple[time, float], ...]


@dataclass(frozen=True)
class ScenarioSet:
    paths: tuple[PinnedPath, ...] = ()
    source: str = "<scenario>"
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
        if not isinstance(data, dict) or not isinstance(data.get("paths"), list):
            raise ScenarioError(f'{source}: expected {{"paths": [...]}} at the top level')
        return cls(tuple(_parse_path(entry, i, source) for i, entry in enumerate(data["paths"])), source)

    def pinned(self, symbol: str, day: date) -> PinnedPath | None:
        return self._index.get((symbol, day))

    def days_for(self, symbol: str) -> list[date]:
        return sorted(p.day for p in self.paths if p.symbol == symbol)


def _parse_path(entry: object, i: int, source: str) -> PinnedPath:
    where = f"{source}: paths[{i}]"
    if not isinstance(entry, dict):
        raise ScenarioError(f"{where}: expected an object with symbol, date and waypoints")
    symbol = entry.get("symbol")
    if not isinstance(symbol, str) or not symbol.strip():
        raise ScenarioError(f"{where}: symbol missing or not a string")
    symbol = symbol.strip()
    if symbol.upper().startswith("NSE:"):
        symbol = symbol[4:]
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
