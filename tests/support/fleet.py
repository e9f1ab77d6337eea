"""Helpers for the fleet, scheduler and supervisord tests: homes with users whose schedules are off (no broker needed),
processes holding job locks (stand-ins for surviving jobs), polling with deadlines."""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import date, datetime
from pathlib import Path
from typing import Any, TypeVar

import pytest

from kitefleet.clock import IST, write_clock_file
from kitefleet.home import Home
from kitefleet.locks import job_lock, lock_holder
from tests.support.broker import ensure_calendar
from tests.support.homes import PROJECT_ROOT, VENV_PYTHON, child_env, make_home, write_env

T = TypeVar("T")

ALL_OFF = {
    "SCHEDULE_UPDATE_CNC_STOPLOSS": "off",
    "SCHEDULE_HOURLY_CANDLE_WATCHDOG": "off",
    "SCHEDULE_PATTERN_DAILY": "off",
    "SCHEDULE_PLACE_ORDERS_DAILY": "off",
    "SCHEDULE_LOGIN_REMINDER": "off",
    "SCHEDULE_DAILY_REPORT": "off",
}
#: A trading day (Wednesday) in the session.
IN_SESSION = datetime(2026, 11, 25, 10, 0, tzinfo=IST)


def poll(fn: Callable[[], T], timeout: float, what: str, interval: float = 0.05) -> T:
    """Call ``fn`` until it returns something truthy; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


def fleet_home(root: Path, users: dict[str, dict[str, object]], *, clock_at: datetime | None = IN_SESSION,
               around: date = date(2026, 11, 25)) -> tuple[Home, str | None]:
    """A home with env files and the calendar export; returns it and the TRADER_CLOCK value
    (a clock file at ``clock_at``, speed 1) or None for the real clock."""
    home = make_home(root)
    for user, extra in users.items():
        write_env(home, user, **{**ALL_OFF, **extra})
    ensure_calendar(home, around)
    if clock_at is None:
        return home, None
    path = home.root / "clock"
    write_clock_file(path, clock_at)
    return home, f"file:{path}"


def env_for(home: Home, clock: str | None, **extra: str) -> dict[str, str]:
    env = child_env(home, **extra)
    env["PYTHONPATH"] = str(PROJECT_ROOT)
    if clock:
        env["TRADER_CLOCK"] = clock
    return env


def start_daemon(home: Home, user: str, clock: str | None, *args: str, log: Path | None = None,
                 **extra: str) -> subprocess.Popen[bytes]:
    out = open(log or home.root / f"daemon-{user}.out", "ab")  # noqa: SIM115 (kept open by the child)
    with out:
        return subprocess.Popen([str(VENV_PYTHON), "-m", "workers", "daemon", "--user", user, *args],
                                cwd=PROJECT_ROOT, env=env_for(home, clock, **extra), stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)


HOLDER = """
import sys, time
from pathlib import Path
from kitefleet.home import Home
from kitefleet.locks import job_lock
with job_lock(Home(Path(sys.argv[1])), sys.argv[2], sys.argv[3]):
    while True:
        time.sleep(0.2)
"""


def hold_job_lock(home: Home, user: str, job: str) -> subprocess.Popen[bytes]:
    """A process that holds ``user``'s ``job`` lock (a stand-in for a job surviving its scheduler),
    in a process group of its own like every job."""
    proc = subprocess.Popen([str(VENV_PYTHON), "-c", HOLDER, str(home.root), user, job], cwd=PROJECT_ROOT,
                            env=env_for(home, None), start_new_session=True)
    path = job_lock(home, user, job).path
    poll(lambda: lock_holder(path) == proc.pid, 20, f"the {job} lock holder")
    return proc


def orchestrator(home: Home, *args: str, clock: str | None = None, timeout: float = 60,
                 **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(VENV_PYTHON), str(PROJECT_ROOT / "orchestrator.py"), *args], cwd=home.root,
                          env=env_for(home, clock, **extra), capture_output=True, text=True, timeout=timeout,
                          check=False)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead for our purposes
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    return True


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes in process group ``pgid``."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = (entry / "stat").read_text().rsplit(") ", 1)[1].split()
            if int(fields[2]) == pgid and fields[0] != "Z":
                members.append(int(entry.name))
    return members


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(5)


def python() -> str:
    return str(VENV_PYTHON if VENV_PYTHON.exists() else sys.executable)


@contextlib.contextmanager
def small_tmpfs(path: Path, size: str = "4m") -> Iterator[Path]:
    """A real file system of ``size`` at ``path`` (a tmpfs mount: needs root; skips otherwise), so
    a test can fill it and see real ENOSPC errors. Unmounted (lazily) on exit."""
    path.mkdir(parents=True, exist_ok=True)
    out = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)],
                         capture_output=True, text=True, check=False)
    if out.returncode != 0:
        pytest.skip(f"a real full disk needs a tmpfs mount (root): {out.stderr.strip() or out.returncode}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)


def fill_disk(folder: Path) -> Path:
    """Write a file in ``folder`` until its file system reports ENOSPC; returns the file (delete
    it to free the space)."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        chunk = b"\0" * 65536
        while True:
            try:
                os.write(fd, chunk)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
                if len(chunk) == 1:
                    break
                chunk = chunk[: len(chunk) // 2]
    finally:
        os.close(fd)
    return filler
