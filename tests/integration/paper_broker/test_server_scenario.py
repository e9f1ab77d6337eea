"""A scenario file makes INFY fall through 1,480 at exactly the stated minute, seen through the
real client's ltp and historical calls as the clock file jumps across that minute."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from kitefleet.clock import IST, write_clock_file
from tests.support.broker import RunningBroker, broker_factory, clock_file  # noqa: F401 (fixture)
from tests.support.homes import make_home, write_env

DAY = "2026-11-25"
FROZEN = 1e-6
LEVEL = 1480.0


def _at(hhmmss: str) -> datetime:
    return datetime.fromisoformat(f"{DAY}T{hhmmss}").replace(tzinfo=IST)


def _jump(broker: RunningBroker, clock: Path, moment: datetime) -> None:
    write_clock_file(clock, moment, speed=FROZEN)
    deadline = time.monotonic() + 10
    while abs((broker.now() - moment).total_seconds()) >= 1:
        assert time.monotonic() < deadline, "broker never saw the clock jump"
        time.sleep(0.02)


def test_scenario_price_crosses_at_the_stated_minute(tmp_path: Path,
                                                     broker_factory: Callable[..., RunningBroker]) -> None:  # noqa: F811
    scenario = tmp_path / "scenario.json"
    scenario.write_text(json.dumps({"paths": [{"symbol": "INFY", "date": DAY, "waypoints": [
        ["09:15", 1500.0], ["11:00", 1495.0], ["11:20", 1479.0], ["15:29", 1470.0]]}]}), encoding="utf-8")
    home = make_home(tmp_path / "home")
    write_env(home, "Som")
    clock = tmp_path / "clock"
    broker = broker_factory(home, clock=clock_file(clock, _at("11:20:59"), speed=FROZEN), scenario=scenario,
                            symbols=["INFY", "TCS"])
    kite = broker.kite("Som")

    assert kite.ltp("NSE:INFY")["NSE:INFY"]["last_price"] > LEVEL  # the 11:20 bar is not complete yet
    before = kite.historical_data(408065, f"{DAY} 09:15:00", f"{DAY} 11:20:59", "minute")
    assert before[-1]["date"].strftime("%H:%M") == "11:19"
    assert min(c["low"] for c in before) > LEVEL

    _jump(broker, clock, _at("11:21:00"))
    assert kite.ltp("NSE:INFY")["NSE:INFY"]["last_price"] == 1479.0
    after = kite.historical_data(408065, f"{DAY} 11:19:00", f"{DAY} 11:30:00", "minute")
    assert [c["date"].strftime("%H:%M") for c in after] == ["11:19", "11:20"]
    assert after[-1]["close"] == 1479.0 and after[-1]["low"] <= LEVEL
    quote = kite.quote("NSE:INFY")["NSE:INFY"]
    assert quote["last_price"] == 1479.0 and quote["ohlc"]["open"] == 1500.0
