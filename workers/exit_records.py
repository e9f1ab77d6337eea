"""The watchdog's exit records: one per exit attempt, a small state machine on plain dicts.

A record lives in ``state["watchdog"][DAY]["symbols"][S]["exits"]`` (contract in
workers.watchdog). Its ``status`` is a kitefleet.states.ExitStatus and changes only through
:func:`move`, which consults EXIT_TRANSITIONS there and raises on a move no code path makes.
The restart rows these moves implement are in docs/restart-behaviour.md (hourly_candle_watchdog).

Two kinds of record: the watchdog's own exits (purpose ``exit``, ``exit2``, ...; tag = the Kite
tag it sent) and the **bot's GTT child** (purpose GTT_CHILD, tag ``GTT<id>``): the SELL a bot stop
GTT placed when it fired, adopted from the GTT list by the order id in the triggered GTT's
``orders[i].result.order_result.order_id`` (never by price or quantity), so that the watchdog can
reprice it after a gap (:func:`bot_gtt_children`). A GTT child is not an exit attempt.

Exit attempts: at most MAX_EXIT_ATTEMPTS per symbol and session; an exit the exchange rejected
for its circuit limit (``circuit`` set on the record) is not one (its tag is used up all the
same: the next one gets a fresh tag), up to MAX_EXIT_TAGS tags a session.

Pure: no broker, no state file, no clock. The backtest reads these rules too.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from kitefleet.states import EXIT_PENDING, EXIT_TRANSITIONS, TERMINAL, ExitStatus, Move
from workers.gtt import StopOwnership, gtt_id, gtt_symbol, is_stop_shaped, legs

#: exit attempts per symbol and session (a circuit rejection is not one)
MAX_EXIT_ATTEMPTS = 3
#: exit tags per symbol and session, circuit rejections included (a bound, never a goal)
MAX_EXIT_TAGS = 12
PENDING_STATUSES = EXIT_PENDING
#: the purpose of an adopted GTT child record
GTT_CHILD = "gtt_child"
#: what Kite's circuit rejection says (``status_message`` of a REJECTED order, or the refusal)
CIRCUIT_MARKER = "circuit limit"


def move(record: dict[str, Any], to: ExitStatus, **changes: Any) -> bool:
    """Set ``record``'s status to ``to`` (and ``changes``) if EXIT_TRANSITIONS allows it; False
    when the table keeps the record as it is."""
    if EXIT_TRANSITIONS.check(record.get("status"), to, str(record.get("tag") or "")) is Move.KEEP:
        return False
    record.update(changes, status=to)
    return True


def new_record(purpose: str, tag: str) -> dict[str, Any]:
    """A record before its first move (status: none yet)."""
    return {"purpose": purpose, "tag": tag, "gtt": {"synced_filled": 0, "actions": []}}


def adopted_child(gtt: int, order: Mapping[str, Any]) -> dict[str, Any]:
    """The record of a bot GTT's child order found in the book (status ``sent``)."""
    rec = new_record(GTT_CHILD, f"GTT{gtt}")
    move(rec, ExitStatus.SENT, gtt_id=gtt, order_id=str(order.get("order_id")), order_status=order.get("status"),
         price=float(order.get("price") or 0.0), quantity=int(order.get("quantity") or 0),
         filled=int(order.get("filled_quantity") or 0), modifications=0, rule="gtt", level=None, ltp=None,
         note="the bot's stop GTT fired; its SELL is watched and repriced like an exit")
    return rec


def exit_pending(exits: Sequence[Mapping[str, Any]]) -> bool:
    return any(e.get("status") in PENDING_STATUSES and e.get("order_status") not in TERMINAL for e in exits)


def is_circuit_rejection(message: Any) -> bool:
    return CIRCUIT_MARKER in str(message or "").lower()


