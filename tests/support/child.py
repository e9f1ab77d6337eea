"""``Child`` runs a small Python script in a real process against a tmp home and reads its stdout
lines with a deadline (no sleeps as synchronisation). Used by the state and lock tests.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time

from kitefleet.home import Home
from tests.support.homes import PROJECT_ROOT, child_env


class Child:
    def __init__(self, home: Home, code: str, *args: str) -> None:
        env = child_env(home, PYTHONPATH=str(PROJECT_ROOT))
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code, *args],
            env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            bufsize=0, cwd=str(home.root),
        )
        self._buf = b""

    @property
    def pid(self) -> int:
        return self.proc.pid

    def readline(self, timeout: float = 15.0) -> str:
        """The next stdout line; AssertionError (with the child's stderr) on timeout or EOF."""
        deadline = time.monotonic() + timeout
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"child {self.pid}: no line within {timeout} s; stderr: {self.stderr()}")
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                chunk = os.read(fd, 65536)
                if not chunk:
                    self.proc.wait(timeout=10)
                    raise AssertionError(f"child {self.pid} closed stdout; stderr: {self.stderr()}")
                self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        return line.decode()

    def expect(self, prefix: str, timeout: float = 15.0) -> str:
        line = self.readline(timeout)
        assert line.startswith(prefix), f"expected {prefix!r}, got {line!r}; stderr: {self.stderr()}"
        return line

    def drain(self) -> list[str]:
        """All remaining complete stdout lines of a child that has exited."""
        assert self.proc.stdout is not None
        rest = self.proc.stdout.read() or b""
        data, self._buf = self._buf + rest, b""
        return [ln.decode() for ln in data.split(b"\n") if ln]

    def stderr(self) -> str:
        if self.proc.poll() is None:
            return "(still running)"
        assert self.proc.stderr is not None
        return (self.proc.stderr.read() or b"").decode(errors="replace")[-2000:]

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=15)

    def finish(self, timeout: float = 30.0) -> int:
        """Close stdin (the child's cue to stop) and wait for it."""
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            self.proc.stdin.close()
        return self.proc.wait(timeout=timeout)

    def close(self) -> None:
        self.kill()
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()
