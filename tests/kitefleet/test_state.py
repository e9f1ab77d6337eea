"""StateStore in one process: format, backups, refusals, temp cleanup, threads."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest

from kitefleet.errors import LockTimeout, StateError
from kitefleet.exitcodes import ExitCode
from kitefleet.home import Home
from kitefleet.locks import lock_holder
from kitefleet.state import SCHEMA_VERSION, StateStore, default_state, render
from tests.support.homes import make_home


@pytest.fixture
def home(tmp_path: Path) -> Home:
    return make_home(tmp_path)


def _bytes(path: Path) -> bytes:
    return path.read_bytes()


# --- format and commit -----------------------------------------------------------------------
def test_default_state_shape() -> None:
    st = default_state("Som", "paper")
    assert st["schema_version"] == SCHEMA_VERSION == 3
    assert (st["user"], st["mode"]) == ("Som", "paper")
    assert set(st["meta"]) == {"created_at", "last_updated"}
    assert st["meta"]["created_at"].endswith("+05:30")
    assert st["positions"] == st["daily_tickers"] == st["intents"] == {}


def test_paths(home: Home) -> None:
    store = StateStore(home, "Som", "paper")
    assert store.path == home.root / "data" / "trading_state_Som.json"
    assert store.lock_path == home.root / "data" / "Som" / "locks" / "state.lock"
    assert store.backup_path == home.root / "data" / "trading_state_Som.json.bak"
    assert oct(store.lock_path.parent.stat().st_mode & 0o777) == oct(0o700)


def test_read_without_file_is_default_and_creates_nothing(home: Home) -> None:
    store = StateStore(home, "Som", "live")
    st = store.read()
    assert (st["user"], st["mode"], st["positions"]) == ("Som", "live", {})
    assert not store.path.exists()


def test_transaction_commits_preserves_extra_keys_and_keeps_backup(home: Home) -> None:
    store = StateStore(home, "Som", "paper")
    with store.transaction() as st:
        st["positions"]["ABCLTD"] = {"type": "LONG", "quantity": 120, "product_type": "CNC"}
        st["preserve_positions"] = True
    first = _bytes(store.path)
    assert not store.backup_path.exists()  # nothing to back up on the first commit
    assert oct(store.path.stat().st_mode & 0o777) == oct(0o600)

    with store.transaction() as st:
        assert st["positions"]["ABCLTD"]["quantity"] == 120
        assert st["preserve_positions"] is True
        st["positions"]["ABCLTD"]["quantity"] = 60
    assert _bytes(store.backup_path) == first  # the previous good version
    on_disk = json.loads(store.path.read_text(encoding="utf-8"))
    assert on_disk == store.read()
    assert on_disk["positions"]["ABCLTD"]["quantity"] == 60
    assert on_disk["preserve_positions"] is True
    assert on_disk["meta"]["last_updated"] >= on_disk["meta"]["created_at"]
    assert sorted(p.name for p in store.path.parent.iterdir()) == [
        "Som", "trading_state_Som.json", "trading_state_Som.json.bak"]


def test_failing_block_writes_nothing(home: Home) -> None:
    store = StateStore(home, "Som", "paper")
    with pytest.raises(KeyError), store.transaction() as st:
        st["positions"]["X"] = {}
        raise KeyError("boom")
    assert not store.path.exists()  # not even the default state

    with store.transaction() as st:
        st["positions"]["A"] = {"quantity": 1}
    before = _bytes(store.path)
    with pytest.raises(RuntimeError), store.transaction() as st:
        st["positions"]["A"]["quantity"] = 999
        raise RuntimeError("job failed")
    assert _bytes(store.path) == before
    assert not store.backup_path.exists()
    assert store.read()["positions"]["A"]["quantity"] == 1


@pytest.mark.parametrize("mutate", [
    lambda st: st.__setitem__("positions", []),
    lambda st: st.__setitem__("schema_version", SCHEMA_VERSION + 1),
    lambda st: st.__setitem__("user", "Sai"),
    lambda st: st.__setitem__("mode", "live"),
    lambda st: st["positions"].__setitem__("X", {"ltp": float("nan")}),
    lambda st: st["positions"].__setitem__("X", {"when": object()}),
])
def test_invalid_new_state_writes_nothing(home: Home, mutate) -> None:
    store = StateStore(home, "Som", "paper")
    with store.transaction() as st:
        st["positions"]["A"] = {"quantity": 1}
    before = _bytes(store.path)
    with pytest.raises(StateError, match=r"nothing was written|belongs to user"), store.transaction() as st:
        mutate(st)
    assert _bytes(store.path) == before
    assert not store.backup_path.exists()


# --- refusals: corrupt, invalid, mismatched ---------------------------------------------------
CORRUPT = [
    (b"{\"schema_version\": 1, \"user\": \"Som\", \"mo", "not valid JSON"),
    (b"", "the file is empty"),
    (b"\xff\xfe{}", "not UTF-8"),
    (b"[1, 2]", "top level is a JSON list"),
    (b'{"user": "Som", "mode": "paper"}', "schema_version is missing"),
    (b'{"schema_version": 99, "user": "Som", "mode": "paper"}', "newer than this kitefleet understands"),
    (b'{"schema_version": "1", "user": "Som", "mode": "paper"}', "is not an integer"),
    (b'{"schema_version": 1, "user": "Som", "mode": "paper", "positions": []}', "'positions' is a JSON list"),
    (b'{"schema_version": 1, "user": "Som", "mode": "paper", "meta": "x"}', "'meta' is a JSON str"),
    (b'{"schema_version": 1, "user": 7, "mode": "paper"}', "'user' is missing or not a string"),
    (b'{"schema_version": 1, "user": "Som", "mode": "demo"}', "neither 'paper' nor 'live'"),
]


@pytest.mark.parametrize(("content", "reason"), CORRUPT)
def test_corrupt_file_refused_and_untouched(home: Home, content: bytes, reason: str) -> None:
    store = StateStore(home, "Som", "paper")
    store.path.write_bytes(content)
    with pytest.raises(StateError) as err:
        store.read()
    msg = str(err.value)
    assert "\n" not in msg
    assert str(store.path) in msg and reason in msg
    assert f"no backup exists at {store.backup_path}" in msg
    assert "move it away" in msg
    assert err.value.exit_code == ExitCode.CONFIG == 4

    entered = False
    with pytest.raises(StateError, match="unusable"), store.transaction():
        entered = True
    assert not entered
    assert store.path.read_bytes() == content
    assert not store.backup_path.exists()


def test_corrupt_file_names_last_good_backup(home: Home) -> None:
    store = StateStore(home, "Som", "paper")
    for qty in (1, 2):
        with store.transaction() as st:
            st["positions"]["A"] = {"quantity": qty}
    backup = _bytes(store.backup_path)
    store.path.write_bytes(b'{"schema_version": 1, "user": "Som", "mode": "paper", "positions": {"A": {"qu')
    bad = _bytes(store.path)
    with pytest.raises(StateError) as err, store.transaction():
        pass
    msg = str(err.value)
    assert f"last good backup: {store.backup_path}" in msg
    assert f"cp {store.backup_path} {store.path}" in msg
    assert _bytes(store.path) == bad and _bytes(store.backup_path) == backup
    # The backup is what the message promises: a valid earlier version.
    store.path.write_bytes(backup)
    assert store.read()["positions"]["A"]["quantity"] == 1


@pytest.mark.parametrize(("owner", "mode", "text"), [
    ("Sai", "paper", "belongs to user Sai / mode paper, this process is Som/paper"),
    ("Som", "live", "belongs to user Som / mode live, this process is Som/paper"),
])
def test_mismatched_file_refused_and_untouched(home: Home, owner: str, mode: str, text: str) -> None:
    other = default_state(owner, mode)
    other["positions"]["XYZ"] = {"quantity": 5}
    content = json.dumps(other).encode()
    store = StateStore(home, "Som", "paper")
    store.path.write_bytes(content)
    for attempt in (store.read, lambda: store.transaction().__enter__()):
        with pytest.raises(StateError) as err:
            attempt()
        assert text in str(err.value) and str(store.path) in str(err.value)
        assert "\n" not in str(err.value)
        assert err.value.exit_code == ExitCode.CONFIG
    assert store.path.read_bytes() == content
    assert lock_holder(store.lock_path) is None  # released although the block never ran


def test_missing_file_with_backup_is_refused(home: Home) -> None:
    store = StateStore(home, "Som", "paper")
    for qty in (1, 2):
        with store.transaction() as st:
            st["positions"]["A"] = {"quantity": qty}
    store.path.unlink()
    with pytest.raises(StateError, match="is missing but its backup"):
        store.read()
    with pytest.raises(StateError, match="is missing but its backup"), store.transaction():
        pass
    assert not store.path.exists()


def test_users_never_touch_each_other(home: Home) -> None:
    som, sai = StateStore(home, "Som", "paper"), StateStore(home, "Sai", "live")
    for i in range(3):
        with sai.transaction() as st:
            st["counter"] = i
    sai_file, sai_bak = _bytes(sai.path), _bytes(sai.backup_path)
    for i in range(5):
        with som.transaction() as st:
            st["counter"] = i
    assert (_bytes(sai.path), _bytes(sai.backup_path)) == (sai_file, sai_bak)
    assert som.read()["counter"] == 4 and sai.read()["counter"] == 2


# --- temp files -------------------------------------------------------------------------------
def test_stale_temps_removed_on_open(home: Home) -> None:
    data = home.data_dir
    stale = [data / ".trading_state_Som.json.k3j4h5.tmp", data / ".trading_state_Som.json.bak.tmp"]
    foreign = data / ".trading_state_Sai.json.zz.tmp"
    for p in [*stale, foreign]:
        p.write_text("{half")
    StateStore(home, "Som", "paper")
    assert not any(p.exists() for p in stale)
    assert foreign.exists()


def test_stale_temps_removed_by_first_transaction_when_lock_busy(home: Home) -> None:
    holder = StateStore(home, "Som", "paper")
    stale = home.data_dir / ".trading_state_Som.json.abc.tmp"
    entered = threading.Event()
    done = threading.Event()

    def hold() -> None:
        with holder.transaction():
            entered.set()
            done.wait(10)

    t = threading.Thread(target=hold)
    t.start()
    assert entered.wait(10)
    stale.write_text("{half")  # appears while a writer is active: must not be touched now
    store = StateStore(home, "Som", "paper")
    assert stale.exists()
    done.set()
    t.join(10)
    with store.transaction() as st:
        st["n"] = 1
    assert not stale.exists()


# --- threads and several stores in one process ------------------------------------------------
def test_two_stores_two_threads_no_lost_update(home: Home) -> None:
    stores = [StateStore(home, "Som", "paper"), StateStore(home, "Som", "paper")]
    per_thread = 150

    def work(store: StateStore) -> None:
        for _ in range(per_thread):
            with store.transaction() as st:
                st["counter"] = st.get("counter", 0) + 1

    threads = [threading.Thread(target=work, args=(stores[i % 2],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert stores[0].read()["counter"] == 4 * per_thread


def test_nested_transaction_same_user_same_thread_is_refused(home: Home) -> None:
    a, b, other = StateStore(home, "Som", "paper"), StateStore(home, "Som", "paper"), StateStore(
        home, "Sai", "paper")
    with a.transaction() as st:
        st["n"] = 1
        with pytest.raises(RuntimeError, match="nested"), b.transaction():
            pass
        with other.transaction() as ost:  # another user's lock is independent
            ost["n"] = 2
    assert a.read()["n"] == 1 and other.read()["n"] == 2


def test_lock_timeout_in_process_names_this_pid(home: Home) -> None:
    holder = StateStore(home, "Som", "paper")
    waiter = StateStore(home, "Som", "paper", lock_timeout=0.2)
    entered, done = threading.Event(), threading.Event()

    def hold() -> None:
        with holder.transaction():
            entered.set()
            done.wait(10)

    t = threading.Thread(target=hold)
    t.start()
    try:
        assert entered.wait(10)
        with pytest.raises(LockTimeout) as err, waiter.transaction():
            pass
        assert f"held by pid {os.getpid()}" in str(err.value)
        assert str(waiter.lock_path) in str(err.value)
    finally:
        done.set()
        t.join(10)
    with waiter.transaction() as st:  # free again
        st["n"] = 1


def test_constructor_rejects_bad_input(home: Home) -> None:
    with pytest.raises(ValueError):
        StateStore(home, "Som", "demo")
    with pytest.raises(Exception, match="invalid user name"):
        StateStore(home, "../etc", "paper")


@pytest.mark.parametrize("state", [
    default_state("Som", "paper"),
    {**default_state("Som", "paper"), "positions": {"A": {"q": 1, "gtt": {"id": 2}}, "B": {}},
     "daily_tickers": {"long": ["A"], "short": []}, "extra": [1, "é", None], "flag": True, "empty": {}},
    {"schema_version": 1, "user": "Som", "mode": "live", "intents": {"t1": {"n": 1.5}}, "nested": {"1": {"2": 3}}},
])
def test_render_round_trips_and_is_line_per_entry(state: dict) -> None:
    text = render(state)
    assert json.loads(text) == state
    assert text.count("\n") >= len(state) + 1
    if state.get("positions"):
        assert '\n    "A": {"q": 1, "gtt": {"id": 2}},\n' in text


def test_render_matches_json_key_conversion() -> None:
    state = {"schema_version": 1, "user": "Som", "mode": "paper", "positions": {7: {"x": None}}}
    assert json.loads(render(state)) == json.loads(json.dumps(state))
    with pytest.raises(ValueError):
        render({"positions": {"A": {"ltp": float("inf")}}})


# --- issue 13 bug 1: a lock-free reader racing a user's first commits ------------------------
class _SteppedPath(type(Path())):  # type: ignore[misc]
    """The reader's backup path: every look at it is one step of the reader (see below)."""

    on_look: object = None

    def exists(self, *args: object, **kwargs: object) -> bool:
        self.on_look()  # type: ignore[operator]
        return super().exists(*args, **kwargs)


