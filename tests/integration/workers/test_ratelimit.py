"""The per-user rate limiter with real processes against the paper broker, and on a full disk."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest

from tests.support.broker import RunningBroker, broker_factory, clock_file  # noqa: F401 (fixture)
from tests.support.jobs import MARKET_OPEN, last_json, paper_home, point_users_at, start_job
from workers.ratelimit import RateLimiter


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
