"""The processes the demo starts, and the guarantee that none outlives it.

Every process is started in a session (process group) of its own, with an environment built from
nothing but harmless variables, ``KITEFLEET_HOME`` and ``TRADER_CLOCK``; so every process of the
demo, and every process those start (supervisord's programs, the schedulers' jobs), carries
``KITEFLEET_HOME=<demo home>`` in ``/proc/<pid>/environ``. ``leftovers()`` finds them by that.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from kitefleet.home import PROJECT_ROOT, Home

ORCHESTRATOR = PROJECT_ROOT / "orchestrator.py"
BIN = Path(sys.executable).parent
_PASS = ("PATH", "LANG", "TZ", "HOME", "TMPDIR")


def demo_env(home: Home, clock_value: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k in _PASS or k.startswith("LC_")}
    env["KITEFLEET_HOME"] = str(home.root)
    env["TRADER_CLOCK"] = clock_value
    env["PYTHONPATH"] = str(PROJECT_ROOT)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1][:1]
    except (OSError, IndexError):
        return False
    return state != "Z"


def poll(fn: Callable[[], object], timeout: float, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if fn():
            return True
        time.sleep(interval)
    return bool(fn())


@dataclass
class Procs:
    home: Home
    clock_value: str
    started: list[subprocess.Popen[bytes]] = field(default_factory=list)
    supervisord: subprocess.Popen[bytes] | None = None

    @property
    def env(self) -> dict[str, str]:
        return demo_env(self.home, self.clock_value)

    def spawn(self, argv: list[str], log: Path) -> subprocess.Popen[bytes]:
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as out:
            proc = subprocess.Popen(argv, cwd=PROJECT_ROOT, env=self.env, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        self.started.append(proc)
        return proc

    def orchestrator(self, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        """Run one orchestrator command to completion (in a group of its own, so an interrupt
        here stops it and whatever it started)."""
        proc = subprocess.Popen([sys.executable, str(ORCHESTRATOR), *args], cwd=PROJECT_ROOT, env=self.env,
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                start_new_session=True)
        self.started.append(proc)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            stop_group(proc, grace=5)
            out, err = proc.communicate()
        finally:
            if proc.poll() is None:
                stop_group(proc, grace=5)
        return subprocess.CompletedProcess(proc.args, proc.returncode, out.decode("utf-8", "replace"),
                                           err.decode("utf-8", "replace"))

    # --- the paper broker ------------------------------------------------------------------------
    def start_broker(self, scenario: Path, seed: int, timeout: float = 60.0) -> tuple[subprocess.Popen[bytes], str]:
        info = self.home.paper_dir / "broker.json"
        proc = self.spawn([sys.executable, str(ORCHESTRATOR), "paper-broker", "--port", "0", "--",
                           "--scenario", str(scenario), "--seed", str(seed), "--no-rate-limits"],
                          self.home.logs_dir / "paper-broker.out.log")
        url: list[str] = []

        def ready() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"the paper broker exited with {proc.returncode}; see "
                                   f"{self.home.logs_dir / 'paper-broker.out.log'}")
            with contextlib.suppress(OSError, ValueError, KeyError):
                data = json.loads(info.read_text(encoding="utf-8"))
                if data["pid"] == proc.pid:
                    url.append(str(data["url"]))
                    return True
            return False

        if not poll(ready, timeout):
            raise RuntimeError(f"the paper broker did not start within {timeout:.0f}s")
        return proc, url[-1]

    # --- supervisord -----------------------------------------------------------------------------
    def start_supervisord(self, timeout: float = 30.0) -> subprocess.Popen[bytes]:
        from fleet.supervisor import supervisor_running

        proc = self.spawn([str(BIN / "supervisord"), "-c", str(self.home.supervisord_conf), "-n"],
                          self.home.logs_dir / "supervisord.out.log")

        def ready() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"supervisord exited with {proc.returncode}; see {self.home.logs_dir}")
            return supervisor_running(self.home)

        if not poll(ready, timeout):
            raise RuntimeError(f"supervisord did not answer within {timeout:.0f}s")
        self.supervisord = proc
        return proc

    def stop_supervisord(self, grace: float = 45.0) -> int | None:
        """SIGTERM: supervisord stops its programs (each by group, within stopwaitsecs) and exits."""
        if self.supervisord is None:
            return None
        stop_group(self.supervisord, grace=grace)
        return self.supervisord.returncode

    # --- stopping --------------------------------------------------------------------------------
    def stop_all(self, grace: float = 30.0) -> None:
        """Newest first: supervisord stops its programs (SIGTERM; it stops them by group), then
        the broker; whatever a group still holds after ``grace`` is killed."""
        for proc in reversed(self.started):
            if proc.poll() is None:
                stop_group(proc, grace=grace)
            else:
                _kill_group(proc.pid, signal.SIGKILL)


def _kill_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def stop_group(proc: subprocess.Popen[bytes], grace: float) -> None:
    _kill_group(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(grace)
    _kill_group(proc.pid, signal.SIGKILL)  # the leader is gone or late: nothing of its group stays
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(5)


# --- leftovers -------------------------------------------------------------------------------------
def _ancestors() -> set[int]:
    """Our pid and every parent's: a shell that exported KITEFLEET_HOME is not a leftover."""
    pids, pid = set(), os.getpid()
    while pid > 1 and pid not in pids:
        pids.add(pid)
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            break
    return pids


def leftovers(home: Home) -> list[tuple[int, str]]:
    """(pid, command line) of every live process whose environment names this home, except ours
    and our parents'."""
    needle = b"KITEFLEET_HOME=" + os.fsencode(home.root)
    skip = _ancestors()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in skip:
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
            if needle not in environ or not _alive(int(entry.name)):
                continue
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        found.append((int(entry.name), cmd))
    return sorted(found)


def kill_leftovers(home: Home, grace: float = 5.0) -> list[tuple[int, str]]:
    """Stop every leftover of this home by process group (TERM, then KILL); returns what was found."""
    found = leftovers(home)
    if not found:
        return []
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid, _ in leftovers(home):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                pgid = os.getpgid(pid)
                if pgid != os.getpgrp():
                    os.killpg(pgid, sig)
                else:
                    os.kill(pid, sig)
        if poll(lambda: not leftovers(home), grace):
            break
    return found
