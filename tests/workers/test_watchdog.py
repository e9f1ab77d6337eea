"""workers/watchdog.py on plain data: the ATR trail."""

from __future__ import annotations

from datetime import datetime, timedelta

from kitefleet.clock import IST
from workers.strategy.patterns import Candle
from workers.watchdog import AtrTrail


def _daily(n: int = 25, close: float = 1000.0, rng: float = 20.0) -> list[Candle]:
    start = datetime(2026, 1, 1, tzinfo=IST)
    return [Candle(start + timedelta(days=i), close, close + rng / 2, close - rng / 2, close) for i in range(n)]


def test_atr_trail_never_lowers_its_stop() -> None:
    trail = AtrTrail(_daily())  # ATR 20 = 2 % of 1000: Medium, 1.5 x -> stop = anchor - 30
    stops = []
    for ltp in (1000, 1010, 1005, 1040, 990, 1020, 900, 1041, 1000):
        trail.update(ltp, 0.05)
        stops.append(trail.stop)
    assert stops == sorted(stops)
    assert stops[0] == 970.0 and stops[-1] == 1011.0
    assert trail.anchor == 1041


def test_atr_trail_resumes_from_a_carried_stop() -> None:
    trail = AtrTrail(_daily(), anchor=1100.0, stop=1070.0)
    assert trail.update(1000.0, 0.05) is False  # a lower LTP never moves it
    assert trail.stop == 1070.0
