"""Ask a process of one user for one JSON line: the one way the orchestrator learns anything that
needs a user's env file (mode, paper-broker address, key fingerprint, doctor's checks, holdings)
without holding that user's secret itself.

One policy for every caller:

- the process is born through the launcher (``spawn_worker``: environment from nothing, its own
  session, so its process group is everything it started), stdin closed, stdout/stderr piped;
- its answer is the last non-empty line of stdout, which must be a JSON object, and the exit code
  must be 0;
- a deadline runs from the start; when it passes (or the caller is interrupted), the whole process
  GROUP is SIGKILLed and the child is reaped (no zombie, no orphaned grandchild), and the error is
  one line: ``<job> for <User> gave no answer within <N>s (its processes were killed)``;
- any other failure is one line too: the worker's own last stderr line (``job: error: ...``
  without the prefix), else ``exit code N`` or ``printed no JSON answer``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from kitefleet.home import Home
from kitefleet.launcher import SUPERVISOR_NAMES, spawn_worker

#: For answers read from the user's own files (settings, fingerprint): no broker involved.
LOCAL_TIMEOUT_S = 30.0
#: For answers that need the broker (doctor's checks, holdings): its retries and backoff included.
BROKER_TIMEOUT_S = 90.0
#: After SIGKILL, how long the pipes may take to close before we stop reading them.
_REAP_S = 5.0
#: At most this many probe processes at once (the machine is shared with the traders).
MAX_PARALLEL = 8


@dataclass(frozen=True)
class Answer:
    """A user's answer: ``data`` (the JSON object) when ``ok``, else a one-line ``error``."""

    user: str
    job: str
    data: dict[str, Any] | None = None
    error: str | None = None
    exit_code: int | None = None
    timed_out: bool = False
    #: the probe process's pid (gone, and reaped, by the time the answer is returned)
    pid: int | None = None

    @property
    def ok(self) -> bool:
        return self.data is not None


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the child's process group (it leads one: ``start_new_session``), then reap it."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    try:
        proc.communicate(timeout=_REAP_S)
    except subprocess.TimeoutExpired:
        # A grandchild that left the group still holds a pipe: stop reading, but reap ours.
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        proc.wait()


def _last_json_object(out: bytes) -> dict[str, Any] | None:
    lines = [line for line in out.decode("utf-8", "replace").splitlines() if line.strip()]
    if not lines:
        return None
    try:
        data = json.loads(lines[-1])
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _error_line(err: bytes, returncode: int) -> str:
    lines = [line for line in err.decode("utf-8", "replace").splitlines() if line.strip()]
    if not lines:
        return f"exit code {returncode}"
    return lines[-1].strip().split("error: ", 1)[-1]


def _communicate(proc: subprocess.Popen[bytes], timeout: float,
                 progress: Callable[[str], None] | None) -> tuple[bytes, bytes]:
    """``proc.communicate(timeout)``; with ``progress``, each stdout line that is not the JSON
    answer is handed to it as it comes (a long job, e.g. flatten, tells how it goes)."""
    if progress is None:
        return proc.communicate(timeout=timeout)
    assert proc.stdout is not None and proc.stderr is not None
    out: list[bytes] = []
    err: list[bytes] = []

    def read_out() -> None:
        for raw in iter(proc.stdout.readline, b""):  # type: ignore[union-attr]
            out.append(raw)
            line = raw.decode("utf-8", "replace").strip()
            if line and not line.startswith("{"):
                progress(line)

    readers = [threading.Thread(target=read_out, daemon=True),
               threading.Thread(target=lambda: err.append(proc.stderr.read()), daemon=True)]  # type: ignore[union-attr]
    for t in readers:
        t.start()
    try:
        proc.wait(timeout=timeout)
    except BaseException:
        # Stop the readers before the caller's _kill_group reads the same pipes.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        for t in readers:
            t.join(_REAP_S)
        raise
    for t in readers:
        t.join(_REAP_S)
    return b"".join(out), b"".join(err)


def ask(home: Home, user: str, job: str, args: Sequence[str] = (), *,
        timeout: float = LOCAL_TIMEOUT_S, progress: Callable[[str], None] | None = None) -> Answer:
    """Run ``job`` for ``user`` (with ``args``) and return its one JSON line, or why there is none.
    ``progress``: called with each other line the job prints, as it prints it."""
    # A probe is not the supervised program: supervisord's identity (exec Som asking about Sai)
    # would make the other user's worker refuse to start.
    parent = {k: v for k, v in os.environ.items() if k not in SUPERVISOR_NAMES}
    try:
        proc = spawn_worker(user, job, args, home=home, parent_env=parent, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except Exception as exc:  # an invalid user name, for instance: already one line
        return Answer(user, job, error=str(exc))
    try:
        out, err = _communicate(proc, timeout, progress)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        return Answer(user, job, error=f"{job} for {user} gave no answer within {timeout:g}s "
                                       "(its processes were killed)", exit_code=proc.returncode,
                      timed_out=True, pid=proc.pid)
    except BaseException:
        _kill_group(proc)  # interrupted (Ctrl-C): never leave the user's process behind
        raise
    if proc.returncode != 0:
        return Answer(user, job, error=_error_line(err, proc.returncode), exit_code=proc.returncode,
                      pid=proc.pid)
    data = _last_json_object(out)
    if data is None:
        return Answer(user, job, error=f"{job} for {user} printed no JSON answer", exit_code=0, pid=proc.pid)
    return Answer(user, job, data=data, exit_code=0, pid=proc.pid)


def ask_all(home: Home, users: Sequence[str], job: str, args: Sequence[str] = (), *,
            timeout: float = LOCAL_TIMEOUT_S, max_parallel: int = MAX_PARALLEL) -> list[Answer]:
    """``ask`` every user, a few at a time; answers in the order of ``users``."""
    return map_users(users, lambda u: ask(home, u, job, args, timeout=timeout), max_parallel=max_parallel)


def map_users(users: Sequence[str], fn: Callable[[str], Any], *, max_parallel: int = MAX_PARALLEL) -> list[Any]:
    if not users:
        return []
    with ThreadPoolExecutor(max_workers=max(1, min(max_parallel, len(users)))) as pool:
        return list(pool.map(fn, users))
