"""State under contention: several processes read-increment-write one user's counter.

Each writer also counts its own commits under its pid, so a lost update shows both in the total
and in which writer lost it. A lock-free reader runs alongside and must never see a torn or
backwards file. Another user's file and backup must stay byte for byte unchanged.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from kitefleet.errors import LockTimeout
from kitefleet.home import Home
from kitefleet.state import StateStore
from tests.support.child import Child
from tests.support.homes import make_home

SOAK = os.environ.get("KITEFLEET_SOAK") == "1"

WRITER = r"""
import os, sys
from kitefleet.home import Home
from kitefleet.state import StateStore

store = StateStore(Home.resolve(), sys.argv[1], "paper")
print("ready", flush=True)
sys.stdin.readline()  # the parent's start signal, so that all writers really overlap
me = str(os.getpid())
for _ in range(int(sys.argv[2])):
    with store.transaction() as st:
        st["counter"] = st.get("counter", 0) + 1
        mine = st.setdefault("by_writer", {})
        mine[me] = mine.get(me, 0) + 1
print("done", flush=True)
"""

READER = r"""
import sys
from kitefleet.home import Home
from kitefleet.state import StateStore

store = StateStore(Home.resolve(), sys.argv[1], "paper")
target = int(sys.argv[2])
print("ready", flush=True)
reads = last = 0
while last < target:
    value = store.read().get("counter", 0)  # raises on a torn file
    if value < last:
        print(f"backwards {last} -> {value}", flush=True)
        sys.exit(1)
    last, reads = value, reads + 1
print(f"reads {reads}", flush=True)
"""


def _run_contention(home: Home, writers: int, per_writer: int) -> None:
    sai = StateStore(home, "Sai", "paper")
    for i in range(2):
        with sai.transaction() as st:
            st["counter"] = i
    sai_file, sai_backup = sai.path.read_bytes(), sai.backup_path.read_bytes()

    total = writers * per_writer
    procs = [Child(home, WRITER, "Som", str(per_writer)) for _ in range(writers)]
    reader = Child(home, READER, "Som", str(total))
    try:
        for child in [*procs, reader]:
            child.expect("ready", timeout=30)
        for child in procs:
            assert child.proc.stdin is not None
            child.proc.stdin.write(b"go\n")
            child.proc.stdin.flush()
        for child in procs:
            child.expect("done", timeout=120)
            assert child.finish() == 0, child.stderr()
        line = reader.readline(timeout=60)
        assert line.startswith("reads "), line
        assert reader.finish() == 0, reader.stderr()
    finally:
        for child in [*procs, reader]:
            child.close()

    state = StateStore(home, "Som", "paper").read()
    assert state["counter"] == total
    assert sorted(state["by_writer"]) == sorted(str(c.pid) for c in procs)
    assert set(state["by_writer"].values()) == {per_writer}
    assert json.loads(home.state_file("Som").read_bytes()) == state
    assert (sai.path.read_bytes(), sai.backup_path.read_bytes()) == (sai_file, sai_backup)


def test_four_processes_no_lost_update(tmp_path: Path) -> None:
    _run_contention(make_home(tmp_path), writers=4, per_writer=100)


@pytest.mark.soak
@pytest.mark.skipif(not SOAK, reason="set KITEFLEET_SOAK=1 for the long contention soak")
def test_contention_soak(tmp_path: Path) -> None:
    _run_contention(make_home(tmp_path), writers=8, per_writer=500)


HOLDER = r"""
import sys
from kitefleet.home import Home
from kitefleet.state import StateStore

store = StateStore(Home.resolve(), "Som", "paper")
with store.transaction() as st:
    print("held", flush=True)
    sys.stdin.readline()
    st["holder"] = "done"
print("released", flush=True)
"""


def test_lock_timeout_names_holder_pid(tmp_path: Path) -> None:
    home = make_home(tmp_path)
    holder = Child(home, HOLDER)
    try:
        holder.expect("held")
        store = StateStore(home, "Som", "paper", lock_timeout=0.3)
        with pytest.raises(LockTimeout) as err, store.transaction():
            pass
        msg = str(err.value)
        assert f"held by pid {holder.pid}" in msg
        assert str(store.lock_path) in msg and "0.3 s" in msg
        assert "\n" not in msg
        assert store.read()["positions"] == {}  # readers need no lock
        assert holder.proc.stdin is not None
        holder.proc.stdin.write(b"\n")
        holder.proc.stdin.flush()
        holder.expect("released")
        with store.transaction() as st:
            assert st["holder"] == "done"
    finally:
        holder.close()


def test_waiter_gets_lock_when_holder_is_killed(tmp_path: Path) -> None:
    home = make_home(tmp_path)
    holder = Child(home, HOLDER)
    try:
        holder.expect("held")
        before = StateStore(home, "Som", "paper").read()
        holder.kill()
        store = StateStore(home, "Som", "paper", lock_timeout=5)
        with store.transaction() as st:  # kernel dropped the dead holder's flock
            assert "holder" not in st
            st["n"] = 1
        assert before["positions"] == {}
    finally:
        holder.close()
