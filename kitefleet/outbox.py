"""One user's notification outbox: what the bot has to tell its person, kept until it is delivered.

On-disk contract (all under ``data/<User>/``, mode 0600):

    outbox.jsonl    one event per line, appended by any process of the user (jobs, the scheduler,
                    the notify job for the supervisord listener's events) under
                    ``locks/outbox.lock`` and fsync'd before ``emit`` returns. Never the state lock:
                    an exit order never waits on a notification. Lines are never changed; a torn last
                    line (a SIGKILL mid-append) is skipped by readers. The notify job compacts the
                    file now and then (``compact``: settled events older than KEEP_SETTLED_DAYS go,
                    the rest is rewritten atomically, in order).
    outbox.done     one line per settled (event, target): ``{"id", "to", "how"}`` with ``to`` the
                    position (1-based) of the NOTIFY_URLS entry that accepted it, or ``"*"`` for the
                    event as a whole; ``how`` is ``sent``, ``skipped`` (below NOTIFY_LEVEL, or no
                    URL), ``dropped`` (no service took it within NOTIFY_GIVE_UP_HOURS) or
                    ``settled`` (added by ``compact`` to an event the cursor had passed). Appended
                    and fsync'd under the same lock, right after a service accepts the message;
                    ``compact`` rewrites it with the marks of the events it keeps.
    outbox.cursor   ``{"offset": N, "next_try": EPOCH|null, "tries": {id: [first_try, count]}}``,
                    written atomically by the notify job: every event in the first N bytes of
                    outbox.jsonl is settled, and the next delivery attempt is due at ``next_try``
                    (wall clock). The scheduler compares it with outbox.jsonl's size: a cheap check.

An event: ``{"id", "time" (ISO, the shared clock), "user", "kind", "level" ("info", "trade" or
"warning"), "text", "act" (what a person does about it, or null), "data" ({}), "attach" (a path
relative to the home, or null)}``. The id is stable: it is in every message (delivery is
at-least-once, so a duplicate carries the same id), and an event emitted with a ``key`` gets the
same id every time, so a job that re-runs does not tell the same thing twice.

Writers: every worker process of the user (``emit``), the notify job (``mark``, the cursor).
Readers: the notify job, the dashboard, ``status``. Nothing here imports Apprise: the scheduler
imports this module.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from filelock import FileLock

from kitefleet import clock
from kitefleet.atomic import atomic_write_bytes, atomic_write_json, remove_stale_temps
from kitefleet.home import Home, ensure_dir

OUTBOX = "outbox.jsonl"
DONE = "outbox.done"
CURSOR = "outbox.cursor"
LOCK = "outbox.lock"
#: an emit waits at most this long for the lock (held for one append at a time), then gives up
LOCK_TIMEOUT_S = 5.0

#: kind -> level. ``info`` reaches NOTIFY_LEVEL=all only; ``trade`` and ``warning`` reach trades too.
KINDS: Mapping[str, str] = {
    "entry_placed": "info",
    "stop_placed": "info",
    "stop_moved": "info",
    "fill": "trade",
    "exit": "trade",
    "gtt_triggered": "trade",
    "daily_report": "trade",
    "stop_fallback": "warning",
    "stop_not_placed": "warning",
    "stop_not_active": "warning",
    "halted": "warning",
    "loss_limit": "warning",
    "job_failed": "warning",
    "login_needed": "warning",
    "session_expired": "warning",
    "reconcile_failed": "warning",
    "trader_stopped": "warning",
    "trader_restarted": "warning",
}
LEVELS = ("trades", "all", "warnings")
#: what NOTIFY_LEVEL=warnings leaves out of trades
NOT_WARNINGS = frozenset({"fill", "daily_report"})

_log = logging.getLogger("kitefleet.outbox")
#: (user, reason) pairs already logged by ``emit``: a full disk is said once per process, not per event
_emit_failures: set[str] = set()


def paths(home: Home, user: str) -> tuple[Path, Path, Path]:
    folder = home.user_data_dir(user)
    return folder / OUTBOX, folder / DONE, folder / CURSOR


def _lock(home: Home, user: str, timeout: float = LOCK_TIMEOUT_S) -> FileLock:
    return FileLock(str(ensure_dir(home.locks_dir(user)) / LOCK), timeout=timeout)


def wanted(level: str, event: Mapping[str, Any]) -> bool:
    """Does NOTIFY_LEVEL ``level`` send this event?"""
    if level == "all":
        return True
    if event.get("level") == "info":
        return False
    return not (level == "warnings" and event.get("kind") in NOT_WARNINGS)


def event_id(user: str, kind: str, key: str | None) -> str:
    if key is None:
        return f"{kind}-{uuid.uuid4().hex[:12]}"
    return f"{kind}-{hashlib.sha256(f'{user}|{kind}|{key}'.encode()).hexdigest()[:12]}"


def _append_line(path: Path, line: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.write(fd, line.encode("utf-8"))  # one write: a concurrent reader sees a whole line or none
        os.fsync(fd)
    finally:
        os.close(fd)


def emit(home: Home, user: str, kind: str, text: str, *, act: str | None = None, key: str | None = None,
         data: Mapping[str, Any] | None = None, attach: str | None = None) -> str | None:
    """Append one event; returns its id, or None when it could not be written. Never raises: it is
    called from trading paths (an exit, a stop), which must go on whatever happens here."""
    try:
        eid = event_id(user, kind, key)
        event = {"id": eid, "time": clock.now().isoformat(timespec="seconds"), "user": user, "kind": kind,
                 "level": KINDS.get(kind, "warning"), "text": text, "act": act, "data": dict(data or {}),
                 "attach": attach}
        outbox, _, _ = paths(home, user)
        ensure_dir(outbox.parent)
        with _lock(home, user):
            if key is not None and any(e["id"] == eid for e in read_events(home, user)):
                return eid  # told already (a re-run of the same job)
            _append_line(outbox, json.dumps(event, ensure_ascii=False, default=str) + "\n")
        return eid
    except Exception as exc:  # see the docstring: never into a trading path
        reason = f"{user}:{type(exc).__name__}"
        if reason not in _emit_failures:
            _emit_failures.add(reason)
            with contextlib.suppress(Exception):
                _log.warning("could not write the notification outbox (%s: %s); the event is lost, "
                             "trading goes on", type(exc).__name__, getattr(exc, "strerror", None) or exc)
        return None


def read_events(home: Home, user: str, start: int = 0) -> list[dict[str, Any]]:
    """Events from byte ``start`` on, each with ``_end`` (the byte offset after its line)."""
    outbox, _, _ = paths(home, user)
    try:
        with open(outbox, "rb") as fh:
            fh.seek(start)
            raw = fh.read()
    except FileNotFoundError:
        return []
    out: list[dict[str, Any]] = []
    offset = start
    for line in raw.splitlines(keepends=True):
        offset += len(line)
        if not line.endswith(b"\n"):
            break  # torn (being written, or a SIGKILL mid-append): not an event yet
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict) and isinstance(event.get("id"), str):
            event["_end"] = offset
            event["_len"] = len(line)
            out.append(event)
    return out


def read_done(home: Home, user: str) -> dict[str, dict[str, str]]:
    """``{event id: {target: how}}``; target is a URL position (``"1"``...) or ``"*"``."""
    _, done, _ = paths(home, user)
    out: dict[str, dict[str, str]] = {}
    try:
        lines = done.read_bytes().splitlines()
    except FileNotFoundError:
        return out
    for line in lines:
        with contextlib.suppress(ValueError, KeyError, TypeError):
            rec = json.loads(line)
            out.setdefault(str(rec["id"]), {})[str(rec["to"])] = str(rec["how"])
    return out


def mark(home: Home, user: str, eid: str, to: int | str, how: str) -> None:
    """Record that target ``to`` (a URL position, or ``"*"``) is done with event ``eid``. Raises
    OSError when it cannot be written (the notify job then stops: a later run sends again)."""
    _, done, _ = paths(home, user)
    with _lock(home, user, timeout=60):
        _append_line(done, json.dumps({"id": eid, "to": str(to), "how": how}) + "\n")


def settled(event_done: Mapping[str, str], targets: Iterable[int]) -> bool:
    """Is the event done with? With no targets (no NOTIFY_URLS) only its ``"*"`` mark settles it:
    ``all()`` of nothing would call it settled with no mark, and the event would never be marked
    ``skipped`` (nor leave the outbox when it is compacted)."""
    wanted = [str(t) for t in targets]
    return "*" in event_done or (bool(wanted) and all(t in event_done for t in wanted))


#: settled events younger than this stay through a compaction: a job that re-runs re-emits a keyed
#: event (a fill, a triggered GTT) and ``emit`` recognises it only while it is in the outbox. The
#: same horizon as the intents the bot remembers (workers.intents.KEEP_INTENT_DAYS).
KEEP_SETTLED_DAYS = 30
#: compact only when the settled prefix (the cursor's offset) is at least this big: the rewrite
#: copies what is kept, so a threshold keeps its cost proportional to what it frees
COMPACT_MIN_BYTES = 128 * 1024
#: the steps of ``compact``, in order (its ``step`` hook is called after each: a test's kill point)
COMPACT_STEPS = ("marked", "cursor_reset", "outbox_written", "done_written")


def _event_time(event: Mapping[str, Any]) -> datetime | None:
    try:
        when = datetime.fromisoformat(str(event.get("time")))
    except ValueError:
        return None
    return when if when.tzinfo is not None else None


def compact(home: Home, user: str, now: datetime, *, keep_days: float = KEEP_SETTLED_DAYS,
            min_bytes: int = COMPACT_MIN_BYTES, step: Callable[[str], None] | None = None) -> int:
    """Drop the settled events older than ``keep_days`` (by their ``time``, the shared clock) from
    outbox.jsonl, and their marks from outbox.done; returns how many were dropped. Only the
    notify job calls it, under its job lock (no other delivery pass runs), and all of it runs
    under the outbox lock (no emit or mark in between).

    A kill between any two steps loses no undelivered event and sends no settled one again:

    1. ``marked``: every event of the settled prefix (before the cursor) that has no ``"*"`` mark
       gets one (``how`` = ``settled``), in one append: settled now whatever NOTIFY_URLS becomes.
    2. ``cursor_reset``: the cursor's offset goes to 0 (its back-off and tries stay). A pass that
       runs from here re-reads the whole file and finds the prefix settled by step 1's marks.
    3. ``outbox_written``: outbox.jsonl is rewritten (kitefleet.atomic) with what is kept, in order:
       the young settled events and every event past the old cursor.
    4. ``done_written``: outbox.done keeps only the marks of the kept events.
    5. The cursor moves past the kept settled events (the new file's settled prefix).
    """
    outbox, done_path, _ = paths(home, user)
    try:
        marks_size = done_path.stat().st_size
    except FileNotFoundError:
        marks_size = 0
    # The cheap look, before the lock and a read of the whole file. A mark is about a quarter of an
    # event's size: a done file that big after a compaction holds the marks a killed one left.
    if int(read_cursor(home, user).get("offset") or 0) < min_bytes and marks_size < min_bytes // 4:
        return 0
    cutoff = now - timedelta(days=keep_days)
    hook = step or (lambda _name: None)
    with _lock(home, user, timeout=60):
        for leftover in (outbox, done_path):
            remove_stale_temps(leftover)  # of a compaction killed mid-write
        cursor = read_cursor(home, user)
        offset = int(cursor.get("offset") or 0)
        events = read_events(home, user)
        prefix = [e for e in events if int(e["_end"]) <= offset]
        old = {e["id"] for e in prefix if (when := _event_time(e)) is None or when < cutoff}
        done = read_done(home, user)
        if not old and not set(done) - {e["id"] for e in events}:
            return 0  # nothing to drop, and no marks left over by a compaction killed after its rewrite
        unmarked = [e["id"] for e in prefix if "*" not in done.get(e["id"], {})]
        if unmarked:
            _append_line(done_path, "".join(json.dumps({"id": eid, "to": "*", "how": "settled"}) + "\n"
                                            for eid in dict.fromkeys(unmarked)))
        hook("marked")
        tries = {k: v for k, v in (cursor.get("tries") or {}).items() if k not in old}
        write_cursor(home, user, 0, cursor.get("next_try"), tries)
        hook("cursor_reset")
        kept = [e for e in events if e["id"] not in old]
        raw = outbox.read_bytes()
        atomic_write_bytes(outbox, b"".join(raw[e["_end"] - e["_len"]:e["_end"]] for e in kept))
        hook("outbox_written")
        ids = {e["id"] for e in kept}
        marks = [line for line in done_path.read_bytes().splitlines(keepends=True)
                 if line.endswith(b"\n") and _mark_id(line) in ids]
        atomic_write_bytes(done_path, b"".join(marks))
        hook("done_written")
        settled_bytes = sum(int(e["_len"]) for e in kept if int(e["_end"]) <= offset)
        write_cursor(home, user, settled_bytes, cursor.get("next_try"), tries)
    _log.info("outbox compacted: %d settled events older than %g days dropped, %d kept",
              len(old), keep_days, len(kept))
    return len(old)


def _mark_id(line: bytes) -> str | None:
    try:
        rec = json.loads(line)
    except ValueError:
        return None
    return str(rec.get("id")) if isinstance(rec, dict) else None


def read_cursor(home: Home, user: str) -> dict[str, Any]:
    _, _, cursor = paths(home, user)
    try:
        data = json.loads(cursor.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {"offset": 0, "next_try": None, "tries": {}}
    if not isinstance(data, dict):
        return {"offset": 0, "next_try": None, "tries": {}}
    data.setdefault("tries", {})
    return data


def write_cursor(home: Home, user: str, offset: int, next_try: float | None,
                 tries: Mapping[str, list[float]]) -> None:
    _, _, cursor = paths(home, user)
    atomic_write_json(cursor, {"offset": offset, "next_try": next_try, "tries": dict(tries)}, indent=None)


def needs_delivery(home: Home, user: str, wall: float | None = None) -> bool:
    """The scheduler's cheap look: are there bytes past the settled offset, and is a try due?"""
    outbox, _, _ = paths(home, user)
    try:
        size = outbox.stat().st_size
    except OSError:
        return False
    cursor = read_cursor(home, user)
    if size <= int(cursor.get("offset") or 0):
        return False
    next_try = cursor.get("next_try")
    return next_try is None or (time.time() if wall is None else wall) >= float(next_try)


def undelivered(home: Home, user: str) -> int:
    """How many events wait for delivery (status and the dashboard show it)."""
    done = read_done(home, user)
    start = int(read_cursor(home, user).get("offset") or 0)
    return sum(1 for e in read_events(home, user, start) if e["id"] not in done)


STATUS = "notify.json"


def notify_problem(home: Home, user: str) -> str | None:
    """"cannot notify: why" when the user's last notify run could not (``data/<User>/notify.json``,
    written by the notify job: a bad NOTIFY_URLS entry, an env file too broken to read even its
    NOTIFY_* keys); None when it could, or never ran."""
    try:
        data = json.loads((home.user_data_dir(user) / STATUS).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if isinstance(data, dict) and data.get("can_notify") is False and data.get("why") != "no NOTIFY_URLS":
        return str(data.get("why") or "cannot notify")
    return None
