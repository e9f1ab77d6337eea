"""Kite's rate limits over HTTP, through the real kiteconnect client: a burst gets 429
NetworkException, each route counts in its class, limits are per API key, and the windows count
wall seconds shortened by the clock's speed (market seconds), never the clock's jumps.

The broker runs in this process (the real PaperBroker and HTTP server, in threads) with its rate
limiter reading a manual monotonic clock: the window only moves when a test moves it, so the
outcomes do not depend on how fast the machine answers. The window's edge arithmetic is tested
on the limiter alone in test_server_units.py."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from kiteconnect import KiteConnect
from kiteconnect import exceptions as kex

from kitefleet.clock import IST, clock_from_value, write_clock_file
from kitefleet.home import Home
from paper_broker.app import BrokerConfig, PaperBroker
from paper_broker.ratelimit import PER_SECOND, RateLimiter
from tests.support.broker import clock_file, ensure_calendar, login_user
from tests.support.homes import make_home, write_env

NOW = datetime(2026, 11, 25, 11, 30, tzinfo=IST)
INFY = 408065


class ManualMonotonic:
    """The limiter's wall clock; only ``move`` advances it."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t

    def move(self, seconds: float) -> None:
        self.t += seconds


@dataclass
class Rig:
    broker: PaperBroker
    home: Home
    wall: ManualMonotonic
    clock_path: Path

    def kite(self, user: str) -> KiteConnect:
        """A client logged in by the real flow; the login's own calls count, so it starts on a
        fresh window (an earlier test may have used up this key's "other" class)."""
        self.fresh_window()
        return login_user(self.broker.url, self.home, user)

    def fresh_window(self) -> None:
        """Every earlier request has left its one-second window (the minute caps are not touched
        by these tests: no order is placed)."""
        self.wall.move(1.0)

    def audit(self, api_key: str) -> list[dict[str, Any]]:
        r = requests.get(f"{self.broker.url}/paper/audit", params={"api_key": api_key}, timeout=10)
        r.raise_for_status()
        return r.json()["data"]


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    root = tmp_path_factory.mktemp("ratelimit")
    home = make_home(root / "home")
    write_env(home, "Som")
    write_env(home, "Sai")
    ensure_calendar(home, NOW.date())
    clock_path = root / "clock"
    clock = clock_from_value(clock_file(clock_path, NOW))
    broker = PaperBroker(BrokerConfig(home=home, data_dir=home.paper_dir, port=0, symbols=["INFY"],
                                      rate_limits=True), clock=clock)
    wall = ManualMonotonic()
    broker.limiter = broker.service.limiter = RateLimiter(monotonic=wall, speed=lambda: clock.speed)
    broker.start()
    try:
        yield Rig(broker, home, wall, clock_path)
    finally:
        broker.stop()


def _outcome(call: Callable[[], object]) -> str:
    try:
        call()
        return "ok"
    except kex.NetworkException as exc:
        assert exc.code == 429 and str(exc) == "Too many requests"
        return "429"


def test_quote_burst_gets_429(rig: Rig) -> None:
    kite = rig.kite("Som")
    rig.fresh_window()
    assert [_outcome(lambda: kite.ltp("NSE:INFY")) for _ in range(5)] == ["ok", "429", "429", "429", "429"]
    # ohlc and quote share the quote class.
    assert _outcome(lambda: kite.quote("NSE:INFY")) == "429"
    assert _outcome(lambda: kite.ohlc("NSE:INFY")) == "429"
    rig.wall.move(0.999)
    assert _outcome(lambda: kite.ltp("NSE:INFY")) == "429", "the first ltp is still inside its second"
    rig.wall.move(0.001)
    assert _outcome(lambda: kite.quote("NSE:INFY")) == "ok", "one wall second after the first ltp"


def test_the_window_counts_wall_seconds_not_the_simulated_clock(rig: Rig) -> None:
    kite = rig.kite("Som")
    rig.fresh_window()
    assert _outcome(lambda: kite.ltp("NSE:INFY")) == "ok"
    write_clock_file(rig.clock_path, NOW + timedelta(hours=1), speed=1)
    try:
        assert datetime.fromisoformat(requests.get(f"{rig.broker.url}/paper/health", timeout=10)
                                      .json()["data"]["now"]) >= NOW + timedelta(hours=1)
        assert _outcome(lambda: kite.ltp("NSE:INFY")) == "429", "an hour of simulated time frees no slot"
    finally:
        write_clock_file(rig.clock_path, NOW)


def test_a_clock_faster_than_real_time_shortens_the_window_by_its_speed(rig: Rig) -> None:
    """A 60x replay: one quote per market second is one per sixtieth of a wall second (the demo's
    jobs keep their real-time pace); a jump of that clock still frees nothing."""
    kite = rig.kite("Som")
    write_clock_file(rig.clock_path, NOW, speed=60)
    try:
        rig.fresh_window()
        assert _outcome(lambda: kite.ltp("NSE:INFY")) == "ok"
        assert _outcome(lambda: kite.ltp("NSE:INFY")) == "429", "the same wall instant"
        rig.wall.move(1 / 60 - 0.001)
        assert _outcome(lambda: kite.ltp("NSE:INFY")) == "429", "still inside the first quote's market second"
        rig.wall.move(0.002)
        assert _outcome(lambda: kite.ltp("NSE:INFY")) == "ok", "a sixtieth of a wall second later"
    finally:
        write_clock_file(rig.clock_path, NOW)


@pytest.mark.parametrize(("klass", "call"), [
    ("quote", lambda kite: kite.ltp("NSE:INFY")),
    ("historical", lambda kite: kite.historical_data(INFY, date(2026, 11, 25), date(2026, 11, 25), "minute")),
    ("other", lambda kite: kite.holdings()),
], ids=["quote", "historical", "other"])
def test_each_route_counts_in_its_class(rig: Rig, klass: str, call: Callable[[KiteConnect], object]) -> None:
    kite = rig.kite("Sai")
    rig.fresh_window()
    limit = PER_SECOND[klass]
    assert [_outcome(lambda: call(kite)) for _ in range(limit + 2)] == ["ok"] * limit + ["429"] * 2


def test_limits_are_per_api_key_and_per_class(rig: Rig) -> None:
    som, sai = rig.kite("Som"), rig.kite("Sai")
    rig.fresh_window()
    assert _outcome(lambda: som.ltp("NSE:INFY")) == "ok"
    assert _outcome(lambda: som.ltp("NSE:INFY")) == "429"
    assert _outcome(lambda: sai.ltp("NSE:INFY")) == "ok", "Som's quote does not use up Sai's"
    assert _outcome(lambda: som.profile()) == "ok", "the quote class does not limit other calls"


def test_429_uses_the_envelope_and_is_audited(rig: Rig) -> None:
    kite = rig.kite("Sai")
    rig.fresh_window()
    seen = len(rig.audit("keysai0001"))
    auth = {"Authorization": f"token {kite.api_key}:{kite.access_token}"}
    responses = [requests.get(f"{rig.broker.url}/quote/ltp", params={"i": "NSE:INFY"}, headers=auth, timeout=10)
                 for _ in range(3)]
    assert [r.status_code for r in responses] == [200, 429, 429]
    late = responses[-1]
    assert late.headers["Content-Type"] == "application/json"
    assert late.json() == {"status": "error", "message": "Too many requests", "data": None,
                           "error_type": "NetworkException"}
    assert [r["status"] for r in rig.audit("keysai0001")[seen:]] == [200, 429, 429]
