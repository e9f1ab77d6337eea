"""One user's trading state: a JSON file changed only inside a locked, atomic transaction.

On-disk contract (paths from kitefleet.home.Home):

    data/trading_state_<User>.json      the state; written only by StateStore.transaction(),
                                        atomically (kitefleet.atomic), mode 0600
    data/trading_state_<User>.json.bak  the previous good version, kept by every commit
                                        (a hard link to the replaced file: no extra copy); it
                                        moves only once the new version is in its temp file, so
                                        a commit that fails (a full disk) leaves both as they were
    data/.trading_state_<User>.json.*.tmp   temp files of an interrupted write; removed on open
    data/<User>/locks/state.lock        the transaction lock (filelock.FileLock; the JSON itself is
                                        never locked because os.replace swaps its inode)
    data/<User>/locks/state.lock.pid    pid of the latest lock holder, for diagnostics

File format (legacy keys ``meta``, ``positions``, ``daily_tickers`` keep their meaning; extra
top-level keys written by jobs are preserved)::

    {"schema_version": 2, "user": "Som", "mode": "paper",
     "meta": {"created_at": ISO, "last_updated": ISO, ...},
     "positions": {SYMBOL: {...}}, "daily_tickers": {...}, "intents": {TAG: {...}}, ...}

The whole document is validated against kitefleet.state_schema after migration, on every load and
before every commit; a problem names the place inside the document (``stops.INFY.gtt_id: ...``).
A file that does not parse or validate (or is a directory, or nested too deep to parse), or that
belongs to another user or mode, raises StateError (exit 4) and is never modified, by read() or by
transaction(). So does a missing file whose backup exists (someone deleted it: starting empty would
forget open positions). Readers need no lock: they see the old or the new version, never a torn
one, and never "missing" while the file exists (a reader that found no file looks at the backup
once and, if there is one, reads again).
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from kitefleet import clock
from kitefleet.atomic import atomic_write_bytes, discard_temp, remove_stale_temps, replace_with_temp, write_temp
from kitefleet.errors import LockTimeout, StateError
from kitefleet.home import Home, ensure_dir
from kitefleet.locks import recorded_holder_pid, write_holder_pid
from kitefleet.state_migrations import upgrade
from kitefleet.state_schema import DEEP, document_problem, render_path, too_deep_path
from kitefleet.users import validate_user_name

#: bumped with a forward migration in kitefleet.state_migrations (applied on load)
SCHEMA_VERSION = 3
MODES = ("paper", "live")
_OBJECT_KEYS = ("meta", "positions", "daily_tickers", "intents")
# Waiters poll flock(LOCK_NB); filelock's default 50 ms would cap a contended user at ~20 tx/s.
_LOCK_POLL_S = 0.002


def default_state(user: str, mode: str) -> dict[str, Any]:
    stamp = clock.now().isoformat()
    return {
        "schema_version": SCHEMA_VERSION,
        "user": user,
        "mode": mode,
        "meta": {"created_at": stamp, "last_updated": stamp},
        "positions": {},
        "daily_tickers": {},
        "intents": {},
    }


_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False)


def render(state: dict[str, Any]) -> str:
    """The file text: one top-level key per line, and one entry per line inside top-level objects
    (one position, one intent per line), so a person can read and diff it. Built from compact
    dumps because the C encoder is skipped whenever ``indent`` is set, and indent=2 made JSON
    encoding the largest cost of a transaction."""
    enc = _ENCODER.encode
    lines = []
    for key, value in state.items():
        if isinstance(value, dict) and value:
            # enc({k: v})[1:-1] is '"k": v' with exactly json's key conversion (1 -> "1", True -> "true").
            inner = ",\n".join(f"    {enc({k: v})[1:-1]}" for k, v in value.items())
            lines.append(f"  {enc({key: None})[1:-7]}: {{\n{inner}\n  }}")
        else:
            lines.append(f"  {enc({key: value})[1:-1]}")
    return "{\n" + ",\n".join(lines) + "\n}\n"


def validation_problem(data: Any) -> str | None:
    """Why ``data`` is not a valid state document (ignoring whose it is), or None."""
    if not isinstance(data, dict):
        return f"top level is a JSON {type(data).__name__}, not an object"
    version = data.get("schema_version")
    if "schema_version" not in data:
        return "schema_version is missing"
    if not isinstance(version, int) or isinstance(version, bool):
        return f"schema_version {version!r} is not an integer"
    if version > SCHEMA_VERSION:
        return (f"schema_version {version} is newer than this kitefleet understands ({SCHEMA_VERSION}); "
                "upgrade kitefleet")
    if version != SCHEMA_VERSION:
        return (f"schema_version {version} is not supported (expected {SCHEMA_VERSION}; older versions from 1 "
                "on are migrated on load)")
    for key in ("user", "mode"):
        if not isinstance(data.get(key), str):
            return f"{key!r} is missing or not a string"
    if data["mode"] not in MODES:
        return f"mode {data['mode']!r} is neither 'paper' nor 'live'"
    for key in _OBJECT_KEYS:
        if key in data and not isinstance(data[key], dict):
            return f"{key!r} is a JSON {type(data[key]).__name__}, not an object"
    return document_problem(data)


def _parse(raw: bytes) -> tuple[dict[str, Any] | None, str | None]:
    if not raw.strip():
        return None, "the file is empty"
    try:
        # Decode ourselves: json.loads(bytes) would guess UTF-16/32 from the first bytes.
        data = upgrade(json.loads(raw.decode("utf-8")), SCHEMA_VERSION)
    except UnicodeDecodeError:
        return None, "the file is not UTF-8 text"
    except json.JSONDecodeError as exc:
        return None, f"not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
    except RecursionError:
        where = too_deep_path(raw.decode("utf-8"))
        if where is None:
            return None, "the JSON is nested too deep to read"
        return None, (f"{render_path(where)}: nested more than {DEEP} levels deep, too deep to read "
                      "(a state document is about ten)")
    problem = validation_problem(data)
    return (None, problem) if problem else (data, None)


class StateStore:
    """One user's state file in one mode. Safe across processes and threads: every store for the
    same user in a process shares one filelock singleton (thread-local holds), so two stores or
    two threads queue on the lock instead of deadlocking or overlapping."""

    def __init__(self, home: Home, user: str, mode: str, *, lock_timeout: float = 30.0) -> None:
        validate_user_name(user)
        if mode not in MODES:
            raise ValueError(f"mode must be 'paper' or 'live', not {mode!r}")
        self.home, self.user, self.mode = home, user, mode
        self.lock_timeout = lock_timeout
        self.path: Path = home.state_file(user)
        self.lock_path: Path = home.locks_dir(user) / "state.lock"
        self.backup_path: Path = self.path.with_name(self.path.name + ".bak")
        self._lock_obj: FileLock | None = None
        self._lock_pid: int | None = None
        self._guard = threading.Lock()
        self._temps_cleaned = False
        ensure_dir(self.path.parent)
        ensure_dir(self.lock_path.parent)
        self._clean_temps_if_free()

    # --- locking ---------------------------------------------------------------------------
    def _lock(self) -> FileLock:
        # A FileLock inherited across fork() refuses to work; build (look up) a fresh one per pid.
        pid = os.getpid()
        with self._guard:
            if self._lock_obj is None or self._lock_pid != pid:
                self._lock_obj = FileLock(str(self.lock_path), is_singleton=True)
                self._lock_pid = pid
            return self._lock_obj

    def _acquire(self) -> FileLock:
        lock = self._lock()
        if lock.is_locked:
            # The singleton is reentrant per thread: a nested transaction would commit and then be
            # overwritten by the outer block's stale copy, a silent lost update.
            raise RuntimeError(
                f"nested StateStore.transaction() for {self.user} in one thread; finish the outer one first"
            )
        try:
            lock.acquire(timeout=self.lock_timeout, poll_interval=_LOCK_POLL_S)
        except Timeout:
            pid = recorded_holder_pid(self.lock_path)
            holder = f"held by pid {pid}" if pid is not None else "holder unknown"
            raise LockTimeout(
                f"{self.user}'s state lock {self.lock_path} not acquired within {self.lock_timeout:g} s "
                f"({holder}); is another job stuck?"
            ) from None
        write_holder_pid(self.lock_path)
        return lock

    def _clean_temps_if_free(self) -> None:
        # Temp files are only created under the lock, so any seen while we hold it are stale;
        # deleting one outside the lock could break a live writer's os.replace.
        lock = self._lock()
        try:
            lock.acquire(blocking=False)
        except Timeout:
            return  # busy: the first transaction cleans up instead
        try:
            remove_stale_temps(self.path)
            self._temps_cleaned = True
        finally:
            lock.release()

    # --- loading ---------------------------------------------------------------------------
    def _read_raw(self) -> bytes | None:
        try:
            with open(self.path, "rb") as fh:
                return fh.read()
        except FileNotFoundError:
            return None
        except IsADirectoryError:
            raise self._unusable(f"it is a directory, not a file (move it away first: mv {self.path} "
                                 f"{self.path}.dir)") from None
        except OSError as exc:
            raise self._unusable(f"it cannot be read ({exc.strerror})") from None

    def _load(self, raw: bytes | None) -> dict[str, Any]:
        if raw is None:
            # One look at the backup decides. Once a backup exists the file exists too (commits
            # only ever replace it), so a lock-free reader that found no file before a writer's
            # first commit and sees a backup now finds the file on a second read; only a file
            # still missing after that is really gone. (Checking the backup again instead of
            # reading the file again told a reader "missing" while a valid file existed.)
            if not self.backup_path.exists():
                return default_state(self.user, self.mode)
            raw = self._read_raw()
            if raw is None:
                raise StateError(
                    f"state file {self.path} is missing but its backup {self.backup_path} exists; "
                    f"restore it (cp {self.backup_path} {self.path}) or move the backup away to start empty"
                )
        data, problem = _parse(raw)
        if data is None:
            raise self._unusable(problem or "unknown problem")
        self._check_owner(data)
        return data

    def _check_owner(self, data: dict[str, Any]) -> None:
        if data["user"] != self.user or data["mode"] != self.mode:
            raise StateError(
                f"state file {self.path} belongs to user {data['user']} / mode {data['mode']}, "
                f"this process is {self.user}/{self.mode}; refusing to merge, file left untouched "
                f"(if the mode changed on purpose, move the file away; {self._backup_note()})"
            )

    def _backup_note(self) -> str:
        try:
            raw = self.backup_path.read_bytes()
        except FileNotFoundError:
            return f"no backup exists at {self.backup_path}"
        except OSError as exc:
            return f"backup {self.backup_path} cannot be read ({exc.strerror})"
        data, problem = _parse(raw)
        if data is None:
            return f"backup {self.backup_path} is unusable too ({problem})"
        saved = (data.get("meta") or {}).get("last_updated", "unknown time")
        return f"last good backup: {self.backup_path} (last_updated {saved})"

    def _unusable(self, reason: str) -> StateError:
        if self.backup_path.exists():
            todo = (f"inspect both, then restore with: cp {self.backup_path} {self.path} "
                    "(or repair the file by hand)")
        else:
            todo = "repair the file by hand, or move it away to start from an empty state"
        return StateError(
            f"state file {self.path} is unusable: {reason}; it was left untouched; "
            f"{self._backup_note()}; {todo}"
        )

    # --- public ----------------------------------------------------------------------------
    def read(self) -> dict[str, Any]:
        """Lock-free validated snapshot (default state if no file yet). Never sees a torn file."""
        return self._load(self._read_raw())

    @contextmanager
    def transaction(self) -> Iterator[dict[str, Any]]:
        """Take the user's state lock (filelock.FileLock on the separate lock file, never the JSON),
        load (or create the default state), yield the mutable dict, validate, and on success write
        atomically (keep the previous good version as the backup first); write nothing if the block
        raises. meta.last_updated is stamped with kitefleet.clock.now().isoformat()."""
        lock = self._acquire()
        try:
            if not self._temps_cleaned:
                remove_stale_temps(self.path)
                self._temps_cleaned = True
            raw = self._read_raw()
            state = self._load(raw)
            yield state
            self._commit(state, had_file=raw is not None)
        finally:
            lock.release()

    def _commit(self, state: dict[str, Any], *, had_file: bool) -> None:
        problem = validation_problem(state)
        if problem:
            raise StateError(f"refusing to write {self.path}: the new state is invalid ({problem}); "
                             "nothing was written")
        self._check_owner(state)
        meta = state.setdefault("meta", {})
        meta["last_updated"] = clock.now().isoformat()
        try:
            text = render(state)
        except (TypeError, ValueError, RecursionError) as exc:
            raise StateError(f"refusing to write {self.path}: the new state is not JSON ({exc}); "
                             "nothing was written") from None
        # The new version goes to disk before the backup is rotated: a write that fails (a full
        # disk) leaves the file and the previous good backup as they were.
        tmp = write_temp(self.path, text.encode("utf-8"))
        try:
            if had_file:
                self._keep_backup()
        except BaseException:
            discard_temp(tmp)
            raise
        replace_with_temp(tmp, self.path)

    def _keep_backup(self) -> None:
        # The committed file is never modified in place (only replaced), so a hard link to it is a
        # free, stable copy of the previous version. Its temp name matches the stale-temp pattern.
        tmp = self.path.with_name(f".{self.path.name}.bak.tmp")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        try:
            os.link(self.path, tmp)
        except OSError:
            # No hard links here (some FUSE/SMB mounts): copy instead.
            atomic_write_bytes(self.backup_path, self.path.read_bytes())
            return
        os.replace(tmp, self.backup_path)
        # Made durable by the folder fsync of the replace that follows (same folder).

    def __repr__(self) -> str:
        return f"StateStore({self.user!r}, {self.mode!r}, {str(self.path)!r})"
