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


class IntentStatus(StrEnum):
    """``state["intents"][TAG]["status"]``: how far a write to the broker is known to have got."""

    PENDING = "pending"  # recorded; not known to be sent
    UNKNOWN = "unknown"  # the write timed out, hit a 5xx or got a cut-off answer: it may be placed
    SENT = "sent"  # the broker's id is known
    FAILED = "failed"  # Kite refused it: nothing should be placed (the book is checked before a resend)
    UNRESOLVED = "unresolved"  # parked: new entries of its symbol blocked until a person looks
    RESOLVED = "resolved"  # closed by a person (resolve-intent)


#: Not settled: every start (and every new write) reconciles them with the broker.
INTENT_OPEN: tuple[IntentStatus, ...] = (IntentStatus.PENDING, IntentStatus.UNKNOWN)

#: Old enough ones of these may be forgotten (IntentLog.prune).
INTENT_CLOSED: tuple[IntentStatus, ...] = (IntentStatus.SENT, IntentStatus.FAILED, IntentStatus.RESOLVED)

#: Its tag named an order or GTT (or may have): never sent again.
INTENT_TAG_USED: tuple[IntentStatus, ...] = (IntentStatus.SENT, IntentStatus.RESOLVED, IntentStatus.UNRESOLVED)


# === Watchdog exit-record statuses (workers/watchdog.py) ======================================


class ExitStatus(StrEnum):
    """``state["watchdog"][DAY]["symbols"][S]["exits"][i]["status"]``: one exit attempt."""

    SENDING = "sending"  # decided and recorded; the send is under way (or its process died)
    SENT = "sent"  # the broker has it (order id known); ``order_status`` follows the book
    UNKNOWN = "unknown"  # the send's outcome is unknown: the order book will tell
    REJECTED = "rejected"  # Kite refused it
    BLOCKED = "blocked"  # its own tag is unresolved (or was resolved by a person): never resent
    NOT_SENT = "not_sent"  # provably never reached the broker: the same tag may be sent again
    LOST = "lost"  # outcome unknown and not in the book after a grace: given up, the tag is used


#: Waiting for the broker: no other exit of the symbol while one of these is not terminal in the book.
EXIT_PENDING: tuple[ExitStatus, ...] = (ExitStatus.SENDING, ExitStatus.SENT, ExitStatus.UNKNOWN)


# === Transition tables (NautilusTrader's order state table is the model) ======================


class Move(StrEnum):
    APPLY = "apply"  # the status changes (or, to itself, its fields are refreshed)
    KEEP = "keep"  # a deliberate no-op: the record stays exactly as it is


class IllegalTransition(RuntimeError):
    """A status change no code path makes: a bug, never a broker condition."""


class TransitionTable:
    """The moves of one state machine: ``{from: {to: Move}}``; ``None`` is "no record yet".
    A pair not listed raises, naming the moves that are legal from there."""

    def __init__(self, name: str, moves: dict[str | None, dict[str, Move]]) -> None:
        self.name, self.moves = name, moves

    def check(self, current: str | None, to: str, what: str = "") -> Move:
        legal = self.moves.get(current, {})
        move = legal.get(to)
        if move is None:
            allowed = ", ".join(f"{t} ({m})" for t, m in legal.items()) or "none"
            label = f"{self.name} {what}".rstrip()
            raise IllegalTransition(f"{label}: {current or 'new'} -> {to} is not a move any code path makes; "
                                    f"legal from {current or 'new'}: {allowed}")
        return move


_I = IntentStatus
_APPLY, _KEEP = Move.APPLY, Move.KEEP

#: Intents (workers.intents.IntentLog). The KEEP rows are the settled-meanwhile case: another job
#: of the user reconciled the intent (sent, or parked) between this job's read and its write.
INTENT_TRANSITIONS = TransitionTable("intent", {
    None: {_I.PENDING: _APPLY},  # record
    _I.PENDING: {_I.UNKNOWN: _APPLY, _I.SENT: _APPLY, _I.FAILED: _APPLY, _I.UNRESOLVED: _APPLY},
    # unknown -> unknown: a resent open tag timed out again (the note is refreshed)
    _I.UNKNOWN: {_I.UNKNOWN: _APPLY, _I.SENT: _APPLY, _I.FAILED: _APPLY, _I.UNRESOLVED: _APPLY},
    # failed -> sent/unresolved: the book shows the tag after all (reconcile include_failed, the
    # watchdog adopting a "lost" exit); failed -> pending: reopened before it is sent again
    _I.FAILED: {_I.PENDING: _APPLY, _I.SENT: _APPLY, _I.UNRESOLVED: _APPLY},
    # sent -> sent: the send's own answer after a reconcile recorded it first
    _I.SENT: {_I.SENT: _APPLY, _I.UNKNOWN: _KEEP, _I.FAILED: _KEEP},
    _I.UNRESOLVED: {_I.RESOLVED: _APPLY, _I.UNKNOWN: _KEEP, _I.FAILED: _KEEP},
    _I.RESOLVED: {},
})

_E = ExitStatus

#: The watchdog's exit records (workers.exit_records).
EXIT_TRANSITIONS = TransitionTable("exit record", {
    # decided (or recovered from the intent log at a restart); sent: a bot GTT's child order
    # adopted from the book (workers.exit_records.adopted_child)
    None: {_E.SENDING: _APPLY, _E.SENT: _APPLY},
    # the send's outcome; lost: an unknown intent found at the restart
    _E.SENDING: {_E.SENT: _APPLY, _E.UNKNOWN: _APPLY, _E.REJECTED: _APPLY, _E.BLOCKED: _APPLY,
                 _E.NOT_SENT: _APPLY, _E.LOST: _APPLY},
    # settled by the book, by the grace, or by the intent at a restart
    _E.UNKNOWN: {_E.SENT: _APPLY, _E.BLOCKED: _APPLY, _E.NOT_SENT: _APPLY, _E.LOST: _APPLY,
                 _E.REJECTED: _APPLY},
    # sent -> sent: the book's status, fill or price changed; sent -> blocked: a person resolved
    # its intent without an order id and the book does not show the tag
    _E.SENT: {_E.SENT: _APPLY, _E.BLOCKED: _APPLY},
    # the same tag again (the next decision), or the intent turned out sent after all
    _E.NOT_SENT: {_E.SENDING: _APPLY, _E.SENT: _APPLY},
    # given up, then the book shows it after all
    _E.LOST: {_E.SENT: _APPLY},
    _E.REJECTED: {},
    _E.BLOCKED: {},
})
