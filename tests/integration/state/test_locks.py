"""Instance and job locks between real processes: refusal with the holder's pid, release on
SIGKILL, independence per (user, job), and no lock kept alive by a forked child."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pytest

from kitefleet.errors import AlreadyRunning
from kitefleet.exitcodes import ExitCode
from kitefleet.home import Home
from kitefleet.locks import instance_lock, job_lock, lock_holder
from tests.support.child import Child
from tests.support.homes import make_home

HOLD = r"""
import sys
from kitefleet.home import Home
from kitefleet.locks import instance_lock, job_lock

home = Home.resolve()
lock = instance_lock(home, sys.argv[1]) if sys.argv[2] == "-" else job_lock(home, sys.argv[1], sys.argv[2])
lock.acquire()
print("held", flush=True)
sys.stdin.readline()
lock.release()
print("released", flush=True)
"""

HOLD_AND_FORK = r"""
import os, sys, time
from kitefleet.home import Home
from kitefleet.locks import instance_lock

lock = instance_lock(Home.resolve(), "Som")
lock.acquire()
pid = os.fork()
if pid == 0:  # a forked child (no exec) that outlives its parent
    sys.stdin.readline()
    os._exit(0)
print(f"held child={pid}", flush=True)
sys.stdin.readline()
"""


@pytest.fixture
def home(tmp_path: Path) -> Home:
    return make_home(tmp_path)


def test_second_instance_refused_with_holder_pid_until_sigkill(home: Home) -> None:
    holder = Child(home, HOLD, "Som", "-")
    try:
        holder.expect("held")
        lock = instance_lock(home, "Som")
        assert lock.path == home.locks_dir("Som") / "instance.lock"
        assert lock_holder(lock.path) == holder.pid
        with pytest.raises(AlreadyRunning) as err:
            lock.acquire()
        assert err.value.holder_pid == holder.pid
        assert err.value.exit_code == ExitCode.ALREADY_RUNNING == 3
        assert str(err.value) == f"Som's worker is already running (pid {holder.pid}, lock {lock.path})"
        assert not lock.held

        holder.kill()
        assert lock_holder(lock.path) is None  # the kernel released it with the process
        with lock:
            assert lock.held
            assert lock_holder(lock.path) == os.getpid()
        assert not lock.held
        assert lock_holder(lock.path) is None
        assert lock.path.exists()  # lock files are never deleted
    finally:
        holder.close()


def test_clean_release_frees_the_lock(home: Home) -> None:
    holder = Child(home, HOLD, "Som", "-")
    try:
        holder.expect("held")
        assert holder.proc.stdin is not None
        holder.proc.stdin.write(b"\n")
        holder.proc.stdin.flush()
        holder.expect("released")
        with instance_lock(home, "Som") as lock:
            assert lock.held
    finally:
        holder.close()


def test_job_locks_independent_per_user_and_job(home: Home) -> None:
    holder = Child(home, HOLD, "Som", "sl_watchdog")
    try:
        holder.expect("held")
        with pytest.raises(AlreadyRunning, match=r"Som's sl_watchdog job is already running \(pid "):
            job_lock(home, "Som", "sl_watchdog").acquire()
        others = [job_lock(home, "Som", "place_orders_daily"), job_lock(home, "Sai", "sl_watchdog"),
                  instance_lock(home, "Som"), instance_lock(home, "Sai")]
        for lock in others:
            lock.acquire()
        assert all(lock.held for lock in others)
        assert others[0].path == home.locks_dir("Som") / "job-place_orders_daily.lock"
        for lock in others:
            lock.release()
    finally:
        holder.close()


def test_forked_child_does_not_keep_lock_alive(home: Home) -> None:
    parent = Child(home, HOLD_AND_FORK)
    child_pid = None
    try:
        line = parent.expect("held")
        child_pid = int(line.split("child=")[1])
        parent.kill()
        os.kill(child_pid, 0)  # the forked child is still alive ...
        with instance_lock(home, "Som") as lock:  # ... yet the lock is free
            assert lock.held
    finally:
        parent.close()  # closing its stdin pipe ends the forked child too
        if child_pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child_pid, 9)


def test_gtt_lock_serialises_processes_and_names_the_holder(tmp_path: Path) -> None:
    import subprocess
    import sys

    from kitefleet.errors import LockTimeout
    from kitefleet.locks import gtt_lock

    home = make_home(tmp_path)
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys; from kitefleet.home import Home; from kitefleet.locks import gtt_lock\n"
         "with gtt_lock(Home.resolve(), 'Som'):\n    print('held', flush=True); sys.stdin.readline()"],
        env={**os.environ, "KITEFLEET_HOME": str(home.root)}, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(LockTimeout, match=f"pid {holder.pid}"), gtt_lock(home, "Som", timeout=0.2):
            pass
        with gtt_lock(home, "Sai", timeout=0.2):  # another user's lock is independent
            pass
    finally:
        assert holder.stdin is not None
        holder.stdin.write("\n")
        holder.stdin.flush()
        holder.wait(timeout=30)
    with gtt_lock(home, "Som", timeout=5):
        pass
