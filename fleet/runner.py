"""Run one job for many users at once: one child process per user, each built by the launcher.

Every output line of a child is printed as ``<User> | <line>`` (coloured only on a terminal); a
summary table follows. SIGINT/SIGTERM stops every child by process group.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import IO, TextIO

from fleet.procs import StopRequested, install_stop_handlers, stop_groups
from kitefleet.exitcodes import from_returncode, signal_name
from kitefleet.home import Home
from kitefleet.launcher import spawn_worker

_COLOURS = ("36", "33", "35", "32", "34", "31")


@dataclass
class Child:
    user: str
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    ended: float | None = None
    #: the exit code as documented (a death by signal is ExitCode.KILLED), None if never started
    returncode: int | None = None
    #: the signal's name when the child was killed by one
    killed_by: str | None = None
    threads: list[threading.Thread] = field(default_factory=list)

    @property
    def duration(self) -> float:
        return ((self.ended or time.monotonic()) - self.started) if self.started else 0.0


class PrefixPrinter:
    def __init__(self, users: Sequence[str], out: TextIO) -> None:
        self.out = out
        self.width = max((len(u) for u in users), default=0)
        self.colour = out.isatty()
        self.lock = threading.Lock()
        self.colours = {u: _COLOURS[i % len(_COLOURS)] for i, u in enumerate(users)}

    def prefix(self, user: str) -> str:
        label = f"{user.ljust(self.width)} | "
        return f"\033[{self.colours[user]}m{label}\033[0m" if self.colour else label

    def pump(self, user: str, stream: IO[bytes]) -> None:
        prefix = self.prefix(user)
        for raw in iter(stream.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\n")
            with self.lock:
                self.out.write(prefix + line + "\n")
                self.out.flush()
        stream.close()


def run_all(home: Home, users: Sequence[str], job: str, job_args: Sequence[str], *,
            max_parallel: int | None = None, out: TextIO | None = None,
            grace: float = 5.0) -> tuple[list[Child], str | None]:
    """Run and return the children and, if a signal stopped the run, the signal's name."""
    out = out or sys.stdout
    printer = PrefixPrinter(users, out)
    children = [Child(u) for u in users]
    limit = max(1, max_parallel or len(children) or 1)
    pending = list(children)
    running: list[Child] = []
    stopping = threading.Event()
    stopped_by: list[str] = []

    def on_stop(name: str) -> None:
        stopping.set()
        stopped_by.append(name)

    install_stop_handlers(on_stop)
    try:
        while pending or running:
            while pending and len(running) < limit and not stopping.is_set():
                child = pending.pop(0)
                child.proc = spawn_worker(child.user, job, job_args, home=home,
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                child.started = time.monotonic()
                for stream in (child.proc.stdout, child.proc.stderr):
                    assert stream is not None
                    t = threading.Thread(target=printer.pump, args=(child.user, stream), daemon=True)
                    t.start()
                    child.threads.append(t)
                running.append(child)
            for child in list(running):
                assert child.proc is not None
                if child.proc.poll() is not None:
                    _finish(child)
                    running.remove(child)
            if stopping.is_set() and not running:
                break
            time.sleep(0.02)
    except StopRequested:
        stopping.set()  # the handler already recorded the signal
    except Exception:
        # A child that could not be started must not leave the ones already running orphaned.
        stop_groups([c.proc for c in running if c.proc is not None], grace=grace)
        raise
    if stopping.is_set():
        stop_groups([c.proc for c in running if c.proc is not None], grace=grace)
        for child in running:
            _finish(child)
    return children, (stopped_by[0] if stopped_by else None)


def _finish(child: Child) -> None:
    assert child.proc is not None
    raw = child.proc.wait()
    child.killed_by = signal_name(raw)
    child.returncode = from_returncode(raw)
    child.ended = time.monotonic()
    for t in child.threads:
        t.join(timeout=5)
