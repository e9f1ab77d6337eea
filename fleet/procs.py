"""Children of the orchestrator: started through the launcher, each in its own session, and
stopped by process group (TERM, then KILL after a grace period) so nothing is orphaned."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterable


def signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def stop_groups(procs: Iterable[subprocess.Popen[bytes]], grace: float = 5.0) -> None:
    """TERM every child's group, wait up to ``grace`` seconds, then KILL what is left."""
    live = [p for p in procs if p.poll() is None]
    for proc in live:
        signal_group(proc, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for proc in live:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
    for proc in live:
        if proc.poll() is None:
            signal_group(proc, signal.SIGKILL)
            proc.wait()
        else:
            # the leader is gone; make sure nothing it started is left in its group
            signal_group(proc, signal.SIGKILL)


class StopRequested(Exception):
    pass


def install_stop_handlers(on_stop: Callable[[str], None]) -> None:
    def handler(signum: int, _frame: object) -> None:
        name = signal.Signals(signum).name
        on_stop(name)
        raise StopRequested(name)

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
