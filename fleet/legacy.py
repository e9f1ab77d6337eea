"""Readers for the legacy single-user system's files (reference/legacy-system.md) that
``migrate-state`` uses, and the pure logic that attributes the shared ``trading_state.json``
positions to users from ``Current_Orders/<User>/*.json``. The shared reading rules (regular files
under a size cap, strict JSON) are here too; ``config.ini`` is read by fleet.legacy_config.

Everything here reads; nothing writes. fleet.migration does the writing.

Legacy files read:

    data/trading_state.json          ``{"meta", "positions": {TICKER: {...}}, "daily_tickers", ...}``,
                                     one file shared by every user, no user field
    Daily/Current_Orders/<User>/*.json
                                     ``orders_<User>_<ts>.json`` (place_orders_daily),
                                     ``orders_consolidated_<User>_<ts>.json``,
                                     ``g_pattern_orders_<User>_<ts>.json`` and the server-sync
                                     variants (``{"metadata": {...}, "orders": [...]}`` with
                                     ``order_id`` "SYNC_<TICKER>_<ts>" and ``tradingsymbol``)
"""

from __future__ import annotations

import json
import math
import os
import re
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kitefleet.errors import ConfigError
from kitefleet.users import RESERVED_NAMES, USER_NAME_RE

#: The largest legacy files read (README: migrate-state; config.ini's is in fleet.legacy_config). A
#: shared trading_state.json or one order file is well under a MB; anything near these sizes is not
#: one of them, and is refused before it is read (``/dev/zero`` once grew until the OOM killer came).
MAX_STATE_BYTES = 16 << 20
MAX_ORDER_FILE_BYTES = 16 << 20
#: Legacy JSON is at most a few levels deep; deeper is refused (a 100,000-deep file was a traceback).
MAX_JSON_DEPTH = 32
#: An NSE equity trading symbol as Kite spells it: INFY, M&M, BAJAJ-AUTO, 3MINDIA.
NSE_SYMBOL_RE = re.compile(r"[A-Z0-9][A-Z0-9&_-]{0,19}")


def _shown(text: str, limit: int = 40) -> str:
    """A value from a legacy file as it may appear in an error: escaped, short."""
    return ascii(text if len(text) <= limit else text[:limit] + "...")


def read_regular_file(path: Path, limit: int, what: str) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes; ConfigError (one line) otherwise.
    Opened without blocking and checked on the open descriptor: a FIFO would hang a plain read,
    a device such as /dev/zero never ends."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such {what}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.strerror})") from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if stat.S_ISDIR(st.st_mode):
            raise ConfigError(f"{path}: is a folder; give the {what} itself")
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError(f"{path}: not a regular file (a FIFO, device or socket); give the {what} itself")
        too_big = ConfigError(f"{path}: larger than {limit // (1 << 20)} MB, the most a {what} may be; "
                              "is this the right file?")
        if st.st_size > limit:
            raise too_big
        try:
            data = f.read(limit + 1)
        except OSError as exc:
            raise ConfigError(f"{path}: cannot be read ({exc.strerror})") from None
    if len(data) > limit:  # it grew while read
        raise too_big
    return data


class _Refused(ValueError):
    pass


def _object_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            # json.loads would keep the last copy silently: a ticker twice is a position lost.
            raise _Refused(f"key {_shown(key)} appears twice in one JSON object (a second copy would "
                           "silently replace the first); merge or remove one by hand")
        out[key] = value
    return out


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _Refused(f"number {_shown(text)} is out of range")
    return value


def _no_constant(name: str) -> Any:
    raise _Refused(f"{name} is not a JSON number")


def _depth_ok(data: Any) -> bool:
    stack = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, (dict, list)):
            if depth > MAX_JSON_DEPTH:
                return False
            children = value.values() if isinstance(value, dict) else value
            stack.extend((child, depth + 1) for child in children)
    return True


