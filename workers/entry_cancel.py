"""Open bot entries are cancelled here, for two reasons. A halted user's: by the watchdog within
one poll, and by the ``cancel_entries`` job that ``orchestrator.py halt`` runs in the user's own
process (so a user whose worker is not running is covered too). An entry past its timeout (the
intent's ``cancel_after``, workers.entry_wait): by place_orders_daily at the end of its wait, and
by the watchdog on its next poll past it when that run was killed (``due_at``).

A bot entry is an order of one of place_orders_daily's entry intents (purpose ``entry``...) that
the book shows still open. Each cancel is a write through the intent protocol
(workers.intents.cancel_order_once, kind ``cancel``, tag :func:`cancel_tag`: one per order, so
the watchdog and the job never cancel one order twice, and a rerun after a kill reads the order
instead of guessing). A part that filled before the cancel stays the bot's: the ledger takes it
in from the entry intent (workers.ledger.reconcile) and the next stop run gives it its stop.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import date, datetime
from typing import Any

from kitefleet.errors import BrokerTemporaryError, ReconcileError
from kitefleet.states import TERMINAL
from workers.broker_errors import BrokerRejected
from workers.intents import IntentLog, cancel_order_once, make_tag

#: the job name in cancel intents (both callers use it: one tag per order, whoever cancels)
CANCEL_JOB = "halt"


#: the intent purpose of a timeout's cancel (a halt's is ``cancel``; both are protective writes)
TIMEOUT_PURPOSE = "cancel_timeout"


def cancel_tag(user: str, session: date, symbol: str, order_id: str) -> str:
    return make_tag(user, CANCEL_JOB, session, symbol, f"cancel{order_id}")


def cancel_after_of(intent: Mapping[str, Any]) -> datetime | None:
    """An entry intent's ``cancel_after`` (the state schema checks it is an aware ISO time)."""
    value = intent.get("cancel_after")
    return datetime.fromisoformat(value) if isinstance(value, str) and value else None


@dataclass(frozen=True)
class Deadline:
    tag: str
    symbol: str
    order_id: str
    cancel_after: datetime


def entry_deadlines(intents: Mapping[str, Mapping[str, Any]], session: date) -> dict[str, Deadline]:
    """Order id -> the deadline of each of the session's entries at the broker that has one (an
    entry sent before timeouts existed has none and is left as it was)."""
    out: dict[str, Deadline] = {}
    for tag, i in intents.items():
        at = cancel_after_of(i)
        if (at is None or i.get("kind") != "order" or not str(i.get("purpose") or "").startswith("entry")
                or not i.get("broker_id") or i.get("session") != session.isoformat()):
            continue
        out[str(i["broker_id"])] = Deadline(str(tag), str(i.get("symbol") or "").upper(), str(i["broker_id"]), at)
    return out


def open_bot_entries(intents: Mapping[str, Mapping[str, Any]],
                     orders: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The book's orders that are the bot's entries (by an entry intent's tag or order id) and
    not final yet."""
    tags = {str(t) for t, i in intents.items() if i.get("kind") == "order"
            and str(i.get("purpose") or "").startswith("entry")}
    ids = {str(intents[t].get("broker_id")) for t in tags if intents[t].get("broker_id")}
    return [o for o in orders if str(o.get("transaction_type") or "").upper() == "BUY"
            and str(o.get("status") or "") not in TERMINAL
            and (str(o.get("tag") or "") in tags or str(o.get("order_id")) in ids)]


@dataclass(frozen=True)
class Cancelled:
    symbol: str
    order_id: str
    status: str | None  # the order's status after the cancel (CANCELLED, or COMPLETE if it filled first)
    filled: int
    error: str | None = None


def cancel_open_entries(kite: Any, intents: IntentLog, user: str, session: date, log: logging.Logger,
                        orders: list[dict[str, Any]] | None = None, *,
                        due_at: datetime | None = None) -> list[Cancelled]:
    """Cancel every open bot entry (a halt), or with ``due_at`` only those whose ``cancel_after``
    is at or before it (a timeout); one row per order tried. An order whose cancel failed
    (broker down, still open) has ``error`` set: the caller looks again."""
    book = list(orders if orders is not None else kite.orders())
    done: list[Cancelled] = []
    state = intents.all()
    candidates = open_bot_entries(state, book)
    if due_at is not None:
        deadlines = entry_deadlines(state, session)
        candidates = [o for o in candidates if str(o["order_id"]) in deadlines
                      and deadlines[str(o["order_id"])].cancel_after <= due_at]
    why = "halted" if due_at is None else "timed out"
    for order in candidates:
        oid, sym = str(order["order_id"]), str(order.get("tradingsymbol", "")).upper()
        tag = cancel_tag(user, session, sym, oid)
        try:
            result = cancel_order_once(kite, intents, tag, dict(order), job=CANCEL_JOB, session=session,
                                       purpose="cancel" if due_at is None else TIMEOUT_PURPOSE)
        except (BrokerTemporaryError, BrokerRejected, ReconcileError) as exc:
            log.warning("%s: open entry %s not cancelled yet (%s); will look again", sym, oid, exc)
            done.append(Cancelled(sym, oid, str(order.get("status")), int(order.get("filled_quantity") or 0),
                                  str(exc)))
            continue
        after = next((o for o in kite.orders() if str(o.get("order_id")) == oid), order)
        filled = int(after.get("filled_quantity") or 0)
        log.warning("%s: %s: open entry %s cancelled (%s)%s", sym, why, oid, result.order_status,
                    f"; its {filled} filled shares stay the bot's and get a stop" if filled else "")
        done.append(Cancelled(sym, oid, result.order_status, filled))
    return done


def as_rows(done: Iterable[Cancelled]) -> list[dict[str, Any]]:
    return [asdict(c) for c in done]
