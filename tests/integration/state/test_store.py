"""StateStore across processes: a forked child, and a commit that fails keeps the previous good backup."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from kitefleet.home import Home
from kitefleet.state import StateStore
from tests.support.homes import make_home


@pytest.fixture
def home(tmp_path: Path) -> Home:
    return make_home(tmp_path)


def _bytes(path: Path) -> bytes:
    return path.read_bytes()


def test_store_usable_in_forked_child(home: Home) -> None:
    store = StateStore(home, "Som", "paper")
    with store.transaction() as st:
        st["counter"] = 1
    pid = os.fork()
    if pid == 0:  # child: the inherited lock object must be replaced, not reused
        code = 1
        try:
            with store.transaction() as st:
                st["counter"] += 1
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    with store.transaction() as st:
        st["counter"] += 1
    assert store.read()["counter"] == 3


# --- issue 15 item 3: a commit that fails keeps the previous good backup ---------------------
FILL_DISK = r"""
import resource, signal, sys
from kitefleet.home import Home
from kitefleet.state import StateStore

store = StateStore(Home.resolve(), "Som", "paper")
# A real failing write: files of this process may not grow past 64 KiB (EFBIG, as a full disk
# gives ENOSPC, from the write of the new version). SIGXFSZ would kill instead of failing.
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
try:
    with store.transaction() as st:
        st["counter"] += 1
        st["blob"] = "x" * 200_000
except OSError as exc:
    print("failed", exc.errno, flush=True)
    sys.exit(0)
print("written", flush=True)
"""


def test_failed_commit_keeps_previous_good_backup(home: Home) -> None:
    """Issue 15 (a full disk): the backup was rotated before the new version was written, so a
    failed write left ``.bak`` a hard link to the current file and the previous version gone."""
    import errno

    from tests.support.child import Child

    store = StateStore(home, "Som", "paper")
    for value in (1, 2, 3):
        with store.transaction() as st:
            st["counter"] = value
    current, previous = _bytes(store.path), _bytes(store.backup_path)
    assert json.loads(previous)["counter"] == 2

    child = Child(home, FILL_DISK)
    try:
        assert child.expect("failed") == f"failed {errno.EFBIG}"
        assert child.proc.wait(timeout=30) == 0, child.stderr()
    finally:
        child.close()
    assert _bytes(store.path) == current  # the commit did not happen
    assert _bytes(store.backup_path) == previous  # and the previous good version is still there
    assert not os.path.samefile(store.path, store.backup_path)
    assert sorted(p.name for p in store.path.parent.iterdir() if p.name.endswith(".tmp")) == []
