"""The scheduler's heartbeat and run records: what ``orchestrator.py status`` reads.

On-disk contract (both written atomically by the user's scheduler only, mode 0600; read without
locks by anyone):

``data/<User>/heartbeat.json``, rewritten at least every HEARTBEAT_EVERY wall seconds::

    {"schema_version": 1, "user": "Som", "mode": "paper", "pid": 1234,
     "time": ISO (the shared clock), "wall": unix seconds (real time, for staleness),
     "state": "starting" | "idle" | "running" | "waiting for login" | "stopping" | "stopped",
     "day": "trading day" | "weekend" | "NSE holiday" | ..., "paused": bool,
     "next_wakeup": ISO | null,
     "current_jobs": {JOB: {"pid": 1, "since": ISO, "adopted": bool, "slots": ["09:00"]}},
     "jobs": {JOB: {"schedule": "09:00,14:00", <JobRecord fields, see workers.schedule>}}}

``data/<User>/scheduler.json``, rewritten whenever a run starts, ends or is skipped (the
records that make "never twice" hold across restarts)::

    {"schema_version": 1, "user": "Som", "jobs": {JOB: <JobRecord JSON>}}

Staleness is judged on wall time: a simulated clock may run 600 times faster than the wall, and
a frozen process is frozen in wall seconds.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from kitefleet.atomic import atomic_write_json
from kitefleet.errors import ConfigError
from kitefleet.home import Home

SCHEMA_VERSION = 1
#: The scheduler rewrites its heartbeat at least this often (wall seconds).
HEARTBEAT_EVERY = 2.0
#: A heartbeat older than this (wall seconds) is stale: the scheduler is hung or gone.
STALE_AFTER = 15.0


def heartbeat_path(home: Home, user: str) -> Path:
    return home.heartbeat_file(user)


def records_path(home: Home, user: str) -> Path:
    return home.user_data_dir(user) / "scheduler.json"


def write_heartbeat(home: Home, user: str, payload: dict[str, Any]) -> None:
    body = {"schema_version": SCHEMA_VERSION, "user": user, **payload}
    # wall time, not the trading clock: staleness is about the process, not the market
    body.setdefault("wall", time.time())
    atomic_write_json(heartbeat_path(home, user), body)


def read_heartbeat(home: Home, user: str) -> dict[str, Any] | None:
    """The last heartbeat, or None when there is none (or it is unreadable)."""
    try:
        data = json.loads(heartbeat_path(home, user).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("user") == user else None


def heartbeat_age(heartbeat: dict[str, Any] | None, wall_now: float | None = None) -> float | None:
    if heartbeat is None or not isinstance(heartbeat.get("wall"), int | float):
        return None
    return max(0.0, (time.time() if wall_now is None else wall_now) - float(heartbeat["wall"]))


def is_stale(heartbeat: dict[str, Any] | None, wall_now: float | None = None) -> bool:
    age = heartbeat_age(heartbeat, wall_now)
    return age is None or age > STALE_AFTER


def write_records(home: Home, user: str, jobs: dict[str, Any]) -> None:
    atomic_write_json(records_path(home, user), {"schema_version": SCHEMA_VERSION, "user": user, "jobs": jobs})


def read_records(home: Home, user: str) -> dict[str, Any]:
    """The persisted run records ({} when none yet). A file that is not ours or not JSON is a
    configuration error: silently starting afresh could run a job twice in one day."""
    path = records_path(home, user)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: unreadable scheduler records ({exc}); fix or delete it "
                          "(deleting it may re-run jobs already run today)") from None
    if not isinstance(data, dict) or data.get("user") != user or not isinstance(data.get("jobs"), dict):
        raise ConfigError(f"{path}: not {user}'s scheduler records; fix or delete it")
    return data["jobs"]


def process_state(pid: int) -> str | None:
    """The one-letter state of ``pid`` from /proc (``R``, ``S``, ``T`` stopped, ``Z`` zombie, ...),
    or None when there is no such process."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1][:1] or None
    except (OSError, IndexError):
        return None


def is_stopped(pid: int) -> bool:
    """Stopped by a signal (SIGSTOP, SIGTSTP) or a tracer: alive, holding its locks, doing nothing.
    A job's heartbeat is its process state: a stopped job never notices that it is stopped."""
    return process_state(pid) in ("T", "t")
