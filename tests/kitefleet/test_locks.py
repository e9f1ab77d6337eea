"""kitefleet/locks.py in one process: a second lock object is refused; holder and names."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kitefleet.errors import AlreadyRunning, UsageError
from kitefleet.home import Home
from kitefleet.locks import ProcessLock, instance_lock, job_lock, lock_holder, pid_sidecar
from tests.support.homes import make_home


@pytest.fixture
def home(tmp_path: Path) -> Home:
    return make_home(tmp_path)


def test_second_object_in_same_process_is_refused(home: Home) -> None:
    first = instance_lock(home, "Som")
    first.acquire()
    first.acquire()  # idempotent on the holding object
    try:
        with pytest.raises(AlreadyRunning) as err:
            instance_lock(home, "Som").acquire()
        assert err.value.holder_pid == os.getpid()
    finally:
        first.release()
    assert not first.held
    first.release()  # releasing twice is harmless


def test_lock_holder_and_names(home: Home, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "x.lock"
    assert lock_holder(missing) is None
    assert not missing.parent.exists()  # probing never creates anything
    lock = ProcessLock(tmp_path / "locks" / "a.lock", "test lock")
    with lock:
        assert pid_sidecar(lock.path).read_text().strip() == str(os.getpid())
    # A stale sidecar is not trusted: the lock is free.
    assert lock_holder(lock.path) is None
    with pytest.raises(UsageError):
        job_lock(home, "Som", "../x")
    with pytest.raises(UsageError):
        instance_lock(home, "example")
