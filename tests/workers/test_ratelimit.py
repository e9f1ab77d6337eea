"""The per-user rate limiter: unit tests on plain data and files, then real processes against the
paper broker with Kite's limits on (zero 429s, close to the allowed rate)."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest

from kitefleet import clock
from kitefleet.clock import clock_from_value
from tests.support.broker import RunningBroker, broker_factory, clock_file  # noqa: F401 (fixture)
from tests.support.jobs import MARKET_OPEN, last_json, paper_home, point_users_at, start_job
from workers.ratelimit import (
    IN_FLIGHT_EXPIRY_S,
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


def test_one_users_processes_stay_under_kites_limits(tmp_path: Path,
                                                     broker_factory: Callable[..., RunningBroker],  # noqa: F811
                                                     ) -> None:
    home = paper_home(tmp_path / "home")
    value = clock_file(tmp_path / "clock", MARKET_OPEN)
    broker = broker_factory(home, clock=value, symbols=["INFY"], rate_limits=True)
    point_users_at(home, broker.url)
    seconds = 4.0
    # Like the watchdog, the stop update and a status query at once on one API key.
    procs = [start_job(home, "Som", "hammer", "--seconds", str(seconds), "--kinds", kinds,
                       env={"TRADER_CLOCK": value})
             for kinds in ("quote,other", "historical,other", "historical")]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        results.append(last_json(out))
    rows = [r for r in broker.audit() if r["path"] not in ("/connect/login", "/session/token")]
    assert rows and all(r["status"] == 200 for r in rows), [r for r in rows if r["status"] != 200][:5]

    def rate(prefix: str) -> float:
        times = sorted(datetime.fromisoformat(r["time"]).timestamp() for r in rows if r["path"].startswith(prefix))
        # The busiest one-second window must be at Kite's limit, not far under it.
        return max(sum(1 for t in times if s <= t < s + 1.0) for s in times)

    assert rate("/quote") == 1
    assert rate("/instruments/historical") == 3
    total = {k: sum(r["done"][k] for r in results) for k in ("quote", "historical")}
    # Sanity only: how many fit in the overlap depends on the machine's load (broker latency).
    assert total["quote"] >= 2 and total["historical"] >= 6


def test_a_full_disk_does_not_stop_the_rate_limiter_it_counts_in_memory(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Issue 15 item 3: on a full home the watchdog died writing the rate limiter's file. A real
    ENOSPC (a small tmpfs, filled): every request still goes, still limited, one log line."""
    from tests.support.fleet import fill_disk, small_tmpfs
    from workers.ratelimit import PER_SECOND

    per_second = {**PER_SECOND, "quote": 2}
    with small_tmpfs(tmp_path / "disk") as disk:
        limiter = RateLimiter(disk / "ratelimit", per_second=per_second)
        with limiter.slot("quote"):
            pass
        filler = fill_disk(disk)
        started = time.monotonic()
        for _ in range(4):  # at 2 a second after the first: the last one waits until ~2 s
            with limiter.slot("quote"):
                pass
        assert time.monotonic() - started >= 1.0  # still limited, in memory
        assert limiter.write_errors >= 4
        logged = [r for r in caplog.records if "rate limiter: could not write" in r.getMessage()]
        assert len(logged) == 1 and "No space left on device" in logged[0].getMessage()

        fresh = RateLimiter(disk / "fresh", per_second=per_second)  # a new folder on the full disk
        with fresh.slot("quote"):
            pass

        filler.unlink()
        errors = limiter.write_errors
        with limiter.slot("quote"):
            pass
        assert limiter.write_errors == errors
        slots = json.loads((disk / "ratelimit" / "quote.json").read_text())["slots"]
        assert len(slots) >= 2  # the last one and one counted in memory while the disk was full
