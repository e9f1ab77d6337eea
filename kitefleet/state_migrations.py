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
    2 -> 3   ``ledger``: the shares the bot owns, in lots (workers.ledger). Seeded from what the
             bot did (:func:`seed_ledger`): an open position bought by a bot entry (an entry
             intent's order id, or ``source: place_orders_daily`` with an ``order_id``) becomes
             an ``entry`` lot, a position ``migrate-state`` brought in a ``migrated`` lot. Any
             other holding (bought by hand, ``source: holdings``) is not owned, even when a
             ``stops[S]`` record names a GTT: the stop job then leaves that GTT exactly as it
             is and doctor asks a person to adopt or release it. Nothing is deleted.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

#: source recorded for a stop folded in from a position's legacy GTT id
LEGACY_SOURCE = "legacy"
#: the mark migrate-state puts on a position it brought in from the legacy file
MIGRATION_MARKER = "legacy_migration"


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


def _qty(value: Any) -> int:
    try:
        return max(0, int(value or 0)) if not isinstance(value, bool) else 0
    except (TypeError, ValueError):
        return 0


def _price(value: Any) -> float:
    try:
        return round(float(value or 0.0), 2) if not isinstance(value, bool) else 0.0
    except (TypeError, ValueError):
        return 0.0


def _day(pos: dict[str, Any], fallback: Any) -> str:
    for raw in (pos.get("entry_time"), pos.get("timestamp"), fallback):
        if isinstance(raw, str) and len(raw) >= 10:
            return raw[:10]
    return "1970-01-01"


def migrated_lot(pos: dict[str, Any]) -> dict[str, Any] | None:
    """The ``migrated`` lot of an open position ``migrate-state`` brought in, or None."""
    if not isinstance(pos, dict) or not _is_open(pos):
        return None
    return {"quantity": _qty(pos.get("quantity")), "price": _price(pos.get("entry_price")),
            "date": _day(pos, None), "source": "migrated"}


def seed_ledger(data: dict[str, Any]) -> dict[str, Any]:
    """The ledger of a state written before there was one (shape: workers.ledger): open
    positions the bot bought (entry lots; the quantity is the position's, at most what the entry
    intent ordered) and those migrate-state brought in (migrated lots). A person's holding is
    not owned, whatever stop record it has. The fills seeded count as applied, so today's order
    book does not add them twice."""
    lots: dict[str, list[dict[str, Any]]] = {}
    applied: dict[str, dict[str, Any]] = {}
    raw_positions, raw_intents = data.get("positions"), data.get("intents")
    positions = raw_positions if isinstance(raw_positions, dict) else {}
    intents = raw_intents if isinstance(raw_intents, dict) else {}
    entries: dict[str, dict[str, Any]] = {}  # order id -> entry intent
    for intent in intents.values():
        if (isinstance(intent, dict) and intent.get("kind") == "order" and intent.get("purpose") == "entry"
                and intent.get("broker_id")):
            entries[str(intent["broker_id"])] = intent
    for sym, pos in positions.items():
        if not isinstance(pos, dict) or not _is_open(pos):
            continue
        symbol = str(sym).upper()
        if isinstance(pos.get(MIGRATION_MARKER), dict):
            rec = migrated_lot(pos)
            if rec is not None and rec["quantity"] > 0:
                lots[symbol] = [rec]
            continue
        oid = str(pos.get("order_id") or "")
        intent = entries.get(oid)
        by_bot = intent is not None or (pos.get("source") == "place_orders_daily" and oid)
        if not by_bot:
            continue
        qty = _qty(pos.get("quantity"))
        if intent is not None:
            ordered = _qty((intent.get("params") or {}).get("quantity"))
            qty = min(qty, ordered) if ordered else qty
        if qty <= 0:
            continue
        day = _day(pos, (intent or {}).get("session"))
        lots[symbol] = [{"quantity": qty, "price": _price(pos.get("entry_price")), "date": day,
                         "source": "entry", "order_id": oid}]
        applied[oid] = {"symbol": symbol, "side": "BUY", "quantity": qty,
                        "session": str((intent or {}).get("session") or day)}
    return {"lots": lots, "applied": applied, "shortfalls": {}}


def _v2_to_v3(data: dict[str, Any]) -> None:
    if not isinstance(data.get("ledger"), dict):
        data["ledger"] = seed_ledger(data)


#: version N -> the function that turns an N document into an N + 1 one (in place)
MIGRATIONS: dict[int, Callable[[dict[str, Any]], None]] = {1: _v1_to_v2, 2: _v2_to_v3}


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
