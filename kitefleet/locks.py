"""Lifetime process locks: one worker per user, one copy of each job per (user, job).

On-disk contract (all under ``data/<User>/locks/``, folder mode 0700):

    instance.lock        held for its whole life by the user's scheduler ("<User>'s worker")
    job-<job>.lock       held by the process running that job for that user
    state.lock           the StateStore's short-lived transaction lock (see kitefleet.state)
    <lock>.pid           sidecar: pid of the latest holder, written right after acquiring; for
                         diagnostics only (never trusted without probing the lock itself)

The locks are ``filelock.FileLock`` (``flock(2)``): the kernel drops them when the holder dies,
SIGKILL included, and filelock 4.3 closes the descriptor in a fork()ed child, so a forked child
never keeps a dead holder's lock alive. Lock files are never deleted: a waiter and a newcomer
must lock the same inode (process-facts.md 2.5).
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

from filelock import FileLock, Timeout

from kitefleet.errors import AlreadyRunning, LockTimeout, UsageError
from kitefleet.home import Home, ensure_dir
from kitefleet.users import validate_user_name

JOB_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")

# `lock_holder` (status, stop) probes a lock by taking it for a few microseconds. A starting
# worker that hit that instant with a single try would exit "already running" and be parked
# FATAL by supervisord, so the one try is allowed this short grace.
ACQUIRE_GRACE_S = 0.25
_GRACE_POLL_S = 0.01


def pid_sidecar(lock_path: Path) -> Path:
    return lock_path.with_name(lock_path.name + ".pid")


def write_holder_pid(lock_path: Path) -> None:
    """Record this process as the holder. Cheap on purpose (no fsync, no rename): it runs on every
    state transaction, and a reader that catches it half-written just reports "unknown"."""
    with contextlib.suppress(OSError):
        fd = os.open(pid_sidecar(lock_path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, f"{os.getpid()}\n".encode())
        finally:
            os.close(fd)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _pid_from_proc_locks(lock_path: Path) -> int | None:
    """Linux fallback: the flock owner of the lock file's inode, from /proc/locks."""
    try:
        st = os.stat(lock_path)
        with open("/proc/locks", encoding="ascii", errors="replace") as fh:
            lines = fh.readlines()
    except OSError:
        return None
    wanted = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    for line in lines:
        # "1: FLOCK  ADVISORY  WRITE 12345 00:2d:1234567 0 EOF"
        fields = line.split()
        if "FLOCK" in fields and "->" not in fields and len(fields) >= 6:
            pid, dev_ino = fields[4], fields[5]
            if dev_ino == wanted and pid.isdigit():
                return int(pid)
    return None


def recorded_holder_pid(lock_path: Path) -> int | None:
    """The holder's pid as recorded in the sidecar (if that process is alive), else from
    /proc/locks. Call only when the lock is known to be held."""
    try:
        text = pid_sidecar(lock_path).read_text(encoding="ascii").strip()
        pid: int | None = int(text) if text else None
    except (OSError, ValueError):
        pid = None
    if pid is not None and _pid_alive(pid):
        return pid
    return _pid_from_proc_locks(lock_path)


def lock_holder(path: Path) -> int | None:
    """pid holding the lock now (sidecar pid, reported only if the lock is really held: probed
    with a non-blocking acquire in this process), else None. Used by ``status`` and ``stop``.
    Never creates the lock file."""
    path = Path(path)
    if not path.exists():
        return None
    probe = FileLock(str(path), thread_local=False)
    try:
        probe.acquire(blocking=False)
    except Timeout:
        return recorded_holder_pid(path)
    except OSError:
        return None
    probe.release()
    return None


