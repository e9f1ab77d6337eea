"""Status vocabularies and their groupings, each spelt once (supervisor's ``states.py`` is the model).

Dependency-free on purpose (standard library only): the paper broker, the workers and the
orchestrator all import it, and it must never pull any of them in.

Members are ``StrEnum``: a member equals, hashes, formats and JSON-encodes as its string, so it
compares directly with what the kiteconnect client returns and is stored as plain text.
"""

from __future__ import annotations

from enum import StrEnum

# === Kite order statuses (reference/kite-api.md 3.7) =========================================


class OrderStatus(StrEnum):
    """The ``status`` of an order in ``orders()`` and of each step in ``order_history()``."""

    # steps of a new order (order_history only)
    PUT_ORDER_REQ_RECEIVED = "PUT ORDER REQ RECEIVED"
    VALIDATION_PENDING = "VALIDATION PENDING"  # the RMS check
    OPEN_PENDING = "OPEN PENDING"  # waiting to be registered at the exchange
    # resting in the book
    OPEN = "OPEN"
    TRIGGER_PENDING = "TRIGGER PENDING"  # SL / SL-M before the trigger is hit
    AMO_REQ_RECEIVED = "AMO REQ RECEIVED"  # an after-market order waiting for the session
    # steps of a modification or a cancellation (order_history only)
    MODIFY_VALIDATION_PENDING = "MODIFY VALIDATION PENDING"
    MODIFY_PENDING = "MODIFY PENDING"
    MODIFIED = "MODIFIED"
    CANCEL_PENDING = "CANCEL PENDING"
    # final
    COMPLETE = "COMPLETE"
    CANCELLED = "CANCELLED"
    REJECTED = "REJECTED"


#: Still resting in the book: blocks funds (BUY) or holdings (SELL), may be modified or cancelled.
OPEN: tuple[OrderStatus, ...] = (
    OrderStatus.OPEN,
    OrderStatus.TRIGGER_PENDING,
    OrderStatus.AMO_REQ_RECEIVED,
)

#: Final: nothing happens to the order any more.
TERMINAL: tuple[OrderStatus, ...] = (
    OrderStatus.COMPLETE,
    OrderStatus.CANCELLED,
    OrderStatus.REJECTED,
)


# === Intent statuses (workers/intents.py) =====================================================
# Added by a later step of issue 14.


# === Watchdog exit-record statuses (workers/watchdog.py) ======================================
# Added by a later step of issue 14.
