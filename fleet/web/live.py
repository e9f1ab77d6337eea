"""Broker figures for the dashboard: the per-user ``summary`` process that ``status`` uses, cached.

Rules (what the broker sees, however many browsers are open):

- a user's summary runs only when a page showing that user asks for it (``want``): the fleet page
  wants every user, a user page wants its user; a closed dashboard runs nothing;
- at most one summary per user per ``interval`` (30 s): the start time of the last run is kept
  under a lock, and a run still going counts as started, so concurrent requests never start a
  second one;
- the run happens in a background thread: a page never waits for the broker; it shows the last
  answer with its age (or "pending").

The answer is kept with only the keys the dashboard shows (no fingerprint; the summary prints no
secret, and session expiry comes from it, so the dashboard never opens session.json).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from fleet import probe
from kitefleet.home import Home

INTERVAL_S = 30.0
MAX_PARALLEL = 4
KEPT_KEYS = ("mode", "session_expires_at", "session_expired", "open_positions", "holdings", "day_pnl", "cash",
             "held", "unprotected", "portfolio", "orders", "charges")


@dataclass
class Live:
    """The last answer for one user: ``data`` (kept keys) or ``error``, and when it was fetched."""

    data: dict[str, Any] | None = None
    error: str | None = None
    fetched_at: float | None = None  # monotonic
    started_at: float | None = None
    running: bool = False
    runs: int = 0
    equity: list[tuple[float, float]] = field(default_factory=list)  # (wall time, cash + holdings value)


Fetch = Callable[[str], tuple[dict[str, Any] | None, str | None]]


def summary_fetch(home: Home, timeout: float = probe.BROKER_TIMEOUT_S) -> Fetch:
    """The real fetch: ``summary --detail`` in a process of the user (fleet.probe)."""

    def fetch(user: str) -> tuple[dict[str, Any] | None, str | None]:
        answer = probe.ask(home, user, "summary", ["--detail"], timeout=timeout)
        return (answer.data, None) if answer.ok else (None, answer.error or "failed")

    return fetch


def _equity(data: dict[str, Any]) -> float | None:
    cash = data.get("cash")
    if not isinstance(cash, int | float):
        return None
    value = 0.0
    for row in data.get("portfolio") or []:
        try:
            qty = float(row.get("quantity") or 0) + float(row.get("t1_quantity") or 0)
            value += qty * float(row.get("last_price") or 0)
        except (TypeError, ValueError, AttributeError):
            continue
    return round(float(cash) + value, 2)


class LiveCache:
    def __init__(self, fetch: Fetch, *, interval: float = INTERVAL_S, max_parallel: int = MAX_PARALLEL,
                 monotonic: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time) -> None:
        self.fetch = fetch
        self.interval = interval
        self.monotonic = monotonic
        self.wall = wall
        self._lock = threading.Lock()
        self._entries: dict[str, Live] = {}
        self._pool = ThreadPoolExecutor(max_workers=max_parallel, thread_name_prefix="summary")

    def get(self, user: str) -> Live:
        with self._lock:
            entry = self._entries.get(user) or Live()
            return Live(entry.data, entry.error, entry.fetched_at, entry.started_at, entry.running, entry.runs,
                        list(entry.equity))

    def age(self, entry: Live) -> float | None:
        return None if entry.fetched_at is None else max(0.0, self.monotonic() - entry.fetched_at)

    def want(self, users: Iterable[str]) -> list[str]:
        """Start a summary for each user whose last one started more than ``interval`` ago (and is
        not still running). Returns the users started now."""
        now = self.monotonic()
        started = []
        with self._lock:
            for user in users:
                entry = self._entries.setdefault(user, Live())
                if entry.running or (entry.started_at is not None and now - entry.started_at < self.interval):
                    continue
                entry.running = True
                entry.started_at = now
                entry.runs += 1
                started.append(user)
        for user in started:
            self._pool.submit(self._run, user)
        return started

    def _run(self, user: str) -> None:
        try:
            data, error = self.fetch(user)
        except Exception as exc:  # the fetch is a subprocess; anything else is a bug shown as text
            data, error = None, f"{type(exc).__name__}: {exc}"
        kept = None if data is None else {k: data.get(k) for k in KEPT_KEYS}
        with self._lock:
            entry = self._entries.setdefault(user, Live())
            entry.running = False
            entry.fetched_at = self.monotonic()
            entry.error = error
            if kept is not None:
                entry.data = kept
                equity = _equity(kept)
                if equity is not None:
                    entry.equity = [*entry.equity[-287:], (self.wall(), equity)]

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
