"""Issue 16 through the unmodified kiteconnect client: fills at the touch, partial fills in a thin
minute, and a SELL queued at a fixed lower band. The real broker in a subprocess, a clock file the
test jumps, and a scenario pinning INFY on Wednesday 2026-11-25:

* path: flat at 1500 until 12:00, down to 1400 at 12:30 (below the band: held at the lower band),
  flat there until 13:30, back up to 1450 at 14:00;
* market: a 2-tick spread all day (so the ask stays put on the flat stretch), a fixed 5 % band all
  day (a stock outside F&O), and a thin 200 shares a minute from 10:00 to 10:59."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest
from kiteconnect import KiteConnect

from kitefleet.clock import IST, write_clock_file
from kitefleet.exitcodes import ExitCode
from tests.support.broker import RunningBroker, clock_file, ensure_calendar, start_broker
from tests.support.homes import PROJECT_ROOT, VENV_PYTHON, child_env, make_home, write_env

FROZEN = 1e-6
WED = date(2026, 11, 25)
TICK = 0.1  # INFY's tick in the simulated universe
SCENARIO = {
    "paths": [{"symbol": "INFY", "date": WED.isoformat(), "waypoints": [
        ["09:15", 1500.0], ["12:00", 1500.0], ["12:30", 1400.0], ["13:30", 1400.0], ["14:00", 1450.0],
        ["15:29", 1450.0]]}],
    "market": [
        {"symbol": "INFY", "date": WED.isoformat(), "from": "09:15", "to": "15:29", "spread_ticks": 2,
         "band_percent": 5},
        {"symbol": "INFY", "date": WED.isoformat(), "from": "10:00", "to": "10:59", "volume": 200},
    ],
}


def at(hhmm: str) -> datetime:
    return datetime.fromisoformat(f"{WED.isoformat()}T{hhmm}").replace(tzinfo=IST)


class Desk:
    def __init__(self, root: Path) -> None:
        self.home = make_home(root / "home")
        write_env(self.home, "Som")
        self.clock_path = root / "clock"
        scenario = root / "scenario.json"
        scenario.write_text(json.dumps(SCENARIO), encoding="utf-8")
        self.broker: RunningBroker = start_broker(self.home, clock=clock_file(self.clock_path, at("09:40"), FROZEN),
                                                  scenario=scenario, symbols=["INFY"])
        self.kite: KiteConnect = self.broker.kite("Som")

    def jump(self, to: datetime) -> None:
        write_clock_file(self.clock_path, to, FROZEN)
        deadline = time.monotonic() + 10
        while self.broker.now() < to:
            assert time.monotonic() < deadline, "the broker did not see the clock jump"
            time.sleep(0.01)

    def quote(self) -> dict[str, Any]:
        return self.kite.quote("NSE:INFY")["NSE:INFY"]

    def place(self, **kw: Any) -> str:
        args: dict[str, Any] = {"exchange": "NSE", "tradingsymbol": "INFY", "transaction_type": "BUY",
                                "quantity": 10, "product": "CNC", "order_type": "LIMIT"}
        args.update(kw)
        return str(self.kite.place_order("regular", **args))

    def order(self, order_id: str) -> dict[str, Any]:
        return next(o for o in self.kite.orders() if o["order_id"] == order_id)


@pytest.fixture
def desk(tmp_path: Path) -> Iterator[Desk]:
    d = Desk(tmp_path)
    yield d
    assert d.broker.stop() == 0


def test_touch_partial_fills_and_a_sell_queued_at_the_lower_band(desk: Desk) -> None:
    q = desk.quote()
    bid, ask = q["depth"]["buy"][0]["price"], q["depth"]["sell"][0]["price"]
    assert bid < q["last_price"] < ask and round(ask - bid, 2) == 2 * TICK
    assert len(q["depth"]["buy"]) == len(q["depth"]["sell"]) == 5
    assert all(lv["quantity"] > 0 and lv["orders"] > 0 for lv in q["depth"]["buy"] + q["depth"]["sell"])

    # A BUY LIMIT one tick under the ask (here: at the LTP) rests while the ask stays.
    under = desk.place(price=round(ask - TICK, 2))
    desk.jump(at("09:50"))
    assert desk.quote()["depth"]["sell"][0]["price"] == ask
    assert desk.order(under)["status"] == "OPEN"
    # At the ask it fills at once, at the ask.
    touch = desk.place(price=ask)
    assert (desk.order(touch)["status"], desk.order(touch)["average_price"]) == ("COMPLETE", ask)
    desk.kite.cancel_order("regular", under)

    # Thin minutes (200 shares): at most 20 a minute (and on arrival no more than the ask level
    # holds), one trade per part; a cancel keeps the filled part.
    desk.jump(at("10:05:10"))
    q = desk.quote()
    assert q["depth"]["sell"][0]["price"] == ask
    first = min(20, q["depth"]["sell"][0]["quantity"])
    thin = desk.place(price=ask, quantity=50)
    o = desk.order(thin)
    assert (o["status"], o["filled_quantity"], o["pending_quantity"]) == ("OPEN", first, 50 - first)
    desk.jump(at("10:06:30"))  # the 10:05 minute's share was taken on arrival
    assert desk.order(thin)["filled_quantity"] == first
    desk.jump(at("10:07:30"))
    assert desk.order(thin)["filled_quantity"] == first + 20
    desk.kite.cancel_order("regular", thin)
    o = desk.order(thin)
    assert (o["status"], o["filled_quantity"], o["cancelled_quantity"], o["average_price"]) == (
        "CANCELLED", first + 20, 30 - first, ask)
    assert [t["quantity"] for t in desk.kite.order_trades(thin)] == [first, 20]
    position = next(p for p in desk.kite.positions()["net"] if p["tradingsymbol"] == "INFY")
    assert position["quantity"] == 10 + first + 20

    # At the fixed lower band: sellers and no buyers. A SELL at the band queues...
    desk.jump(at("12:45"))
    q = desk.quote()
    lower = q["lower_circuit_limit"]
    assert q["last_price"] == lower and q["depth"]["buy"][0] == {"price": 0.0, "quantity": 0, "orders": 0}
    assert q["depth"]["sell"][0]["price"] == lower
    assert lower == pytest.approx(q["ohlc"]["close"] * 0.95, abs=TICK)
    sell = desk.place(transaction_type="SELL", price=lower)
    desk.jump(at("13:25"))
    assert desk.order(sell)["status"] == "OPEN"
    # ... and fills when the path leaves the band.
    desk.jump(at("14:05"))
    o = desk.order(sell)
    assert (o["status"], o["average_price"]) == ("COMPLETE", lower)


def test_a_bad_scenario_is_one_line_and_exit_2_and_the_broker_does_not_start(tmp_path: Path) -> None:
    home = make_home(tmp_path / "home")
    ensure_calendar(home, WED)
    bad = tmp_path / "bad-scenario.json"
    bad.write_text(json.dumps({"market": [{"symbol": "INFY", "date": WED.isoformat(), "from": "10:00",
                                           "to": "11:00", "spread_ticks": -1}]}), encoding="utf-8")
    env = child_env(home, TRADER_CLOCK=clock_file(tmp_path / "clock", at("10:00"), FROZEN),
                    PYTHONPATH=str(PROJECT_ROOT))
    done = subprocess.run([str(VENV_PYTHON), "-m", "paper_broker", "--home", str(home.root), "--port", "0",
                           "--symbols", "INFY", "--scenario", str(bad)],
                          cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == ExitCode.USAGE, done.stderr
    assert done.stderr.splitlines() == [
        f"paper broker: scenario file {bad}: market[0] (INFY): spread_ticks -1 must be at least 1 "
        "(a spread cannot be negative or zero)"]
    assert not (home.paper_dir / "broker.json").exists()
