"""Kite's rate limits over HTTP: a burst gets 429 NetworkException, the sliding window frees exactly
the slot of the request that left it, and limits are per API key. The windows count wall time."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import date, datetime

import pytest
from kiteconnect import KiteConnect
from kiteconnect import exceptions as kex

from kitefleet.clock import IST
from tests.support.broker import RunningBroker, clock_file, start_broker
from tests.support.homes import make_home, write_env

NOW = datetime(2026, 11, 25, 11, 30, tzinfo=IST)
INFY = 408065


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningBroker]:
    root = tmp_path_factory.mktemp("ratelimit")
    home = make_home(root / "home")
    write_env(home, "Som")
    write_env(home, "Sai")
    # A fast simulated clock: the limits must still count wall seconds.
    b = start_broker(home, clock=clock_file(root / "clock", NOW, speed=60), symbols=["INFY"], rate_limits=True)
    yield b
    assert b.stop() == 0


def _outcome(call: Callable[[], object]) -> str:
    try:
        call()
        return "ok"
    except kex.NetworkException as exc:
        assert exc.code == 429 and str(exc) == "Too many requests"
        return "429"


def _wait_until(moment: float) -> None:
    while time.monotonic() < moment:
        time.sleep(min(0.01, max(0.0, moment - time.monotonic())))


def _fresh_window() -> None:
    """Every earlier request of the test has left its one-second window."""
    _wait_until(time.monotonic() + 1.05)


def test_quote_burst_gets_429(broker: RunningBroker) -> None:
    kite = broker.kite("Som")
    _fresh_window()
    started = time.monotonic()
    outcomes = [_outcome(lambda: kite.ltp("NSE:INFY")) for _ in range(5)]
    if time.monotonic() - started < 0.9:
        assert outcomes == ["ok", "429", "429", "429", "429"]
    # ohlc and quote share the quote class.
    assert _outcome(lambda: kite.quote("NSE:INFY")) in ("429", "ok")


def test_historical_sliding_window_edge(broker: RunningBroker) -> None:
    kite = broker.kite("Som")

    def fetch() -> str:
        return _outcome(lambda: kite.historical_data(INFY, date(2026, 11, 25), date(2026, 11, 25), "minute"))

    _fresh_window()
    sent_first = time.monotonic()
    assert fetch() == "ok"
    first_done = time.monotonic()
    _wait_until(first_done + 0.3)
    assert [fetch(), fetch()] == ["ok", "ok"]
    second_sent = first_done + 0.3
    assert fetch() == "429", "three in the last second"
    if time.monotonic() - sent_first > 0.95:
        pytest.skip("machine too slow to probe the window edge")
    # The first request leaves the window one second after it was admitted: one slot opens,
    # while the other two (admitted 0.3 s later) still fill theirs.
    _wait_until(first_done + 1.0)
    assert fetch() == "ok"
    if time.monotonic() < second_sent + 0.95:
        assert fetch() == "429"
    _wait_until(time.monotonic() + 1.05)
    assert [fetch(), fetch(), fetch()] == ["ok", "ok", "ok"]


def test_limits_are_per_api_key_and_per_class(broker: RunningBroker) -> None:
    som, sai = broker.kite("Som"), broker.kite("Sai")
    _fresh_window()
    assert _outcome(lambda: som.ltp("NSE:INFY")) == "ok"
    assert _outcome(lambda: sai.ltp("NSE:INFY")) == "ok", "Som's quote does not use up Sai's"
    assert _outcome(lambda: som.profile()) == "ok", "the quote class does not limit other calls"
    outcomes = [_outcome(som.holdings) for _ in range(12)]
    assert outcomes.count("ok") <= 10 and outcomes[-1] == "429"


def test_429_uses_the_envelope_and_is_audited(broker: RunningBroker) -> None:
    kite: KiteConnect = broker.kite("Sai")
    _fresh_window()
    seen = len(broker.audit(api_key="keysai0001"))
    auth = {"Authorization": f"token {kite.api_key}:{kite.access_token}"}
    responses = [broker.request("GET", "/quote/ltp", params={"i": "NSE:INFY"}, headers=auth) for _ in range(3)]
    assert responses[0].status_code == 200
    late = responses[-1]
    assert late.status_code == 429 and late.headers["Content-Type"] == "application/json"
    assert late.json() == {"status": "error", "message": "Too many requests", "data": None,
                           "error_type": "NetworkException"}
    statuses = [r["status"] for r in broker.audit(api_key="keysai0001")[seen:]]
    assert statuses[0] == 200 and statuses[-1] == 429
