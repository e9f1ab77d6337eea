"""Forward migrations of a user's state file, applied in memory on every load (kitefleet.state).

A file of an older ``schema_version`` is upgraded step by step to the version this code writes;
the file on disk changes only with the next committed transaction (so a read-only reader, e.g.
doctor, never writes). A file of a newer version is not touched here: kitefleet.state refuses it
(StateError, exit 4) rather than guess.

    version  what changed
    -------  ---------------------------------------------------------------------------------
    1 -> 2   ``stops[S]`` is the one home of a stop and its GTT id (``gtt_id``, ``stop``,
             ``source``); ``positions[S].gtt_order_id`` becomes a derived legacy field that is
             never read. An open position whose GTT id the state knew only from
             ``gtt_order_id`` or the legacy ``gtt.trigger_id`` gets a ``stops[S]`` record
             (:func:`fold_legacy_stop_ids`), so the bot keeps managing the same GTT.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

#: source recorded for a stop folded in from a position's legacy GTT id
LEGACY_SOURCE = "legacy"


def _as_id(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def _is_open(pos: dict[str, Any]) -> bool:
    try:
        return not pos.get("closed_at") and int(pos.get("quantity") or 0) > 0
    except (TypeError, ValueError):
        return False


def fold_legacy_stop_ids(state: dict[str, Any]) -> list[str]:
    """Give every open position that names a GTT (``gtt_order_id``, else legacy
    ``gtt.trigger_id``) but has no ``stops`` record one: ``{"gtt_id", "stop": None, "source":
    "legacy"}``. ``stop`` stays None so that the GTT's own trigger, not a legacy figure, is the
    never-lower floor. Idempotent; returns the symbols given a record. Also used by
    update_cnc_stoploss for positions that ``migrate-state`` brings in from the legacy file."""
    positions = state.get("positions")
    if not isinstance(positions, dict):
        return []
    stops = state.get("stops", {})
    if not isinstance(stops, dict):
        return []  # not ours to repair: validation names it
    folded: list[str] = []
    for sym, pos in positions.items():
        if not isinstance(pos, dict) or not _is_open(pos) or str(sym).upper() in stops:
            continue
        legacy = pos.get("gtt")
        gid = _as_id(pos.get("gtt_order_id"))
        if gid is None and isinstance(legacy, dict):
            gid = _as_id(legacy.get("trigger_id"))
        if gid is None:
            continue
        stops[str(sym).upper()] = {"stop": None, "source": LEGACY_SOURCE, "gtt_id": gid}
        folded.append(str(sym).upper())
    if folded:
        state["stops"] = stops
    return folded


def _v1_to_v2(data: dict[str, Any]) -> None:
    fold_legacy_stop_ids(data)


#: version N -> the function that turns an N document into an N + 1 one (in place)
MIGRATIONS: dict[int, Callable[[dict[str, Any]], None]] = {1: _v1_to_v2}


def upgrade(data: Any, target: int) -> Any:
    """``data`` migrated up to ``target`` when it is a state document of an older, known version;
    anything else (not an object, no or a bad version, current, newer, unknown) is returned as it
    is, for kitefleet.state.validation_problem to judge."""
    if not isinstance(data, dict):
        return data
    version = data.get("schema_version")
    if not isinstance(version, int) or isinstance(version, bool) or version >= target:
        return data
    if any(v not in MIGRATIONS for v in range(version, target)):
        return data
    for v in range(version, target):
        MIGRATIONS[v](data)
        data["schema_version"] = v + 1
    return data