def load_legacy_json(path: Path, raw: bytes, what: str) -> Any:
    """Parse a legacy JSON file strictly: duplicate keys, NaN/Infinity, numbers out of range and
    nesting deeper than MAX_JSON_DEPTH are refused with one line (ConfigError, exit 4)."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: {what} is not UTF-8 text") from None
    try:
        data = json.loads(text, object_pairs_hook=_object_without_duplicates, parse_float=_finite,
                          parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"{path}: {what} is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}); "
            "nothing was written; repair it or restore it from a backup") from None
    except _Refused as exc:
        raise ConfigError(f"{path}: {what}: {exc}; nothing was written") from None
    except RecursionError:
        raise ConfigError(f"{path}: {what} is nested more than {MAX_JSON_DEPTH} levels deep; nothing was "
                          "written") from None
    except ValueError as exc:  # an integer of thousands of digits
        raise ConfigError(f"{path}: {what} has a value out of range ({str(exc)[:80]}); nothing was "
                          "written") from None
    if not _depth_ok(data):
        raise ConfigError(f"{path}: {what} is nested more than {MAX_JSON_DEPTH} levels deep; nothing was written")
    return data

# --------------------------------------------------------------------------------------------
# trading_state.json
# --------------------------------------------------------------------------------------------

#: position fields that name the account explicitly (none in the legacy writers; some hand edits)
USER_FIELDS = ("user", "user_name", "username", "user_profile", "account", "account_name")


@dataclass
class LegacyState:
    path: Path
    raw: bytes
    data: dict[str, Any]

    @property
    def positions(self) -> dict[str, dict[str, Any]]:
        return self.data["positions"]

    def other_top_level(self) -> dict[str, Any]:
        return {k: v for k, v in self.data.items() if k != "positions"}


def parse_legacy_state(path: Path, raw: bytes) -> LegacyState:
    """Parse and check the shape; ConfigError (exit 4) for anything unusable."""
    if not raw.strip():
        raise ConfigError(f"{path}: legacy state file is empty; nothing can be migrated from it")
    data = load_legacy_json(path, raw, "legacy state file")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level is a JSON {type(data).__name__}, not an object")
    positions = data.get("positions")
    if positions is None:
        raise ConfigError(f"{path}: no 'positions' object; is this a legacy trading_state.json?")
    if not isinstance(positions, dict):
        raise ConfigError(f"{path}: 'positions' is a JSON {type(positions).__name__}, not an object")
    # Checked before anything is written: a ticker becomes a key of a user's state and a symbol
    # the jobs send to the broker.
    odd = sorted(t for t in positions if not NSE_SYMBOL_RE.fullmatch(t))
    if odd:
        raise ConfigError(f"{path}: position key(s) {', '.join(_shown(t) for t in odd[:5])} are not NSE trading "
                          "symbols (capitals, digits, & _ -, at most 20); correct them by hand; nothing was written")
    bad = sorted(t for t, p in positions.items() if not isinstance(p, dict))
    if bad:
        raise ConfigError(f"{path}: position(s) {', '.join(bad)} are not JSON objects")
    return LegacyState(path=path, raw=raw, data=data)


def read_legacy_state(path: Path) -> LegacyState:
    return parse_legacy_state(path, read_regular_file(path, MAX_STATE_BYTES, "legacy state file"))


# --------------------------------------------------------------------------------------------
# Current_Orders/<User>/*.json
# --------------------------------------------------------------------------------------------


@dataclass
class OrderIndex:
    """Which users' legacy order records mention an order id or a ticker."""

    users: list[str] = field(default_factory=list)
    by_order_id: dict[str, set[str]] = field(default_factory=dict)
    by_ticker: dict[str, set[str]] = field(default_factory=dict)
    files: dict[str, list[Path]] = field(default_factory=dict)
    #: folders whose name is not a valid user name (reported, not used)
    skipped_folders: list[str] = field(default_factory=list)

    def add(self, user: str, order_ids: Iterable[str], tickers: Iterable[str]) -> None:
        for oid in order_ids:
            self.by_order_id.setdefault(oid, set()).add(user)
        for ticker in tickers:
            self.by_ticker.setdefault(ticker, set()).add(user)


def _records(data: Any) -> list[dict[str, Any]]:
    if isinstance(data, list):
        return [r for r in data if isinstance(r, dict)]
    if not isinstance(data, dict):
        return []
    out: list[dict[str, Any]] = []
    for key in ("orders", "positions", "current_positions"):
        value = data.get(key)
        if isinstance(value, list):
            out.extend(r for r in value if isinstance(r, dict))
        elif isinstance(value, dict):
            # The obsolete <api_key>_Current_Positions layout keys records by ticker.
            for ticker, rec in value.items():
                if isinstance(rec, dict):
                    out.append({"ticker": ticker, **rec})
    return out


def record_keys(record: Mapping[str, Any]) -> tuple[set[str], set[str]]:
    """(order ids, tickers) named by one legacy order record."""
    ids = {str(record[k]).strip() for k in ("order_id", "confirmation", "exchange_order_id")
           if record.get(k) not in (None, "")}
    tickers = {str(record[k]).strip().upper() for k in ("ticker", "tradingsymbol", "symbol")
               if isinstance(record.get(k), str) and record[k].strip()}
    return ids, tickers