def _reader_steps(home: Home, commit_before: dict[int, int]) -> tuple[dict, int]:
    """``read()`` by a lock-free reader whose every look at the disk (a read of the file, a look
    at the backup) is a step; before step ``k`` a writer in this process commits
    ``commit_before[k]`` times. Returns what the reader got and how many steps it took."""
    writer = StateStore(home, "Som", "paper")
    steps = 0

    def step() -> None:
        nonlocal steps
        for _ in range(commit_before.get(steps, 0)):
            with writer.transaction() as st:
                st["counter"] = st.get("counter", 0) + 1
        steps += 1

    class SteppedReader(StateStore):
        def _read_raw(self) -> bytes | None:
            step()
            return super()._read_raw()

    reader = SteppedReader(home, "Som", "paper")
    backup = _SteppedPath(reader.backup_path)
    backup.on_look = step
    reader.backup_path = backup
    return reader.read(), steps


def test_state_read_race_reader_before_first_commit_is_never_told_missing(tmp_path: Path) -> None:
    """Today's interleaving (issue 13): the reader finds no file; the first commit lands; the
    reader sees no backup yet; the second commit makes the backup; a second look at the backup
    said "missing but its backup exists" (StateError, exit 4) while a valid file existed."""
    got, _ = _reader_steps(make_home(tmp_path), {1: 1, 2: 1})
    assert got.get("counter", 0) in (0, 1, 2)


@pytest.mark.parametrize("first", range(4))
def test_state_read_race_every_interleaving_gives_a_committed_version(tmp_path: Path, first: int) -> None:
    """The first two commits of a user at every pair of points of the reader's steps: the reader
    gets the empty default or a version that was committed, never an error."""
    for second in range(first, 5):
        home = make_home(tmp_path / f"{first}-{second}")
        commits = {first: 1}
        commits[second] = commits.get(second, 0) + 1
        got, steps = _reader_steps(home, commits)
        assert got.get("counter", 0) <= 2 and got["user"] == "Som", (first, second, steps)
