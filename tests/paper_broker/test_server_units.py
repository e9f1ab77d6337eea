"""Fast unit tests of the server's pure pieces: rate-limit windows, session expiry, routing,
candle-time parsing and span limits."""

from __future__ import annotations

from datetime import date, datetime

import pytest

from kitefleet.clock import IST
from paper_broker.auth import checksum, session_expiry
from paper_broker.errors import KiteError
from paper_broker.marketdata import SPAN_LIMITS, parse_kite_time
from paper_broker.ratelimit import HISTORICAL, ORDERS, OTHER, QUOTE, RateLimiter
from paper_broker.server import Router, _routes


class FakeMonotonic:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def _admitted(limiter: RateLimiter, key: str, klass: str, n: int, **kw: object) -> int:
    ok = 0
    for _ in range(n):
        try:
            limiter.check(key, klass, **kw)  # type: ignore[arg-type]
            ok += 1
        except KiteError as exc:
            assert (exc.status, exc.error_type, exc.message) == (429, "NetworkException", "Too many requests")
    return ok


@pytest.mark.parametrize(("klass", "limit"), [(QUOTE, 1), (HISTORICAL, 3), (ORDERS, 10), (OTHER, 10)])
def test_per_second_limits(klass: str, limit: int) -> None:
    clock = FakeMonotonic()
    limiter = RateLimiter(monotonic=clock)
    assert _admitted(limiter, "k1", klass, limit + 5) == limit
    assert _admitted(limiter, "k2", klass, 1) == 1, "limits are per API key"


def test_sliding_window_edge() -> None:
    clock = FakeMonotonic()
    limiter = RateLimiter(monotonic=clock)
    limiter.check("k", HISTORICAL)  # t=0
    clock.t += 0.4
    limiter.check("k", HISTORICAL)  # t=0.4
    limiter.check("k", HISTORICAL)  # t=0.4
    clock.t += 0.5  # t=0.9: still 3 in the last second
    assert _admitted(limiter, "k", HISTORICAL, 1) == 0
    clock.t += 0.1  # t=1.0: the first has left the window (a window is (t-1, t])
    assert _admitted(limiter, "k", HISTORICAL, 2) == 1
    clock.t += 0.399  # t=1.399: the two from 0.4 are still inside
    assert _admitted(limiter, "k", HISTORICAL, 1) == 0
    clock.t += 0.001
    assert _admitted(limiter, "k", HISTORICAL, 3) == 2


def test_rejected_requests_do_not_extend_the_block() -> None:
    clock = FakeMonotonic()
    limiter = RateLimiter(monotonic=clock)
    limiter.check("k", QUOTE)
    for _ in range(10):
        clock.t += 0.09
        assert _admitted(limiter, "k", QUOTE, 1) == 0
    clock.t += 0.1
    assert _admitted(limiter, "k", QUOTE, 1) == 1


def test_order_minute_and_day_caps() -> None:
    clock = FakeMonotonic()
    limiter = RateLimiter(monotonic=clock, orders_per_minute=25, orders_per_day=40)
    day = date(2026, 11, 25)
    placed = 0
    for _ in range(6):  # 10/s for 6 s: the minute cap stops it at 25
        placed += _admitted(limiter, "k", ORDERS, 10, places_order=True, day=day)
        clock.t += 1.0
    assert placed == 25
    # Modifications and cancels share the 10/s window but not the order caps.
    assert _admitted(limiter, "k", ORDERS, 10) == 10
    clock.t += 61
    assert _admitted(limiter, "k", ORDERS, 10, places_order=True, day=day) == 10
    clock.t += 1
    assert _admitted(limiter, "k", ORDERS, 10, places_order=True, day=day) == 5  # day cap 40
    clock.t += 61
    assert _admitted(limiter, "k", ORDERS, 1, places_order=True, day=day) == 0
    assert _admitted(limiter, "k", ORDERS, 1, places_order=True, day=date(2026, 11, 26)) == 1


def test_disabled_limiter_admits_everything() -> None:
    limiter = RateLimiter(enabled=False, monotonic=FakeMonotonic())
    assert _admitted(limiter, "k", QUOTE, 100) == 100


@pytest.mark.parametrize(("login", "expiry"), [
    ("2026-11-25T09:15:00", "2026-11-26T06:00:00"),
    ("2026-11-25T05:59:59", "2026-11-25T06:00:00"),
    ("2026-11-25T06:00:00", "2026-11-26T06:00:00"),
    ("2026-11-25T23:59:00", "2026-11-26T06:00:00"),
])
def test_session_expiry_is_next_six_am(login: str, expiry: str) -> None:
    at = datetime.fromisoformat(login).replace(tzinfo=IST)
    assert session_expiry(at) == datetime.fromisoformat(expiry).replace(tzinfo=IST)


def test_checksum_is_sha256_of_concatenation() -> None:
    import hashlib

    assert checksum("k", "rt", "s") == hashlib.sha256(b"krts").hexdigest()


@pytest.mark.parametrize(("method", "path", "handler", "args"), [
    ("GET", "/orders", "orders", {}),
    ("POST", "/orders/regular", "place_order", {"variety": "regular"}),
    ("GET", "/orders/123", "order_history", {"order_id": "123"}),
    ("PUT", "/orders/amo/123", "modify_order", {"variety": "amo", "order_id": "123"}),
    ("GET", "/orders/123/trades", "order_trades", {"order_id": "123"}),
    ("GET", "/instruments/NSE", "instruments", {"exchange": "NSE"}),
    ("GET", "/instruments/historical/408065/5minute", "historical", {"token": "408065", "interval": "5minute"}),
    ("GET", "/quote/ltp", "ltp", {}),
    ("DELETE", "/gtt/triggers/7", "delete_gtt", {"trigger_id": "7"}),
])
def test_routes(method: str, path: str, handler: str, args: dict[str, str]) -> None:
    route, got = Router(_routes()).match(method, path)
    assert (route.handler, got) == (handler, args)


@pytest.mark.parametrize(("method", "path", "status"), [
    ("GET", "/nope", 404), ("GET", "/orders/a/b/c", 404), ("POST", "/user/profile", 405),
    ("DELETE", "/orders/123", 405), ("GET", "/orders/regular/123", 405), ("PATCH", "/quote", 405),
])
def test_route_errors(method: str, path: str, status: int) -> None:
    with pytest.raises(KiteError) as info:
        Router(_routes()).match(method, path)
    assert info.value.status == status and info.value.error_type == "GeneralException"


def test_parse_kite_time_forms() -> None:
    assert parse_kite_time("2026-11-25 10:05:00", "from", end_of_day=False) == datetime(
        2026, 11, 25, 10, 5, tzinfo=IST)
    assert parse_kite_time("2026-11-25", "from", end_of_day=False) == datetime(2026, 11, 25, tzinfo=IST)
    assert parse_kite_time("2026-11-25", "to", end_of_day=True) == datetime(2026, 11, 25, 23, 59, 59, tzinfo=IST)
    for bad in ("", None, "25-11-2026", "2026-13-01"):
        with pytest.raises(KiteError) as info:
            parse_kite_time(bad, "from", end_of_day=False)
        assert info.value.error_type == "InputException"


def test_span_limits_table() -> None:
    assert SPAN_LIMITS == {"minute": 60, "3minute": 100, "5minute": 100, "10minute": 100, "15minute": 200,
                           "30minute": 200, "60minute": 400, "day": 2000}
