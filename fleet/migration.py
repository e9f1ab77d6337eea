"""The migration of the legacy shared ``trading_state.json`` into per-user state files
(``orchestrator.py migrate-state``): attribution of each position (fleet.legacy.attribute), the
plan, the writes, and the conservation check that reads the outputs back.

On-disk contract (all under the home's ``data/``):

    migration/trading_state.legacy-<YYYYMMDD_HHMMSS>.json
        byte-for-byte copy of the legacy file, made before anything else is written (an identical
        earlier copy is reused, so a second run adds no file). The legacy file itself is only read.
    migration/unassigned_<YYYYMMDD_HHMMSS>.json
        ``{"legacy_file", "legacy_sha256", "backup", "created_at", "positions": {TICKER:
        {"reason", "candidates": [users], "record": <the legacy record, unchanged>}}}`` for every
        position not attributed to exactly one user, and for conflicts (the user's state already
        holds a different record for the ticker: it is kept, never overwritten). Written only when
        non-empty; an identical earlier file is reused.
    trading_state_<User>.json
        through kitefleet.state.StateStore (the user's lock, atomic write), with mode = that user's
        current TRADER_MODE, told by a process of that user (``whoami``): this command never reads
        an env file, so the orchestrator holds no user's secret. New tickers are added with the
        legacy record unchanged (every legacy field is kept) plus
        ``legacy_migration: {source, sha256, attributed_by, evidence}``;
        existing tickers are never overwritten. Only users that receive positions are touched.

Attribution (fleet.legacy.attribute), in order: an explicit user/account field; the order id
(``confirmation``), else the ticker, found in exactly one user's ``Current_Orders/<User>/*.json``;
with ``--ask-broker``, exactly one user's broker holdings (fetched by a process of that user).
Two users (the legacy merged record) or none: unassigned with the reason. A user without a valid
env file gets nothing: the position is unassigned with that reason.

Re-running is safe: a ticker already carrying this legacy file's hash (or an identical record) is
"already migrated", so a second run writes nothing.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fleet import probe
from fleet.legacy import Attribution, LegacyState, OrderIndex, attribute, read_orders_dir
from kitefleet import clock
from kitefleet.atomic import atomic_write_bytes, atomic_write_json
from kitefleet.errors import ConfigError, KitefleetError, StateError
from kitefleet.home import Home, ensure_dir
from kitefleet.state import StateStore
from kitefleet.state_migrations import MIGRATION_MARKER, migrated_lot
from kitefleet.users import list_users, validate_user_name

MARKER = MIGRATION_MARKER


@dataclass
class Outcome:
    ticker: str
    attribution: Attribution
    #: "new" (to write), "present" (already migrated), "unassigned", "conflict"
    status: str
    user: str | None = None
    reason: str = ""


@dataclass
class Plan:
    legacy: LegacyState
    sha256: str
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    modes: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def by_status(self, *statuses: str) -> list[Outcome]:
        return [o for o in self.outcomes.values() if o.status in statuses]


# --- pure helpers --------------------------------------------------------------------------------


def same_record(existing: dict[str, Any], legacy_record: dict[str, Any], sha256: str) -> bool:
    """True when ``existing`` is this legacy record already migrated (possibly updated since by a
    worker: then it carries this file's hash) or an identical copy of it."""
    marker = existing.get(MARKER)
    if isinstance(marker, dict) and marker.get("sha256") == sha256:
        return True
    return all(existing.get(k) == v for k, v in legacy_record.items() if k != MARKER)


def migrated_record(record: dict[str, Any], attribution: Attribution, source: Path, sha256: str) -> dict[str, Any]:
    out = dict(record)
    out[MARKER] = {"source": source.name, "sha256": sha256, "attributed_by": attribution.by,
                   "evidence": attribution.evidence}
    return out


def _stamp() -> str:
    return clock.now().strftime("%Y%m%d_%H%M%S")


def _free_name(folder: Path, stem: str, suffix: str) -> Path:
    path = folder / f"{stem}{suffix}"
    n = 2
    while path.exists():
        path = folder / f"{stem}_{n}{suffix}"
        n += 1
    return path


def home_relative(home: Home, path: Path) -> str:
    """``path`` as the report shows it: relative to the home when inside it."""
    try:
        return str(path.relative_to(home.root))
    except ValueError:
        return str(path)


# --- the broker ----------------------------------------------------------------------------------


def fetch_holdings(home: Home, users: list[str]) -> tuple[dict[str, set[str]], dict[str, str]]:
    """Each user's holdings symbols, fetched by a process of that user (doctor_checks
    --holdings-json). Returns (holdings by user, error by user)."""

    def one(user: str) -> tuple[str, set[str] | None, str]:
        answer = probe.ask(home, user, "doctor_checks", ["--holdings-json"], timeout=probe.BROKER_TIMEOUT_S)
        if not answer.ok:
            return user, None, answer.error or "no answer"
        symbols = (answer.data or {}).get("holdings")
        if not isinstance(symbols, list):
            return user, None, "unreadable answer"
        return user, {str(s).upper() for s in symbols}, ""

    holdings: dict[str, set[str]] = {}
    errors: dict[str, str] = {}
    for user, symbols, problem in probe.map_users(users, one, max_parallel=4):
        if symbols is None:
            errors[user] = problem
        else:
            holdings[user] = symbols
    return holdings, errors


# --- planning ------------------------------------------------------------------------------------


def learn_modes(home: Home, users: list[str], cache: dict[str, str | ConfigError]) -> None:
    """Fill ``cache`` with each user's current TRADER_MODE, told by a process of that user
    (``whoami``): the orchestrator never reads an env file, so it never holds a user's secret.
    A user whose process refuses to start (no or a broken env file) maps to the ConfigError."""
    wanted: list[str] = []
    for user in users:
        if user in cache or user in wanted:
            continue
        try:
            wanted.append(validate_user_name(user))
        except KitefleetError as exc:
            cache[user] = ConfigError(str(exc))
    for answer in probe.ask_all(home, wanted, "whoami"):
        mode = (answer.data or {}).get("mode")
        if answer.ok and isinstance(mode, str):
            cache[answer.user] = mode
        else:
            cache[answer.user] = ConfigError(answer.error or "whoami named no mode")


def make_plan(home: Home, legacy: LegacyState, index: OrderIndex,
              holdings: dict[str, set[str]] | None,
              modes: dict[str, str | ConfigError] | None = None) -> Plan:
    sha = hashlib.sha256(legacy.raw).hexdigest()
    plan = Plan(legacy=legacy, sha256=sha)
    known = sorted(set(list_users(home)) | set(index.users))
    modes = {} if modes is None else modes
    current: dict[str, dict[str, Any]] = {}
    attributions = {ticker: attribute(ticker, record, index, known, holdings)
                    for ticker, record in legacy.positions.items()}
    learn_modes(home, sorted({a.user for a in attributions.values() if a.user is not None}), modes)
    for ticker, record in legacy.positions.items():
        att = attributions[ticker]
        if att.user is None:
            plan.outcomes[ticker] = Outcome(ticker, att, "unassigned", reason=att.evidence)
            continue
        mode = modes[att.user]
        if isinstance(mode, ConfigError):
            plan.outcomes[ticker] = Outcome(
                ticker, att, "unassigned",
                reason=f"attributed to {att.user} ({att.evidence}) but {att.user} has no valid env file: {mode}")
            continue
        plan.modes[att.user] = mode
        if att.user not in current:
            # StateError (corrupt, other user or mode) aborts the whole run before any write.
            current[att.user] = StateStore(home, att.user, mode).read()
        existing = current[att.user].get("positions", {}).get(ticker)
        if existing is None:
            plan.outcomes[ticker] = Outcome(ticker, att, "new", user=att.user)
        elif isinstance(existing, dict) and same_record(existing, record, sha):
            plan.outcomes[ticker] = Outcome(ticker, att, "present", user=att.user)
        else:
            plan.outcomes[ticker] = Outcome(
                ticker, att, "conflict", user=att.user,
                reason=f"attributed to {att.user} ({att.evidence}), but {att.user}'s state already holds a "
                       f"different {ticker} record; it was kept, not overwritten")
    return plan


# --- writing -------------------------------------------------------------------------------------


def write_backup(home: Home, legacy: LegacyState, sha: str) -> Path:
    folder = ensure_dir(home.data_dir / "migration")
    for old in sorted(folder.glob("trading_state.legacy-*.json")):
        with contextlib.suppress(OSError):
            if old.stat().st_size == len(legacy.raw) and hashlib.sha256(old.read_bytes()).hexdigest() == sha:
                return old
    path = _free_name(folder, f"trading_state.legacy-{_stamp()}", ".json")
    atomic_write_bytes(path, legacy.raw, mode=0o600)
    if hashlib.sha256(path.read_bytes()).hexdigest() != sha:
        raise ConfigError(f"backup {path} does not match the legacy file; nothing else was written")
    return path


def write_user(home: Home, plan: Plan, user: str, backup: Path) -> None:
    """Add this user's new positions under the user's lock; re-check each under the lock (a worker
    may have written meanwhile) and turn a now-different ticker into a conflict."""
    store = StateStore(home, user, plan.modes[user])
    mine = [o for o in plan.by_status("new") if o.user == user]
    with store.transaction() as state:
        positions = state.setdefault("positions", {})
        for o in mine:
            record = plan.legacy.positions[o.ticker]
            existing = positions.get(o.ticker)
            if existing is None:
                positions[o.ticker] = migrated_record(record, o.attribution, plan.legacy.path, plan.sha256)
                # What migrate-state brings in is the bot's: a ``migrated`` lot in the ledger
                # (schema 3), so its stop and exits keep managing it under MANAGE_SCOPE=own.
                lot = migrated_lot(positions[o.ticker])
                if lot is not None and lot["quantity"] > 0:
                    ledger = state.setdefault("ledger", {"lots": {}, "applied": {}, "shortfalls": {}})
                    lots = ledger.setdefault("lots", {})
                    if not any(x.get("source") == "migrated" for x in lots.get(o.ticker.upper(), [])):
                        lots.setdefault(o.ticker.upper(), []).append(lot)
            elif isinstance(existing, dict) and same_record(existing, record, plan.sha256):
                o.status = "present"
            else:
                o.status = "conflict"
                o.reason = (f"attributed to {user} ({o.attribution.evidence}), but {user}'s state received a "
                            f"different {o.ticker} record meanwhile; it was kept")
        state.setdefault("meta", {})["migrated_from"] = {
            "file": str(plan.legacy.path), "sha256": plan.sha256, "backup": home_relative(home, backup),
            "at": clock.now().isoformat()}


def unassigned_document(home: Home, plan: Plan, backup: Path | None) -> dict[str, Any]:
    return {
        "legacy_file": str(plan.legacy.path),
        "legacy_sha256": plan.sha256,
        "backup": home_relative(home, backup) if backup is not None else None,
        "created_at": clock.now().isoformat(),
        "legacy_top_level": plan.legacy.other_top_level(),
        "positions": {
            o.ticker: {"reason": o.reason, "status": o.status, "candidates": list(o.attribution.candidates),
                       "record": plan.legacy.positions[o.ticker]}
            for o in plan.by_status("unassigned", "conflict")
        },
    }


def write_unassigned(home: Home, doc: dict[str, Any]) -> Path:
    folder = ensure_dir(home.data_dir / "migration")
    for old in sorted(folder.glob("unassigned_*.json")):
        try:
            prev = json.loads(old.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if (isinstance(prev, dict) and prev.get("legacy_sha256") == doc["legacy_sha256"]
                and prev.get("positions") == doc["positions"]):
            return old
    path = _free_name(folder, f"unassigned_{_stamp()}", ".json")
    atomic_write_json(path, doc, mode=0o600)
    return path


def conservation(home: Home, plan: Plan, unassigned_file: Path | None,
                 modes: dict[str, str | ConfigError] | None = None) -> list[str]:
    """Read the outputs back: every legacy ticker must appear exactly once across the users' state
    files (as this legacy record) and the unassigned file. Returns the problems."""
    found: dict[str, list[str]] = {t: [] for t in plan.legacy.positions}
    users = sorted(set(list_users(home)) | set(plan.modes))
    modes = {} if modes is None else modes
    others = [u for u in users if u not in plan.modes and _state_file_exists(home, u)]
    learn_modes(home, others, modes)
    for user in users:
        mode = plan.modes.get(user)
        if mode is None:
            if user not in others:
                continue
            known_mode = modes.get(user)
            if not isinstance(known_mode, str):
                continue
            mode = known_mode
        try:
            state = StateStore(home, user, mode).read()
        except KitefleetError:
            continue
        for ticker, rec in (state.get("positions") or {}).items():
            if ticker in found and isinstance(rec, dict):
                marker = rec.get(MARKER)
                if (isinstance(marker, dict) and marker.get("sha256") == plan.sha256) or (
                        plan.outcomes[ticker].user == user
                        and plan.outcomes[ticker].status == "present"):
                    found[ticker].append(user)
    if unassigned_file is not None:
        doc = json.loads(unassigned_file.read_text(encoding="utf-8"))
        for ticker in doc.get("positions", {}):
            if ticker in found:
                found[ticker].append("unassigned")
    return [f"{t} appears {len(w)} times ({', '.join(w) or 'nowhere'})" for t, w in found.items() if len(w) != 1]


def _state_file_exists(home: Home, user: str) -> bool:
    try:
        return home.state_file(validate_user_name(user)).exists()
    except KitefleetError:
        return False


def planned_conservation(plan: Plan) -> list[str]:
    counted = {o.ticker for o in plan.outcomes.values()}
    missing = sorted(set(plan.legacy.positions) - counted)
    return [f"{t} has no outcome" for t in missing]


# --- the run -------------------------------------------------------------------------------------


def read_order_index(orders_dir: Path | None) -> tuple[OrderIndex, list[str]]:
    """The legacy order records to attribute by (none without ``--orders-dir``), and notes for the report."""
    if orders_dir is None:
        return OrderIndex(), ["no --orders-dir: only explicit user fields (and --ask-broker) can attribute positions"]
    index = read_orders_dir(orders_dir)
    notes = []
    if index.skipped_folders:
        notes.append("order folders with invalid user names were ignored: " + ", ".join(index.skipped_folders))
    return index, notes


def broker_holdings(home: Home, modes: dict[str, str | ConfigError]) -> tuple[dict[str, set[str]] | None, list[str]]:
    """``--ask-broker``: every user's holdings, or None when any user could not answer; notes for
    the report. Fills ``modes`` on the way (the users' processes tell them)."""
    learn_modes(home, list_users(home), modes)
    askable = [u for u in list_users(home) if isinstance(modes.get(u), str)]
    holdings, errors = fetch_holdings(home, askable)
    notes = [f"holdings of {user} unavailable ({problem}); broker attribution not used"
             for user, problem in errors.items()]
    if errors:
        return None, notes  # a missing answer could make a two-holder ticker look like a one-holder one
    return holdings, notes


@dataclass
class Result:
    plan: Plan
    dry_run: bool
    backup: Path | None = None
    unassigned_file: Path | None = None
    #: conservation problems: a legacy ticker not accounted for exactly once
    problems: list[str] = field(default_factory=list)
    write_errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.write_errors and not self.problems


def migrate(home: Home, legacy: LegacyState, index: OrderIndex, holdings: dict[str, set[str]] | None,
            modes: dict[str, str | ConfigError], notes: list[str], dry_run: bool) -> Result:
    """Plan, then (unless ``dry_run``) back up, write each user's positions, write the unassigned
    ones, and read everything back for the conservation check."""
    try:
        plan = make_plan(home, legacy, index, holdings, modes)
    except StateError as exc:
        raise StateError(f"{exc}; nothing was written") from None
    plan.notes = notes
    result = Result(plan=plan, dry_run=dry_run, problems=planned_conservation(plan))
    if dry_run:
        return result
    result.backup = write_backup(home, legacy, plan.sha256)
    for user in sorted({o.user for o in plan.by_status("new") if o.user is not None}):
        try:
            write_user(home, plan, user, result.backup)
        except KitefleetError as exc:
            result.write_errors.append(f"{user}: {exc}")
            for o in plan.by_status("new"):
                if o.user == user:
                    o.status, o.reason = "unassigned", f"writing {user}'s state failed: {exc}"
    if plan.by_status("unassigned", "conflict"):
        result.unassigned_file = write_unassigned(home, unassigned_document(home, plan, result.backup))
    result.problems += conservation(home, plan, result.unassigned_file, modes)
    return result
