"""Kite's rate limits, shared by all of one user's processes (they share one API key).

Kite counts requests per API key and endpoint class in wall seconds (kite-api.md section 4):

    quote       quote, ohlc, ltp                    1 / s
    historical  historical_data                     3 / s
    orders      place / modify / cancel order      10 / s; placements also 400 / min, 5,000 / day
    other       every other call, reads combined   10 / s

On-disk contract (``data/<User>/ratelimit/``, written by every worker process of that user):

    <class>.lock    filelock.FileLock guarding the class's slot file (never deleted)
    <class>.json    {"slots": [[id, wall_time, done], ...], "day": "YYYY-MM-DD", "day_count": N}
                    a slot is one request of the last window; written under the lock with
                    temp file + os.replace (a killed writer leaves the old file)

Why it never earns a 429 however requests are delayed in flight: a slot is stamped when the
request leaves (``done`` false) and re-stamped with the time its answer arrived (``done`` true).
The broker counted the request at some instant in between, so the next request that needs the
slot waits until ``answer time + window``; a slot still in flight blocks its place outright
(until IN_FLIGHT_EXPIRY_S, for a process killed mid-request). The window is the broker's plus
WINDOW_MARGIN_S for clock granularity. The day count uses the shared trading clock's date, as
Kite's (and the paper broker's) "orders of the day" does.

Under a replay clock faster than real time (``make demo``, a clock file with ``speed`` > 1) the
windows are Kite's seconds of market time: a wall second holds ``speed`` market seconds, so each
window is divided by the speed (the margin is not). Counted in wall seconds, one quote read cost a
900x demo 15 market minutes, so a 09:20 entry run sent its last order after noon and the watchdog
polled every quarter hour instead of every WATCHDOG_POLL_SECONDS. A clock at real speed (live
trading always) or slower keeps the wall windows; the paper broker counts the same way
(paper_broker.ratelimit).

A slot file that cannot be written (a full disk, a read-only home) or a lock file that cannot be
opened does not stop the requests: the limiter keeps its slots in memory (merged into what the
file says while the file lags behind), logs the failure at most once per WRITE_ERROR_EVERY
seconds, and writes the file again on the next request. Only this process's own requests are then
counted for sure; the other processes of the user do the same with theirs.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock, Timeout

from kitefleet import clock
from kitefleet.errors import BrokerTemporaryError
from kitefleet.home import ensure_dir

QUOTE, HISTORICAL, ORDERS, OTHER = "quote", "historical", "orders", "other"
CLASSES = (QUOTE, HISTORICAL, ORDERS, OTHER)


@dataclass(frozen=True)
class Window:
    limit: int
    seconds: float


#: Safety margin added to every window (wall seconds).
WINDOW_MARGIN_S = 0.02
PER_SECOND: dict[str, int] = {QUOTE: 1, HISTORICAL: 3, ORDERS: 10, OTHER: 10}
ORDERS_PER_MINUTE = 400
ORDERS_PER_DAY = 5000
#: kiteconnect's request timeout is 7 s; a slot still "in flight" after this is a dead process's.
IN_FLIGHT_EXPIRY_S = 15.0
_POLL_S = 0.002
_LOCK_TIMEOUT_S = 30.0
#: A slot file that cannot be written is reported at most this often (wall seconds).
WRITE_ERROR_EVERY = 60.0
_log = logging.getLogger("kitefleet.ratelimit")

#: kiteconnect route name -> class, for the routes that are not "other".
_ROUTE_CLASS: dict[str, str] = {
    "market.quote": QUOTE,
    "market.quote.ohlc": QUOTE,
    "market.quote.ltp": QUOTE,
    "market.historical": HISTORICAL,
    "order.place": ORDERS,
    "order.modify": ORDERS,
    "order.cancel": ORDERS,
}


def market_speed() -> float:
    """Market seconds per wall second of the trading clock, never below 1 (see the module doc)."""
    return max(1.0, float(clock.get_clock().speed))


def endpoint_class(route: str) -> str:
    return _ROUTE_CLASS.get(route, OTHER)


class DailyOrderCapReached(BrokerTemporaryError):
    pass


class RateLimiter:
    """``with limiter.slot(cls):`` around one request; blocks until the class has room.

    Thread-safe and process-safe. ``places_order`` adds the per-minute and per-day caps.
    """

    def __init__(self, folder: Path, *, per_second: dict[str, int] | None = None,
                 orders_per_minute: int = ORDERS_PER_MINUTE, orders_per_day: int = ORDERS_PER_DAY,
                 margin: float = WINDOW_MARGIN_S) -> None:
        self.folder = folder
        self._per_second = dict(PER_SECOND if per_second is None else per_second)
        self._orders_per_minute = orders_per_minute
        self._orders_per_day = orders_per_day
        self._margin = margin
        self._thread_locks = {cls: threading.Lock() for cls in CLASSES}
        self._file_locks: dict[str, FileLock] = {}
        #: wall seconds this process spent waiting for a slot, per class (for logs and tests)
        self.waited: dict[str, float] = dict.fromkeys(CLASSES, 0.0)
        self.requests: dict[str, int] = dict.fromkeys(CLASSES, 0)
        #: per class, what this process counted while its file could not be written
        self._unsaved: dict[str, dict] = {}
        #: failed writes so far (for logs and tests) and when one was last reported
        self.write_errors = 0
        self._error_reported_at: float | None = None

    # --- files -------------------------------------------------------------------------------
    def _file_lock(self, cls: str) -> FileLock:
        lock = self._file_locks.get(cls)
        if lock is None:
            ensure_dir(self.folder)
            lock = FileLock(self.folder / f"{cls}.lock", timeout=_LOCK_TIMEOUT_S, poll_interval=_POLL_S)
            self._file_locks[cls] = lock
        return lock

    def _write_failed(self, what: Path, exc: OSError) -> None:
        self.write_errors += 1
        now = time.monotonic()
        if self._error_reported_at is None or now - self._error_reported_at >= WRITE_ERROR_EVERY:
            self._error_reported_at = now
            _log.error("rate limiter: could not write %s (%s); counting in memory, trying again",
                       what, exc.strerror or exc)

    def _read(self, path: Path, cls: str) -> dict:
        try:
            data = json.loads(path.read_bytes())
            if not isinstance(data, dict) or not isinstance(data.get("slots"), list):
                raise ValueError
        except (OSError, ValueError):
            data = {"slots": []}
        mine = self._unsaved.get(cls)
        if mine is not None:
            # The file missed our last writes: our own slots (and day count) win over its copy.
            ours = {s[0] for s in mine["slots"]}
            data["slots"] = [s for s in data["slots"] if s[0] not in ours] + mine["slots"]
            if mine.get("day") is not None:
                if data.get("day") != mine["day"]:
                    data["day"], data["day_count"] = mine["day"], 0
                data["day_count"] = max(int(data.get("day_count", 0)), int(mine.get("day_count", 0)))
        return data

    def _save(self, path: Path, cls: str, text: str) -> None:
        # No fsync: the slots only matter for the next seconds; os.replace keeps a killed writer
        # from leaving a torn file.
        tmp = self.folder / f".{cls}.json.tmp"
        try:
            tmp.write_text(text, encoding="utf-8")
            os.replace(tmp, path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()  # a partial temp file only takes more of a full disk
            self._unsaved[cls] = json.loads(text)
            self._write_failed(path, exc)
            return
        self._unsaved.pop(cls, None)

    @contextmanager
    def _locked(self, cls: str) -> Iterator[dict]:
        with self._thread_locks[cls]:
            locked = False
            try:
                self._file_lock(cls).acquire()
                locked = True
            except Timeout:
                raise BrokerTemporaryError(
                    f"rate limiter lock {self.folder / (cls + '.lock')} not acquired in {_LOCK_TIMEOUT_S:g} s"
                ) from None
            except OSError as exc:  # no lock file and no room to create one: this process alone
                self._write_failed(self.folder / f"{cls}.lock", exc)
            try:
                path = self.folder / f"{cls}.json"
                data = self._read(path, cls)
                before = json.dumps(data, separators=(",", ":"))
                yield data
                after = json.dumps(data, separators=(",", ":"))
                if not locked:
                    self._unsaved[cls] = json.loads(after)  # never written without the lock
                elif after != before or cls in self._unsaved:
                    self._save(path, cls, after)
            finally:
                if locked:
                    self._file_lock(cls).release()

    # --- policy ------------------------------------------------------------------------------
    def _windows(self, cls: str, places_order: bool) -> list[Window]:
        speed = market_speed()
        windows = [Window(self._per_second[cls], 1.0 / speed + self._margin)]
        if places_order:
            windows.append(Window(self._orders_per_minute, 60.0 / speed + self._margin))
        return windows

    @staticmethod
    def _wait_for(slots: list[list], windows: list[Window], now: float) -> float:
        """Seconds to wait before one more request fits every window (0: go now)."""
        wait = 0.0
        for window in windows:
            edge = now - window.seconds
            # A slot in flight occupies its place until its answer arrives (sorts last).
            busy = sorted(stamp if done else float("inf") for _id, stamp, done in slots
                          if not done or stamp > edge)
            if len(busy) >= window.limit:
                # The slot that has to leave the window for one more request to fit.
                leaving = busy[len(busy) - window.limit]
                if leaving == float("inf"):
                    wait = max(wait, _POLL_S * 5)
                else:
                    wait = max(wait, leaving + window.seconds - now, _POLL_S)
        return wait

    @contextmanager
    def slot(self, cls: str, *, places_order: bool = False) -> Iterator[None]:
        """Hold one request slot of ``cls`` for the duration of the request."""
        # slots are kept for the class's widest wall-time window (a clock that slows down widens the
        # windows again; a modify or cancel must not prune the placements the per-minute cap counts)
        keep = (60.0 if cls == ORDERS else 1.0) + self._margin
        slot_id = uuid.uuid4().hex[:12]
        started = time.monotonic()
        while True:
            windows = self._windows(cls, places_order)  # at the clock's speed now, on every look
            with self._locked(cls) as data:
                now = time.time()
                # A stamp in the future means the wall clock was set back: forget it rather
                # than stall for the size of the jump.
                slots = [s for s in data["slots"] if s[1] <= now + 1.0 and (
                    (s[2] and s[1] > now - keep) or (not s[2] and s[1] > now - IN_FLIGHT_EXPIRY_S))]
                data["slots"] = slots
                wait = self._wait_for(slots, windows, now)
                if wait <= 0 and places_order:
                    today = clock.today().isoformat()
                    if data.get("day") != today:
                        data["day"], data["day_count"] = today, 0
                    if int(data.get("day_count", 0)) >= self._orders_per_day:
                        raise DailyOrderCapReached(
                            f"{self._orders_per_day} orders placed today (Kite's daily cap); no more today"
                        )
                    data["day_count"] = int(data.get("day_count", 0)) + 1
                if wait <= 0:
                    slots.append([slot_id, now, False])
                    break
            time.sleep(min(wait, 0.25))
        self.waited[cls] += time.monotonic() - started
        self.requests[cls] += 1
        try:
            yield
        finally:
            with self._locked(cls) as data:
                answered = time.time()
                for s in data["slots"]:
                    if s[0] == slot_id:
                        s[1], s[2] = answered, True
                        break
                else:
                    # Our slot was dropped (we ran longer than IN_FLIGHT_EXPIRY_S): put it back.
                    data["slots"].append([slot_id, answered, True])
