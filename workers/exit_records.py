"""The watchdog's exit records: one per exit attempt, a small state machine on plain dicts.

A record lives in ``state["watchdog"][DAY]["symbols"][S]["exits"]`` (contract in
workers.watchdog). Its ``status`` is a kitefleet.states.ExitStatus and changes only through
:func:`move`, which consults EXIT_TRANSITIONS there and raises on a move no code path makes.
The restart rows these moves implement are in docs/restart-behaviour.md (hourly_candle_watchdog).

Pure: no broker, no state file, no clock. The backtest reads these rules too.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from kitefleet.states import EXIT_PENDING, EXIT_TRANSITIONS, TERMINAL, ExitStatus, Move

#: exit attempts per symbol and session (tags exit, exit2, exit3)
MAX_EXIT_ATTEMPTS = 3
PENDING_STATUSES = EXIT_PENDING


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


def exit_pending(exits: Sequence[Mapping[str, Any]]) -> bool:
    return any(e.get("status") in PENDING_STATUSES and e.get("order_status") not in TERMINAL for e in exits)


def next_exit_purpose(exits: Sequence[Mapping[str, Any]]) -> str | None:
    """Purpose (hence tag) of the next exit attempt; None when the attempts are used up. A
    not-sent attempt (its intent failed before reaching the broker) is retried under its own tag;
    any other gets a fresh one (a tag must never name two orders)."""
    if exits and exits[-1].get("status") == ExitStatus.NOT_SENT:
        return str(exits[-1]["purpose"])
    used = sum(1 for e in exits if e.get("status") != ExitStatus.NOT_SENT)
    if used >= MAX_EXIT_ATTEMPTS:
        return None
    return "exit" if used == 0 else f"exit{used + 1}"


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