def next_exit_purpose(exits: Sequence[Mapping[str, Any]]) -> str | None:
    """Purpose (hence tag) of the next exit attempt; None when the attempts are used up. A
    not-sent attempt (its intent failed before reaching the broker) is retried under its own tag;
    any other gets a fresh one (a tag must never name two orders). Circuit rejections and GTT
    children are not attempts."""
    own = [e for e in exits if e.get("purpose") != GTT_CHILD]
    if own and own[-1].get("status") == ExitStatus.NOT_SENT:
        return str(own[-1]["purpose"])
    used = [e for e in own if e.get("status") != ExitStatus.NOT_SENT]
    attempts = sum(1 for e in used if not e.get("circuit"))
    if attempts >= MAX_EXIT_ATTEMPTS or len(used) >= MAX_EXIT_TAGS:
        return None
    return "exit" if not used else f"exit{len(used) + 1}"


def bot_gtt_children(gtts: Iterable[Mapping[str, Any]], ownership: StopOwnership,
                     symbols: Iterable[str]) -> dict[str, tuple[int, str]]:
    """Order id -> (GTT id, symbol) of every order a **bot stop** GTT of ``symbols`` placed when
    it fired: a triggered GTT whose id the bot owns (or, on a symbol it has no stop record of, a
    stop-shaped one: adopted, as workers.gtt.bot_stops does for active ones). The order id is the
    leg's ``result.order_result.order_id``; a person's GTT is never in it."""
    wanted = {s.upper() for s in symbols}
    out: dict[str, tuple[int, str]] = {}
    for g in gtts:
        sym = gtt_symbol(g)
        if sym not in wanted or str(g.get("status", "")).lower() != "triggered":
            continue
        owned = gtt_id(g) in ownership.owned_ids
        adopted = sym not in ownership.known_symbols and is_stop_shaped({**g, "status": "active"})
        if not (owned or adopted):
            continue
        for leg in legs(g):
            result = (leg.get("result") or {}).get("order_result") or {}
            oid = str(result.get("order_id") or "")
            if oid:
                out[oid] = (gtt_id(g), sym)
    return out


def pending_sell_quantity(orders: Iterable[Mapping[str, Any]], symbol: str) -> int:
    """Shares of ``symbol`` already on their way out: open CNC SELL orders (a fired GTT's, a
    manual one). Selling them again would be refused by the broker or oversell."""
    total = 0
    for o in orders:
        if str(o.get("tradingsymbol", "")).upper() != symbol or o.get("transaction_type") != "SELL":
            continue
        if o.get("product") != "CNC" or o.get("status") in TERMINAL:
            continue
        total += int(o.get("pending_quantity") or 0) or (int(o.get("quantity") or 0)
                                                         - int(o.get("filled_quantity") or 0))
    return max(total, 0)


def merge_exit_records(mine: dict[str, Any], theirs: Mapping[str, Any] | None) -> bool:
    """Take into the watchdog day ``mine`` every exit record of ``theirs`` (the same session's day
    as another process of the user wrote it: the watchdog, ``halt --flatten``) whose tag ``mine``
    lacks, and never let a record's modification count go back. Two processes that follow exits
    of one session so never drop each other's records, and each follows (reprices, tidies after)
    the other's. True when ``mine`` changed."""
    changed = False
    for symbol, rec in ((theirs or {}).get("symbols") or {}).items():
        others = [e for e in (rec or {}).get("exits") or [] if isinstance(e, Mapping) and e.get("tag")]
        if not others:
            continue
        target = mine.setdefault("symbols", {}).setdefault(symbol, {"hourly": None, "atr": None, "exits": []})
        have = {str(e.get("tag")): e for e in target.setdefault("exits", [])}
        for e in others:
            own = have.get(str(e["tag"]))
            if own is None:
                target["exits"].append(copy.deepcopy(dict(e)))
                changed = True
            elif int(e.get("modifications") or 0) > int(own.get("modifications") or 0):
                own["modifications"] = int(e["modifications"])
                changed = True
    return changed
