"""A halted user's open bot entries are cancelled: by the watchdog within one poll, and by the
``cancel_entries`` job that ``orchestrator.py halt`` runs in the user's own process (so a user
whose worker is not running is covered too).

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
from datetime import date
from typing import Any

from kitefleet.errors import BrokerTemporaryError, ReconcileError
from kitefleet.states import TERMINAL
from workers.broker_errors import BrokerRejected
from workers.intents import IntentLog, cancel_order_once, make_tag

#: the job name in cancel intents (both callers use it: one tag per order, whoever cancels)
CANCEL_JOB = "halt"


def cancel_tag(user: str, session: date, symbol: str, order_id: str) -> str:
    return make_tag(user, CANCEL_JOB, session, symbol, f"cancel{order_id}")


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
                        orders: list[dict[str, Any]] | None = None) -> list[Cancelled]:
    """Cancel every open bot entry; one row per order tried. An order whose cancel failed
    (broker down, still open) has ``error`` set: the caller looks again."""
    book = list(orders if orders is not None else kite.orders())
    done: list[Cancelled] = []
    for order in open_bot_entries(intents.all(), book):
        oid, sym = str(order["order_id"]), str(order.get("tradingsymbol", "")).upper()
        tag = cancel_tag(user, session, sym, oid)
        try:
            result = cancel_order_once(kite, intents, tag, dict(order), job=CANCEL_JOB, session=session)
        except (BrokerTemporaryError, BrokerRejected, ReconcileError) as exc:
            log.warning("%s: open entry %s not cancelled yet (%s); will look again", sym, oid, exc)
            done.append(Cancelled(sym, oid, str(order.get("status")), int(order.get("filled_quantity") or 0),
                                  str(exc)))
            continue
        after = next((o for o in kite.orders() if str(o.get("order_id")) == oid), order)
        filled = int(after.get("filled_quantity") or 0)
        log.warning("%s: halted: open entry %s cancelled (%s)%s", sym, oid, result.order_status,
                    f"; its {filled} filled shares stay the bot's and get a stop" if filled else "")
        done.append(Cancelled(sym, oid, result.order_status, filled))
    return done


def as_rows(done: Iterable[Cancelled]) -> list[dict[str, Any]]:
    return [asdict(c) for c in done]