class ProcessLock:
    """Non-blocking, lifetime lock (filelock.FileLock) with a pid sidecar for diagnostics.

    Not reentrant across objects: a second ProcessLock on the same path is refused even in the
    same process. Shared by the threads of the holder (a signal thread may release it).
    """

    def __init__(self, path: Path, description: str) -> None:
        self.path = Path(path)
        self.description = description
        self._lock: FileLock | None = None
        self._owner_pid: int | None = None

    def acquire(self) -> None:
        """One try (plus a short grace, see ACQUIRE_GRACE_S); raise AlreadyRunning when held
        elsewhere. Acquiring a lock this object already holds is a no-op."""
        if self.held:
            return
        ensure_dir(self.path.parent)
        lock = FileLock(str(self.path), thread_local=False)
        try:
            lock.acquire(timeout=ACQUIRE_GRACE_S, poll_interval=_GRACE_POLL_S)
        except Timeout:
            pid = recorded_holder_pid(self.path)
            who = f"pid {pid}" if pid is not None else "pid unknown"
            raise AlreadyRunning(
                f"{self.description} is already running ({who}, lock {self.path})", holder_pid=pid
            ) from None
        self._lock, self._owner_pid = lock, os.getpid()
        write_holder_pid(self.path)

    def release(self) -> None:
        lock, self._lock = self._lock, None
        if lock is None or self._owner_pid != os.getpid():
            return  # an inherited copy in a forked child owns nothing
        # The sidecar is left alone: a new holder may already have written its own pid there.
        lock.release(force=True)

    @property
    def held(self) -> bool:
        return self._lock is not None and self._owner_pid == os.getpid() and self._lock.is_locked

    def __enter__(self) -> ProcessLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"ProcessLock({str(self.path)!r}, {self.description!r}, held={self.held})"


def instance_lock(home: Home, user: str) -> ProcessLock:
    validate_user_name(user)
    return ProcessLock(home.locks_dir(user) / "instance.lock", f"{user}'s worker")


def job_lock(home: Home, user: str, job: str) -> ProcessLock:
    validate_user_name(user)
    if not JOB_NAME_RE.match(job or ""):
        raise UsageError(f"invalid job name {job!r}: use letters, digits, '_' or '-'")
    return ProcessLock(home.locks_dir(user) / f"job-{job}.lock", f"{user}'s {job} job")


@contextlib.contextmanager
def _user_lock(home: Home, user: str, name: str, what: str, timeout: float) -> Iterator[None]:
    """A blocking per-user file lock with a timeout (LockTimeout names the holder's pid)."""
    validate_user_name(user)
    path = ensure_dir(home.locks_dir(user)) / f"{name}.lock"
    lock = FileLock(str(path), thread_local=False)
    try:
        lock.acquire(timeout=timeout, poll_interval=0.02)
    except Timeout:
        holder = recorded_holder_pid(path)
        who = f" (held by pid {holder})" if holder else ""
        raise LockTimeout(f"{user}'s {what} {path} not acquired within {timeout:.0f}s{who}") from None
    try:
        write_holder_pid(path)
        yield
    finally:
        lock.release()


@contextlib.contextmanager
def gtt_lock(home: Home, user: str, timeout: float = 60.0) -> Iterator[None]:
    """Serialise "read the GTT list, decide, write" between one user's jobs.

    update_cnc_stoploss and the watchdog both change a symbol's stop GTT (the stop job moves it,
    the watchdog deletes or reduces it after an exit fills). Each must plan from the GTT list and
    holdings it reads inside this lock, so neither writes back a GTT the other has just changed.
    Blocking, with a timeout (LockTimeout names the holder)."""
    with _user_lock(home, user, "gtt", "GTT lock", timeout):
        yield


@contextlib.contextmanager
def exit_lock(home: Home, user: str, timeout: float = 60.0) -> Iterator[None]:
    """Serialise "size an exit, pick its tag, send it" between one user's processes.

    The watchdog and ``halt --flatten`` (workers.flatten) both sell the bot's shares, each sized
    as owned minus the bot's open SELLs: two sizings from one book read would both sell the same
    shares (a person's too, when the account holds more), and two processes picking the next
    free tag at once would put one tag on two orders. Blocking, with a timeout (LockTimeout)."""
    with _user_lock(home, user, "exit", "exit lock", timeout):
        yield
