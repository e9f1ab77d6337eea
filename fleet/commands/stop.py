"""``stop USER [--grace S]``: stop whatever process holds USER's instance lock, and any job left behind.

The holder may be supervisord's ``trader:<User>``, a ``run-all`` child, or an orphan left by a
SIGKILLed supervisord. When the running supervisord owns that very pid it is asked to stop the
program (so it is not restarted); otherwise the holder's process group gets SIGTERM, then SIGKILL
after the grace period. Processes still holding one of the user's job locks afterwards (orphaned
jobs) are stopped the same way. Exit 0 when nothing of USER runs any more, 1 otherwise.

A user without an env file is still stopped when something holds one of its locks (the file was
deleted while the scheduler ran); with neither an env file nor a lock holder the user is unknown
(exit 2).
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import time
import xmlrpc.client
from pathlib import Path
from typing import Any

from fleet import supervisor
from fleet.argtypes import seconds
from fleet.validate import env_file_present, unknown_users_error
from kitefleet.exitcodes import ExitCode
from kitefleet.home import Home
from kitefleet.launcher import signal_leader
from kitefleet.locks import lock_holder
from kitefleet.users import validate_user_name

MAX_GRACE_S = 3600.0


def add_parser(sub: Any) -> None:
    p = sub.add_parser("stop", help="stop USER's scheduler (supervised or orphaned) and its jobs",
                       usage="orchestrator.py stop USER [--grace SECONDS]")
    p.add_argument("user")
    p.add_argument("--grace", type=seconds(0, MAX_GRACE_S), default=35.0,
                   help="seconds between SIGTERM and SIGKILL (default 35)")
    p.set_defaults(func=run)


def wait_released(path: Path, pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if lock_holder(path) != pid:
            return True
        time.sleep(0.05)
    return lock_holder(path) != pid


def stop_holder(path: Path, pid: int, grace: float, what: str) -> bool:
    print(f"stopping {what} (pid {pid}): SIGTERM to its process group")
    signal_leader(pid, signal.SIGTERM)
    if wait_released(path, pid, grace):
        return True
    print(f"{what} (pid {pid}) still running after {grace:.0f}s: SIGKILL")
    signal_leader(pid, signal.SIGKILL)
    return wait_released(path, pid, 5.0)


def job_lock_paths(home: Home, user: str) -> list[Path]:
    locks_dir = home.locks_dir(user)
    return sorted(locks_dir.glob("job-*.lock")) if locks_dir.is_dir() else []


def run(args: argparse.Namespace) -> int:
    user = validate_user_name(args.user)
    home = Home.resolve()
    instance = home.locks_dir(user) / "instance.lock"
    ok = True
    pid = lock_holder(instance)
    if not env_file_present(home, user):
        if pid is None and all(lock_holder(p) is None for p in job_lock_paths(home, user)):
            raise unknown_users_error(home, [user])
        print(f"{user}: no env/{user}.env (deleted while it ran?), but a process still holds its lock: stopping it")
    if pid is None:
        print(f"{user}'s scheduler is not running")
    else:
        infos = supervisor.process_infos(home) or {}
        info = infos.get(supervisor.namespec(user))
        if info is not None and info.get("pid") == pid:
            print(f"stopping {supervisor.namespec(user)} (pid {pid}) through supervisord")
            with contextlib.suppress(OSError, xmlrpc.client.Error):
                supervisor.rpc(home).supervisor.stopProcess(supervisor.namespec(user), True)
        ok = wait_released(instance, pid, 1.0) or stop_holder(instance, pid, args.grace, f"{user}'s scheduler")
    # Jobs whose scheduler died without stopping them (SIGKILL) still hold their job locks.
    for path in job_lock_paths(home, user):
        job_pid = lock_holder(path)
        if job_pid is not None:
            job = path.stem.removeprefix("job-")
            ok = stop_holder(path, job_pid, args.grace, f"{user}'s {job} job") and ok
    if ok:
        print(f"{user}: stopped")
    return ExitCode.OK if ok else ExitCode.JOB_FAILED
