"""However many browsers poll, the broker sees at most one summary per user per interval, and none
for a user whose page nobody has open (issue 23). The real dashboard, the real per-user summary
processes and the paper broker as a server; the broker's audit is the witness: each summary run
reads ``margins("equity")`` exactly once (workers/jobs/summary.py).
"""

from __future__ import annotations

import itertools
import shutil
import tempfile
import threading
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import requests

from kitefleet.clock import IST
from tests.integration.web.server import start_web
from tests.support.broker import RunningBroker, start_broker
from tests.support.fleet import ALL_OFF, fleet_home
from tests.support.homes import write_env

START = datetime(2026, 11, 25, 10, 0, tzinfo=IST)
INTERVAL_S = 5.0
POLL_FOR_S = 13.0
CLIENTS = 6
WATCHED = ("Som", "Sai")
UNWATCHED = "Ram"


def api_key(user: str) -> str:
    return f"key{user.lower()}0001"  # tests/support/homes.py write_env's default


def margin_reads(broker: RunningBroker, user: str) -> list[float]:
    return [float(r["wall_time"]) for r in broker.audit(api_key=api_key(user)) if "/margins" in str(r["path"])]


@pytest.fixture(scope="module")
def polled() -> Iterator[tuple[dict[str, list[float]], int]]:
    """Six clients poll Som's and Sai's user pages for 13 s against a dashboard with a 5 s summary
    interval; returns each user's margins reads (wall times) and the number of page answers."""
    root = Path(tempfile.mkdtemp(prefix="kfthr-"))
    home, clock = fleet_home(root / "h", {u: {} for u in (*WATCHED, UNWATCHED)}, clock_at=START)
    broker = start_broker(home, clock=clock, symbols=["INFY", "SBIN"])
    try:
        for user in (*WATCHED, UNWATCHED):
            write_env(home, user, **{**ALL_OFF, "KITE_ROOT": broker.url})
        before = {u: len(margin_reads(broker, u)) for u in WATCHED}
        web = start_web(home, "--summary-interval", f"{INTERVAL_S:g}", clock=clock)
        answers: list[int] = []
        stop = threading.Event()

        def client(n: int) -> None:
            with requests.Session() as s:
                while not stop.is_set():
                    r = s.get(f"{web.url}/api/user/{WATCHED[n % 2]}", timeout=30)
                    answers.append(r.status_code)
                    stop.wait(0.05)

        threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(CLIENTS)]
        try:
            for t in threads:
                t.start()
            stop.wait(POLL_FOR_S)
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=60)
            web.stop()
        reads = {u: margin_reads(broker, u)[before[u]:] for u in WATCHED}
        reads[UNWATCHED] = margin_reads(broker, UNWATCHED)
        assert answers and set(answers) == {200}, sorted(set(answers))
        yield reads, len(answers)
    finally:
        broker.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.parametrize("user", WATCHED)
def test_several_clients_polling_get_at_most_one_summary_per_user_per_interval(
        polled: tuple[dict[str, list[float]], int], user: str) -> None:
    reads, answers = polled
    times = reads[user]
    assert answers > 50, f"only {answers} page answers: the clients did not really poll"
    # the polling crossed at least one interval boundary, so the throttle let a second one through
    assert len(times) >= 2, f"{user}: {len(times)} summaries in {POLL_FOR_S:g} s"
    assert len(times) <= int(POLL_FOR_S // INTERVAL_S) + 1, f"{user}: {len(times)} summaries in {POLL_FOR_S:g} s"
    gaps = [b - a for a, b in itertools.pairwise(times)]
    # starts are INTERVAL_S apart; a summary process's own start-up time moves its read by < 2 s
    assert min(gaps) >= INTERVAL_S - 2.0, f"{user}: summaries {gaps} s apart with a {INTERVAL_S:g} s interval"


def test_a_user_with_no_open_page_gets_no_summary(polled: tuple[dict[str, Any], int]) -> None:
    reads, _ = polled
    assert reads[UNWATCHED] == [], "the broker saw a summary for a user nobody was looking at"