def read_orders_dir(orders_dir: Path) -> OrderIndex:
    """Index every ``*.json`` in each ``<User>`` folder. A file that does not parse is a ConfigError:
    a silently skipped file could turn a two-user ticker into a one-user one."""
    if not orders_dir.is_dir():
        raise ConfigError(f"{orders_dir}: no such folder (expected the legacy Current_Orders folder)")
    index = OrderIndex()
    for folder in sorted(p for p in orders_dir.iterdir() if p.is_dir()):
        user = folder.name
        if not USER_NAME_RE.match(user) or user.lower() in RESERVED_NAMES:
            index.skipped_folders.append(user)
            continue
        index.users.append(user)
        index.files[user] = []
        for path in sorted(folder.glob("*.json")):
            try:
                data = load_legacy_json(path, read_regular_file(path, MAX_ORDER_FILE_BYTES, "legacy order file"),
                                        "legacy order file")
            except ConfigError as exc:
                raise ConfigError(
                    f"{exc}; repair it or move it out of {orders_dir} (a skipped file could attribute a "
                    "position to the wrong user)") from None
            index.files[user].append(path)
            for record in _records(data):
                ids, tickers = record_keys(record)
                index.add(user, ids, tickers)
    return index


# --------------------------------------------------------------------------------------------
# attribution
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Attribution:
    ticker: str
    user: str | None
    #: "field", "order_id", "ticker", "broker" when assigned; else None
    by: str | None
    evidence: str
    #: the users that matched (more than one: the legacy merged record)
    candidates: tuple[str, ...] = ()

    @property
    def ambiguous(self) -> bool:
        return self.user is None and len(self.candidates) > 1


def _explicit_users(position: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(field name, value) of every explicit user field, in USER_FIELDS order."""
    found = []
    for key in USER_FIELDS:
        value = position.get(key)
        if isinstance(value, str) and value.strip():
            found.append((key, value.strip()))
    return found


def attribute(ticker: str, position: Mapping[str, Any], index: OrderIndex, known_users: Iterable[str],
              holdings: Mapping[str, set[str]] | None = None) -> Attribution:
    """Decide whose position this is, in the issue's order: explicit field; order id, else ticker,
    in exactly one user's records; then (if given) exactly one user's broker holdings. Never guesses."""
    known = sorted(set(known_users) | set(index.users))
    named = _explicit_users(position)
    if len({value.lower() for _, value in named}) > 1:
        # Two fields naming two accounts: whichever came first must not win.
        fields = ", ".join(f"{k}={v}" for k, v in named)
        candidates = tuple(sorted({v for _, v in named}))
        return Attribution(ticker, None, None, f"names more than one user ({fields}); decide by hand", candidates)
    if named:
        key, value = named[0]
        if value in known:
            return Attribution(ticker, value, "field", f"{key}={value}", (value,))
        folded = [u for u in known if u.lower() == value.lower()]
        if len(folded) == 1:
            return Attribution(ticker, folded[0], "field", f"{key}={value}", (folded[0],))
        return Attribution(ticker, None, None, f"{key}={value} names no known user", ())
    confirmation = position.get("confirmation")
    if confirmation not in (None, ""):
        by_id = sorted(index.by_order_id.get(str(confirmation).strip(), set()))
        if len(by_id) == 1:
            return Attribution(ticker, by_id[0], "order_id", f"order id {confirmation} in {by_id[0]}'s orders",
                               tuple(by_id))
        if len(by_id) > 1:
            return Attribution(ticker, None, None,
                               f"order id {confirmation} appears in the orders of {', '.join(by_id)}", tuple(by_id))
    by_ticker = sorted(index.by_ticker.get(ticker.upper(), set()))
    if len(by_ticker) == 1:
        return Attribution(ticker, by_ticker[0], "ticker", f"{ticker} only in {by_ticker[0]}'s orders",
                           tuple(by_ticker))
    if len(by_ticker) > 1:
        return Attribution(ticker, None, None,
                           f"{ticker} is in the orders of {', '.join(by_ticker)} (possibly a merged record "
                           "of several accounts); decide by hand", tuple(by_ticker))
    if holdings is not None:
        holders = sorted(u for u, symbols in holdings.items() if ticker.upper() in symbols)
        if len(holders) == 1:
            return Attribution(ticker, holders[0], "broker", f"{ticker} held only by {holders[0]} at the broker",
                               tuple(holders))
        if len(holders) > 1:
            return Attribution(ticker, None, None, f"{ticker} held at the broker by {', '.join(holders)}",
                               tuple(holders))
        return Attribution(ticker, None, None, f"{ticker} in no order file and in no asked user's holdings", ())
    return Attribution(ticker, None, None, f"{ticker} found in no user's order records", ())
