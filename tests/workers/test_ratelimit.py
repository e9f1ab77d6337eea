"""The per-user rate limiter: unit tests on plain data and files, then real processes against the
paper broker with Kite's limits on (zero 429s, close to the allowed rate)."""

from __future__ import annotations

import json
import threading
import time
import uuid
from pathlib import Path

import pytest

from kitefleet import clock
from kitefleet.clock import clock_from_value
from workers.ratelimit import (
    IN_FLIGHT_EXPIRY_S,
    WINDOW_MARGIN_S,
    DailyOrderCapReached,
    RateLimiter,
    Window,
    endpoint_class,
)


def test_endpoint_classes_follow_kite() -> None:
    assert endpoint_class("market.quote.ltp") == "quote"
    assert endpoint_class("market.quote") == "quote"
    assert endpoint_class("market.historical") == "historical"
    assert endpoint_class("order.place") == "orders"
    assert endpoint_class("order.cancel") == "orders"
    assert endpoint_class("orders") == "other"  # the order book is a read
    assert endpoint_class("gtt.place") == "other"
    assert endpoint_class("api.token") == "other"


def test_wait_is_measured_from_the_answer_and_in_flight_slots_block() -> None:
    wait = RateLimiter._wait_for
    one = [Window(1, 1.02)]
    assert wait([], one, 100.0) == 0
    assert wait([["a", 99.5, True]], one, 100.0) == pytest.approx(0.52)
    assert wait([["a", 98.0, True]], one, 100.0) == 0  # left the window
    assert 0 < wait([["a", 99.99, False]], one, 100.0) < 0.05  # in flight: poll until answered
    three = [Window(3, 1.02)]
    slots = [["a", 99.2, True], ["b", 99.6, True], ["c", 99.9, True]]
    assert wait(slots, three, 100.0) == pytest.approx(0.22)
    assert wait(slots[1:], three, 100.0) == 0


def test_demo_entries_spread_over_hours_a_replay_clock_shortens_the_windows(tmp_path: Path) -> None:
    """A 900x demo counted Kite's limits in wall seconds: each quote read cost 15 market minutes and
    a 09:20 entry run sent its last order at 12:18. Under a clock faster than real time the windows
    are market seconds (divided by the speed, the margin kept); at real speed or slower, wall seconds."""
    limiter = RateLimiter(tmp_path)
    clock.set_clock(clock_from_value("2026-03-04T10:00:00+05:30,speed=900"))
    quote, minute = limiter._windows("orders", places_order=True)
    assert quote.seconds == pytest.approx(1 / 900 + WINDOW_MARGIN_S)
    assert minute.seconds == pytest.approx(60 / 900 + WINDOW_MARGIN_S)
    for speed in ("1", "0.5"):
        clock.set_clock(clock_from_value(f"2026-03-04T10:00:00+05:30,speed={speed}"))
        assert limiter._windows("quote", places_order=False)[0].seconds == pytest.approx(1 + WINDOW_MARGIN_S)
    clock.set_clock(None)  # real time: live trading
    assert limiter._windows("quote", places_order=False)[0].seconds == pytest.approx(1 + WINDOW_MARGIN_S)


def test_slots_of_one_class_keep_to_the_window(tmp_path: Path) -> None:
    limiter = RateLimiter(tmp_path)
    stamps: list[float] = []
    started = time.monotonic()
    for _ in range(5):
        with limiter.slot("historical"):
            stamps.append(time.monotonic())
    elapsed = time.monotonic() - started
    assert 1.0 < elapsed < 1.8  # 3, then 2 more after one full window
    for i in range(3, 5):
        assert stamps[i] - stamps[i - 3] >= 1.0


def test_threads_share_the_limit(tmp_path: Path) -> None:
    limiter = RateLimiter(tmp_path, per_second={"quote": 2, "historical": 3, "orders": 10, "other": 10})
    stamps: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(2):
            with limiter.slot("quote"), lock:
                stamps.append(time.monotonic())

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    stamps.sort()
    assert len(stamps) == 4
    assert stamps[2] - stamps[0] >= 1.0 and stamps[3] - stamps[1] >= 1.0


def test_a_dead_process_in_flight_slot_expires(tmp_path: Path) -> None:
    limiter = RateLimiter(tmp_path)
    now = time.time()
    (tmp_path / "quote.json").write_text(json.dumps({"slots": [[uuid.uuid4().hex, now - IN_FLIGHT_EXPIRY_S - 1,
                                                                False]]}))
    started = time.monotonic()
    with limiter.slot("quote"):
        pass
    assert time.monotonic() - started < 0.5


def test_a_corrupt_slot_file_is_not_fatal(tmp_path: Path) -> None:
    (tmp_path / "other.json").write_text("{torn")
    limiter = RateLimiter(tmp_path)
    with limiter.slot("other"):
        pass
    assert json.loads((tmp_path / "other.json").read_text())["slots"][0][2] is True


def test_daily_order_cap_counts_placements_by_trading_day(tmp_path: Path) -> None:
    clock.set_clock(clock_from_value("2026-03-04T10:00:00+05:30,speed=1"))
    limiter = RateLimiter(tmp_path, orders_per_day=2)
    for _ in range(2):
        with limiter.slot("orders", places_order=True):
            pass
    with limiter.slot("orders"):  # a modify or cancel is not a placement
        pass
    with pytest.raises(DailyOrderCapReached), limiter.slot("orders", places_order=True):
        pass
    clock.set_clock(clock_from_value("2026-03-05T10:00:00+05:30,speed=1"))
    with limiter.slot("orders", places_order=True):
        pass


def test_after_the_clock_slows_down_the_next_quote_waits_a_wall_second(tmp_path: Path) -> None:
    """At 900x two quotes go out 1/900 s (plus the margin) apart; once the clock is back at real
    time the next quote waits a wall second from the last one, as the broker then counts (the
    limiter reads the speed on every look, and keeps the slots for the wall-time window)."""
    limiter = RateLimiter(tmp_path)
    clock.set_clock(clock_from_value("2026-03-04T10:00:00+05:30,speed=900"))
    with limiter.slot("quote"):
        pass
    started = time.monotonic()
    with limiter.slot("quote"):
        pass
    assert time.monotonic() - started < 0.5
    clock.set_clock(clock_from_value("2026-03-04T10:00:00+05:30,speed=1"))
    with limiter.slot("quote"):
        pass
    assert time.monotonic() - started >= 1.0
    clock.set_clock(None)


def test_a_cancel_keeps_the_placements_the_per_minute_cap_counts(tmp_path: Path) -> None:
    limiter = RateLimiter(tmp_path, orders_per_minute=2, per_second={"quote": 1, "historical": 3, "orders": 100,
                                                                    "other": 10})
    for _ in range(2):
        with limiter.slot("orders", places_order=True):
            pass
    time.sleep(1.1)  # past the one-second window, inside the minute
    with limiter.slot("orders"):  # a cancel: it must not prune the two placements
        pass
    assert len(json.loads((tmp_path / "orders.json").read_text())["slots"]) == 3
