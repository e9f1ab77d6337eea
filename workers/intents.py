"""Intent first, then the broker, reconciled: no order or GTT is ever sent twice for one intent.

Over 400 lines because the one protocol (record, send, reconcile) covers orders, GTTs, cancels and
modifies over one log, and its on-disk contract is written out below.

Before any ``place_order`` or ``place_gtt`` the worker records an *intent* in the user's state
file, under a deterministic Kite ``tag`` (``make_tag``); after the call it records the broker's
id. On every start, and before every new write, open intents are reconciled with the broker:
orders by tag in today's order book, GTTs (which carry no tag) by symbol, trigger values and
quantity in the GTT list.

On-disk contract: ``state["intents"][TAG]`` in ``data/trading_state_<User>.json`` (StateStore)::

    {"tag", "kind": "order"|"gtt"|"cancel"|"modify", "symbol", "purpose", "job", "session": "YYYY-MM-DD",
     "placed_on": "YYYY-MM-DD" (trading-clock date of the attempt: the order book that shows it),
     "params": {...}, "status": see below, "broker_id": str|null, "order_status": str|null,
     "created_at": ISO, "updated_at": ISO, "note": str,
     "cancel_after": ISO (entry orders only: when place_orders_daily or the watchdog cancels what
                     is left of it, workers.entry_wait; set when the intent is recorded, i.e. at
                     the send, and moved when an open intent is sent again after a crash)}

Statuses (kitefleet.states.IntentStatus; every change goes through INTENT_TRANSITIONS there,
which raises on a move no code path makes): ``pending`` (recorded; not known to be sent),
``unknown`` (the write timed out, hit a server error or got a cut-off answer: it may have been
placed), ``sent`` (broker id known), ``failed`` (Kite answered with a refusal: nothing should
have been placed; the book is still checked before the tag is sent again), ``unresolved``
(parked: new entries of its symbol are blocked until a person looks; ``doctor`` shows it),
``resolved`` (closed by a person, ``mark_resolved``).

What an unresolved intent blocks. Writes are *entries* (purpose ``entry``, ``entry2``...: they
add exposure) or *protective* (purpose starting with ``stop`` or ``exit``: the stop GTTs of
update_cnc_stoploss, the watchdog's exits: they reduce risk). An unresolved intent blocks new
entries of its symbol (``SymbolBlocked``; ``blocked_symbols()`` lists those symbols), whatever its
own purpose: yesterday's exit that timed out still bars buying more. It never blocks a protective
write of another tag: a stop or an exit is what a person would want placed while they look. The
unresolved tag itself is never sent again, whatever its purpose. A purpose that is neither entry
nor protective is treated as an entry (blocked): only the known protective ones are let through.

Restart behaviour (tests/workers/test_intents.py enforces each row):

    situation at restart                                   outcome
    ----------------------------------------------------   -----------------------------------------
    crash after intent, before send (today)                not in the book -> sent once now
    crash after send, before recording the id              found by tag -> id recorded, not resent
    write timed out / 5xx / cut-off answer                 book polled; found -> recorded; else the
      (WriteOutcomeUnknown)                                job stops (exit 7); the next run re-checks
                                                           the book and only then sends
    broker refused (BrokerRejected), sent again            status failed; before the tag is sent
                                                           again the book (GTT list) is checked: an
                                                           order with the tag is adopted (sent, not
                                                           resent); two -> unresolved; none -> sent
    earlier day's intent, never confirmed, not in book     unresolved; new entries of the symbol
                                                           blocked (SymbolBlocked); stops and exits
                                                           of the symbol (other tags) still go
    GTT intent, GTT with the same symbol/triggers/qty      that GTT's id recorded, not resent
    two orders in the book with one tag                    unresolved (that tag never resent), new
                                                           entries of the symbol blocked, reported
    intent already sent                                    no API call, the recorded id is returned

A ``cancel`` intent (:func:`cancel_order_once`: the halt cancelling an open bot entry) names
the order it cancels in ``params.order_id``; its outcome is read from that order in the book:
final (CANCELLED, or COMPLETE / REJECTED first) -> ``sent`` with the order's status; still open
-> ``failed`` (the cancel did not happen: the next poll sends it again under the same tag, a
cancel is harmless to repeat); not in today's book (an earlier session's DAY order, expired)
-> ``failed`` with that note.

Modifications (``modify_order_once``, kind ``modify``: the watchdog repricing an exit or the
bot's own GTT child order): ``params`` hold the ``order_id`` and the new values. The tag is not on
the order, so the book is read by order id: the order at the intent's price -> ``sent``; not ->
``failed`` (nothing was changed; the caller decides again under a new tag). A modification adds
no exposure and is a full replacement, so it is never parked as unresolved.

Never call ``send_order_once``/``send_gtt_once`` (or any IntentLog write) inside a
``StateStore.transaction()`` block: the outer transaction's copy of the state would be written
last and drop the intent. Read the state, leave the block, then send.

Tag collisions: a tag is 2 characters of the purpose plus 18 base32 characters (90 bits) of a
SHA-256 over user, job, session date, symbol and purpose; a collision among a million tags has a
probability near 1e-15. The same inputs always give the same tag, so a second entry for one symbol
on one day needs another purpose (e.g. ``entry2``).
"""

from __future__ import annotations

import base64
import hashlib
import logging
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Protocol

from kitefleet import clock
from kitefleet.errors import BrokerTemporaryError, ReconcileError
from kitefleet.states import INTENT_CLOSED, INTENT_OPEN, INTENT_TRANSITIONS, IntentStatus, Move
from workers.broker_errors import BrokerRejected, WriteOutcomeUnknown
from workers.faults import fault_point

log = logging.getLogger("workers.intents")

TAG_LENGTH = 20
# Short names for the members (callers and tests import them from here).
PENDING, UNKNOWN, SENT = IntentStatus.PENDING, IntentStatus.UNKNOWN, IntentStatus.SENT
FAILED, UNRESOLVED, RESOLVED = IntentStatus.FAILED, IntentStatus.UNRESOLVED, IntentStatus.RESOLVED
OPEN_STATUSES = INTENT_OPEN
#: what an intent writes: an order, a GTT, the cancellation of an order (``params.order_id``)
KINDS = ("order", "gtt", "cancel", "modify")
#: order statuses after which a cancel has nothing left to do
_FINAL_ORDER = frozenset({"COMPLETE", "CANCELLED", "REJECTED"})
#: closed intents older than this many days are forgotten by ``IntentLog.prune``
KEEP_INTENT_DAYS = 30
#: purposes of writes that reduce risk (stop GTTs, exits): never blocked by another tag's unresolved intent
PROTECTIVE_PREFIXES = ("stop", "exit", "cancel")
#: after a WriteOutcomeUnknown: how long to look for the order in the book before giving up (the
#: defaults of IntentLog's ``unknown_poll_seconds`` and ``unknown_poll_interval``)
UNKNOWN_POLL_SECONDS = 6.0
UNKNOWN_POLL_INTERVAL = 1.0


class SymbolBlocked(ReconcileError):
    """An intent for this symbol could not be reconciled: no new entry of the symbol (and never
    this tag again) until a person looks."""


def is_protective(purpose: str) -> bool:
    """A stop or exit: reduces risk, so another tag's unresolved intent does not block it."""
    return str(purpose).lower().startswith(PROTECTIVE_PREFIXES)


class Broker(Protocol):
    def orders(self) -> list[dict[str, Any]]: ...

    def get_gtts(self) -> list[dict[str, Any]]: ...

    def place_order(self, variety: str, **params: Any) -> str: ...

    def place_gtt(self, trigger_type: str, tradingsymbol: str, exchange: str, trigger_values: list[float],
                  last_price: float, orders: list[dict[str, Any]]) -> dict[str, Any]: ...


def make_tag(user: str, job: str, session_date: date, symbol: str, purpose: str) -> str:
    """Deterministic Kite order tag: <= 20 characters, [A-Z0-9] only."""
    text = "|".join((user, job, session_date.isoformat(), symbol.strip().upper(), purpose))
    digest = base64.b32encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii").rstrip("=")
    prefix = (re.sub(r"[^A-Za-z0-9]", "", purpose).upper() + "XX")[:2]
    return (prefix + digest)[:TAG_LENGTH]


def _order_tags(order: dict[str, Any]) -> set[str]:
    tags = set(order.get("tags") or [])
    if order.get("tag"):
        tags.add(order["tag"])
    return tags


def _same_number(a: Any, b: Any) -> bool:
    try:
        return abs(float(a) - float(b)) < 1e-6
    except (TypeError, ValueError):
        return False


def gtt_matches(gtt: dict[str, Any], symbol: str, params: dict[str, Any]) -> bool:
    """A broker GTT that this GTT intent would have created: symbol, trigger values, quantities."""
    condition = gtt.get("condition") or {}
    if str(condition.get("tradingsymbol", "")).upper() != symbol.upper():
        return False
    if params.get("exchange") and condition.get("exchange") not in (None, params["exchange"]):
        return False
    want, have = list(params.get("trigger_values") or []), list(condition.get("trigger_values") or [])
    if len(want) != len(have) or not all(_same_number(a, b) for a, b in zip(want, have, strict=True)):
        return False
    want_q = [int(o.get("quantity", 0)) for o in params.get("orders") or []]
    have_q = [int(o.get("quantity", 0)) for o in gtt.get("orders") or []]
    return want_q == have_q


@dataclass
class ReconcileReport:
    checked: int = 0
    #: tag -> broker id found for it (order id, or GTT trigger id as a string)
    found: dict[str, str] = field(default_factory=dict)
    #: today's intents the broker does not show: safe to send (again)
    resendable: list[str] = field(default_factory=list)
    #: parked: their symbols are blocked
    unresolved: list[str] = field(default_factory=list)
    #: tag -> every broker id that matched (more than one: a person should look)
    duplicates: dict[str, list[str]] = field(default_factory=dict)

    def summary(self) -> str:
        return (f"reconciled {self.checked} open intent(s): {len(self.found)} found, "
                f"{len(self.resendable)} resendable, {len(self.unresolved)} unresolved")

    def merge(self, other: ReconcileReport) -> None:
        self.checked += other.checked
        self.found.update(other.found)
        self.resendable += other.resendable
        self.unresolved += other.unresolved
        self.duplicates.update(other.duplicates)


@dataclass(frozen=True)
class SendResult:
    tag: str
    broker_id: str | None
    #: True when this call placed it; False when the broker already had it (or a person closed it)
    sent_now: bool
    order_status: str | None = None


class IntentLog:
    """The intents of one user's state file (a kitefleet.state.StateStore)."""

    def __init__(self, store: Any, *, unknown_poll_seconds: float = UNKNOWN_POLL_SECONDS,
                 unknown_poll_interval: float = UNKNOWN_POLL_INTERVAL) -> None:
        self.store = store
        self.unknown_poll_seconds = unknown_poll_seconds
        self.unknown_poll_interval = unknown_poll_interval

    # --- reading -----------------------------------------------------------------------------
    def all(self) -> dict[str, dict[str, Any]]:
        return dict(self.store.read().get("intents") or {})

    def get(self, tag: str) -> dict[str, Any] | None:
        return self.all().get(tag)

    def open_intents(self) -> dict[str, dict[str, Any]]:
        return {t: i for t, i in self.all().items() if i.get("status") in OPEN_STATUSES}

    def blocked_symbols(self) -> set[str]:
        """Symbols closed to new entries: those with an unresolved intent (of any purpose).
        Protective writes (``is_protective``) of these symbols are not blocked."""
        return {str(i["symbol"]).upper() for i in self.all().values() if i.get("status") == UNRESOLVED}

    # --- writing (each a state transaction) ----------------------------------------------------
    def record(self, tag: str, kind: str, symbol: str, purpose: str, params: dict[str, Any], *,
               job: str = "", session: date | None = None, cancel_after: datetime | None = None) -> dict[str, Any]:
        """Record the intent before the call. An existing intent with this tag keeps its history;
        if it is open (about to be sent again after a crash) its params become ``params``: the
        intent says what is actually sent (an entry is re-priced from a fresh quote), and its
        ``cancel_after`` the one of this send."""
        if kind not in KINDS:
            raise ValueError(f"intent kind must be one of {KINDS}, not {kind!r}")
        now = clock.now()
        with self.store.transaction() as state:
            intents = state.setdefault("intents", {})
            if tag in intents:
                current = intents[tag]
                if current.get("status") in OPEN_STATUSES and current.get("params") != params:
                    current["params"], current["updated_at"] = params, now.isoformat()
                if current.get("status") in OPEN_STATUSES and cancel_after is not None:
                    current["cancel_after"] = cancel_after.isoformat()
                return dict(current)
            INTENT_TRANSITIONS.check(None, PENDING, tag)
            intents[tag] = {
                "tag": tag, "kind": kind, "symbol": symbol.upper(), "purpose": purpose, "job": job,
                "session": (session or now.date()).isoformat(), "placed_on": now.date().isoformat(),
                "params": params, "status": PENDING, "broker_id": None, "order_status": None,
                "created_at": now.isoformat(), "updated_at": now.isoformat(), "note": "",
            }
            if cancel_after is not None:
                intents[tag]["cancel_after"] = cancel_after.isoformat()
            return dict(intents[tag])

    def _update(self, tag: str, *, status: IntentStatus, **changes: Any) -> dict[str, Any]:
        """Move the intent to ``status`` as INTENT_TRANSITIONS says: apply, keep it as it is
        (settled meanwhile by another job's reconcile), or raise (a move no code path makes)."""
        with self.store.transaction() as state:
            intent = (state.get("intents") or {}).get(tag)
            if intent is None:
                raise KeyError(f"no intent with tag {tag}")
            if INTENT_TRANSITIONS.check(intent.get("status"), status, tag) is Move.KEEP:
                return dict(intent)
            intent.update(changes, status=status)
            intent["updated_at"] = clock.now().isoformat()
            return dict(intent)

    def mark_sent(self, tag: str, broker_id: str, *, order_status: str | None = None) -> dict[str, Any]:
        return self._update(tag, status=SENT, broker_id=str(broker_id), order_status=order_status)

    def mark_unknown(self, tag: str, note: str) -> dict[str, Any]:
        return self._update(tag, status=UNKNOWN, note=note)

    def mark_failed(self, tag: str, note: str) -> dict[str, Any]:
        return self._update(tag, status=FAILED, note=note)

    def reopen(self, tag: str) -> dict[str, Any]:
        """A failed intent is tried again. Callers check the book first (``reconcile`` with
        ``include_failed``): ``_prepare`` does."""
        return self._update(tag, status=PENDING, placed_on=clock.today().isoformat())

    def mark_resolved(self, tag: str, note: str, *, broker_id: str | None = None) -> dict[str, Any]:
        """A person (or doctor) closes an intent after looking; unblocks its symbol."""
        return self._update(tag, status=RESOLVED, note=note, broker_id=broker_id)

    def prune(self, keep_days: int = KEEP_INTENT_DAYS, *, active_gtt_ids: Iterable[Any] = ()) -> int:
        """Forget closed intents older than ``keep_days`` (by ``placed_on``). Never dropped:

        ====================================================  =====================================
        intent                                                why it stays
        ====================================================  =====================================
        open (``pending``, ``unknown``)                       not settled: the next reconcile needs it
        ``unresolved``                                        blocks its symbol until a person looks
        of the current session (``session`` or ``placed_on``  its tag must never be sent again today
        today)
        GTT intent whose ``broker_id`` is in                  the bot's record of owning a live GTT
        ``active_gtt_ids`` (the GTT list just read)           (workers.gtt.stop_ownership)
        ====================================================  =====================================

        Dropped: ``sent``, ``failed``, ``resolved`` older than that. ``meta.intents_pruned_on`` is
        set to today (update_cnc_stoploss prunes once a day). Returns how many were dropped."""
        today = clock.today()
        cutoff = today.toordinal() - keep_days
        live = {str(i) for i in active_gtt_ids}

        def age(intent: dict[str, Any]) -> int:
            try:
                return date.fromisoformat(str(intent.get("placed_on") or "1970-01-01")).toordinal()
            except ValueError:
                return today.toordinal()  # unreadable date: keep it rather than guess

        with self.store.transaction() as state:
            intents = state.get("intents") or {}
            old = [t for t, i in intents.items()
                   if isinstance(i, dict) and i.get("status") in INTENT_CLOSED
                   and age(i) < cutoff
                   and today.isoformat() not in (i.get("session"), i.get("placed_on"))
                   and not (i.get("kind") == "gtt" and i.get("broker_id") is not None
                            and str(i["broker_id"]) in live)]
            for t in old:
                del intents[t]
            state.setdefault("meta", {})["intents_pruned_on"] = today.isoformat()
        return len(old)

    # --- reconciliation ------------------------------------------------------------------------
    # C901 on purpose: one branch per intent kind (order, cancel, modify, gtt) and broker answer: the
    # intents rows of docs/restart-behaviour.md, which the transition table of issue 14 replaces.
    def reconcile(self, kite: Broker, *, tags: list[str] | None = None,  # noqa: C901
                  include_failed: bool = False) -> ReconcileReport:
        """Settle open intents (all, or just ``tags``) against the broker. No API call when none
        is open. With ``include_failed``, failed intents are checked too: one the broker shows
        after all (a refusal that was not one) becomes sent (or unresolved if the tag is on
        several orders); one it does not show stays failed and is listed as resendable."""
        report = ReconcileReport()
        snapshot = self.all()
        statuses = OPEN_STATUSES + ((FAILED,) if include_failed else ())
        open_ = {t: i for t, i in snapshot.items() if i.get("status") in statuses
                 and (tags is None or t in tags)}
        if not open_:
            return report
        today = clock.today().isoformat()
        book: dict[str, list[dict[str, Any]]] = {}
        by_id: dict[str, dict[str, Any]] = {}
        order: dict[str, Any] | None
        if any(i["kind"] in ("order", "cancel", "modify") for i in open_.values()):
            for order in kite.orders():
                by_id[str(order.get("order_id"))] = order
                for tag in _order_tags(order):
                    book.setdefault(tag, []).append(order)
        gtts: list[dict[str, Any]] = []
        claimed: set[str] = set()
        if any(i["kind"] == "gtt" for i in open_.values()):
            gtts = kite.get_gtts()
            claimed = {str(i["broker_id"]) for i in snapshot.values()
                       if i.get("kind") == "gtt" and i.get("broker_id") is not None}

        decisions: dict[str, dict[str, Any]] = {}
        for tag, intent in sorted(open_.items(), key=lambda kv: kv[1].get("created_at", "")):
            report.checked += 1
            if intent["kind"] == "cancel":
                outcome = _cancel_outcome(intent, by_id)
                if outcome["status"] == SENT:
                    report.found[tag] = str(outcome["broker_id"])
                else:
                    report.resendable.append(tag)
                if outcome["status"] != intent.get("status"):  # a failed cancel still failed: as it is
                    decisions[tag] = outcome
                continue
            if intent["kind"] == "modify":
                params = intent.get("params") or {}
                order = by_id.get(str(params.get("order_id")))
                if order is not None and _same_number(order.get("price"), params.get("price")):
                    decisions[tag] = {"status": SENT, "broker_id": str(params.get("order_id")),
                                      "order_status": order.get("status")}
                    report.found[tag] = str(params.get("order_id"))
                else:
                    decisions[tag] = {"status": FAILED, "note": "modification not in the order book: not applied"}
                continue
            if intent["kind"] == "order":
                ids = sorted({str(o["order_id"]) for o in book.get(tag, [])})
                latest = {str(o["order_id"]): o for o in book.get(tag, [])}
            else:
                matches = sorted((g for g in gtts if str(g.get("id")) not in claimed
                                  and gtt_matches(g, intent["symbol"], intent.get("params") or {})),
                                 key=lambda g: int(g.get("id", 0)))
                ids = [str(g["id"]) for g in matches]
                latest = {str(g["id"]): g for g in matches}
            if len(ids) > 1:
                report.duplicates[tag] = ids
            if len(ids) > 1 and intent["kind"] == "order":
                # One tag, two orders: something already sent twice. Stop everything on this symbol.
                decisions[tag] = {"status": UNRESOLVED, "note": f"several orders carry this tag: {ids}"}
                report.unresolved.append(tag)
            elif ids:
                chosen = ids[0]  # GTT duplicates: keep the oldest, report the rest
                claimed.add(chosen)
                decisions[tag] = {"status": SENT, "broker_id": chosen,
                                  "order_status": latest[chosen].get("status")}
                report.found[tag] = chosen
            elif intent.get("placed_on") == today or intent.get("status") == FAILED:
                # A failed intent was refused by Kite itself (broker_errors maps nothing else to
                # BrokerRejected): absent from the book, it may be sent again even a day later.
                report.resendable.append(tag)
            else:
                decisions[tag] = {
                    "status": UNRESOLVED,
                    "note": (f"intent of {intent.get('placed_on')} never confirmed and not in today's "
                             f"{'order book' if intent['kind'] == 'order' else 'GTT list'}: check the "
                             f"account, then mark it resolved"),
                }
                report.unresolved.append(tag)

        if decisions:
            stamp = clock.now().isoformat()
            with self.store.transaction() as state:
                intents = state.get("intents") or {}
                for tag, change in decisions.items():
                    current = intents.get(tag)
                    # Another process of this user may have settled it meanwhile: keep its answer.
                    if current is None or current.get("status") not in statuses:
                        continue
                    INTENT_TRANSITIONS.check(current.get("status"), change["status"], tag)
                    current.update(change)
                    current["updated_at"] = stamp
        for tag in report.unresolved:
            log.warning("intent %s (%s %s) unresolved: %s", tag, open_[tag]["kind"], open_[tag]["symbol"],
                        decisions[tag]["note"])
        for tag, ids in report.duplicates.items():
            log.warning("intent %s matches several broker ids %s", tag, ids)
        return report


def intent_log_for(ctx: Any) -> IntentLog:
    """The intent log of a job's user (their state file, their mode)."""
    from kitefleet.state import StateStore

    return IntentLog(StateStore(ctx.home, ctx.user, ctx.settings.mode))


def _existing_result(intent: dict[str, Any]) -> SendResult:
    return SendResult(intent["tag"], intent.get("broker_id"), False, intent.get("order_status"))


def _prepare(kite: Broker, intents: IntentLog, tag: str, symbol: str, purpose: str) -> dict[str, Any] | None:
    """Reconcile before a write. Returns the existing intent if the write must not happen again,
    None if it may be sent (the intent, if any, is open or failed and the broker does not have it).
    Raises SymbolBlocked when this tag is unresolved, or when the write is an entry and the symbol
    has an unresolved intent (see the module docstring)."""
    # One read serves every check below: the state is parsed again only when reconcile wrote to it.
    snapshot = intents.all()
    if any(i.get("status") in OPEN_STATUSES for i in snapshot.values()):
        intents.reconcile(kite)
        snapshot = intents.all()
    intent = snapshot.get(tag)
    if intent is not None and intent.get("status") == FAILED:
        # "Refused" may have been wrong (or the intent predates the stricter error mapping):
        # look for the tag before sending it again; a found order is adopted, not duplicated.
        intents.reconcile(kite, tags=[tag], include_failed=True)
        snapshot = intents.all()
        intent = snapshot.get(tag)
    if intent is not None and intent.get("status") == UNRESOLVED:
        raise SymbolBlocked(f"{symbol}: intent {tag} is unresolved ({intent.get('note') or 'see doctor'}); it is "
                            "never sent again: a person checks the account and marks it resolved")
    if intent is not None and intent.get("status") in (SENT, RESOLVED):
        return intent  # no write: nothing to block
    parked = sorted(t for t, i in snapshot.items()
                    if i.get("status") == UNRESOLVED and str(i.get("symbol")).upper() == symbol.upper())
    if not is_protective(purpose) and parked:
        raise SymbolBlocked(f"{symbol}: unresolved intent(s) {', '.join(parked)}; no new entry for it until a "
                            "person checks the account and marks them resolved")
    if intent is not None and intent.get("status") == FAILED:
        intents.reopen(tag)
    return None


def _after_unknown(kite: Broker, intents: IntentLog, tag: str, exc: WriteOutcomeUnknown) -> SendResult:
    intents.mark_unknown(tag, str(exc))
    deadline = time.monotonic() + intents.unknown_poll_seconds
    while True:
        report = intents.reconcile(kite, tags=[tag])
        if tag in report.found:
            log.info("%s: outcome of the write found after the error: %s", tag, report.found[tag])
            intent = intents.get(tag) or {}
            return SendResult(tag, report.found[tag], True, intent.get("order_status"))
        if tag in report.unresolved:
            raise SymbolBlocked(f"{tag}: write outcome unknown and not reconcilable; a person must look")
        if time.monotonic() >= deadline:
            raise exc
        time.sleep(intents.unknown_poll_interval)


def send_order_once(kite: Broker, intents: IntentLog, tag: str, params: dict[str, Any], *, purpose: str,
                    job: str = "", session: date | None = None,
                    cancel_after: datetime | None = None) -> SendResult:
    """Place ``params`` (kite.place_order arguments incl. variety and tradingsymbol) at most once
    for ``tag``: reconcile, record the intent, send with ``tag=tag``, record the order id.
    ``cancel_after``: an entry's timeout, recorded with the intent before the send (so a kill
    right after the send still leaves it for the watchdog)."""
    symbol = str(params["tradingsymbol"])
    existing = _prepare(kite, intents, tag, symbol, purpose)
    if existing is not None:
        return _existing_result(existing)
    intents.record(tag, "order", symbol, purpose, params, job=job, session=session, cancel_after=cancel_after)
    fault_point("after_intent", symbol)
    try:
        order_id = kite.place_order(tag=tag, **params)
    except WriteOutcomeUnknown as exc:
        return _after_unknown(kite, intents, tag, exc)
    except BrokerRejected as exc:
        intents.mark_failed(tag, str(exc))
        raise
    fault_point("after_send", symbol)
    intents.mark_sent(tag, order_id)
    log.info("order %s sent for %s (%s): %s", tag, symbol, purpose, order_id)
    return SendResult(tag, str(order_id), True)


def send_gtt_once(kite: Broker, intents: IntentLog, tag: str, *, purpose: str, trigger_type: str,
                  tradingsymbol: str, exchange: str, trigger_values: list[float], last_price: float,
                  orders: list[dict[str, Any]], job: str = "", session: date | None = None) -> SendResult:
    """Place a GTT at most once for ``tag``. GTTs carry no tag: a GTT of the same symbol, trigger
    values and quantities in the GTT list (not claimed by another intent) counts as this one."""
    params = {"trigger_type": trigger_type, "exchange": exchange, "trigger_values": list(trigger_values),
              "last_price": last_price, "orders": orders}
    existing = _prepare(kite, intents, tag, tradingsymbol, purpose)
    if existing is not None:
        return _existing_result(existing)
    intents.record(tag, "gtt", tradingsymbol, purpose, params, job=job, session=session)
    fault_point("after_intent", tradingsymbol)
    try:
        answer = kite.place_gtt(trigger_type, tradingsymbol, exchange, list(trigger_values), last_price, orders)
    except WriteOutcomeUnknown as exc:
        return _after_unknown(kite, intents, tag, exc)
    except BrokerRejected as exc:
        intents.mark_failed(tag, str(exc))
        raise
    trigger_id = str(answer["trigger_id"])
    fault_point("after_send", tradingsymbol)
    intents.mark_sent(tag, trigger_id)
    log.info("GTT %s placed for %s (%s): %s", tag, tradingsymbol, purpose, trigger_id)
    return SendResult(tag, trigger_id, True)


def _cancel_outcome(intent: dict[str, Any], by_id: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """A cancel intent's outcome from the order it names (see the module docstring)."""
    oid = str((intent.get("params") or {}).get("order_id"))
    order = by_id.get(oid)
    if order is None:
        return {"status": FAILED, "note": f"order {oid} is not in today's book (a DAY order of an earlier "
                                          "session has expired): nothing to cancel"}
    status = str(order.get("status") or "")
    if status in _FINAL_ORDER:
        return {"status": SENT, "broker_id": oid, "order_status": status}
    return {"status": FAILED, "note": f"order {oid} is still {status}: the cancel did not happen; sent again"}


def cancel_order_once(kite: Any, intents: IntentLog, tag: str, order: dict[str, Any], *, purpose: str = "cancel",
                      job: str = "", session: date | None = None) -> SendResult:
    """Cancel the open ``order`` (a row of ``kite.orders()``) at most once for ``tag``:
    reconcile, record the intent, ``cancel_order``, then read the order back; an unknown
    outcome (timeout, 5xx) or a refusal is settled by reading the order, never by a blind
    resend. ``broker_id`` of the result: the order id; ``order_status``: its status after."""
    oid = str(order["order_id"])
    symbol = str(order.get("tradingsymbol", ""))
    variety = str(order.get("variety") or "regular")
    existing = _prepare(kite, intents, tag, symbol, purpose)
    if existing is not None:
        return _existing_result(existing)
    intents.record(tag, "cancel", symbol, purpose, {"variety": variety, "order_id": oid}, job=job,
                   session=session)
    fault_point("after_intent", symbol)
    fault_point("after_cancel_intent", symbol)  # the entry run's own cancel (its entry hit after_intent)
    try:
        kite.cancel_order(variety, oid)
    except WriteOutcomeUnknown as exc:
        intents.mark_unknown(tag, str(exc))
    except BrokerRejected as exc:
        # Kite refuses to cancel an order that filled (or was cancelled) meanwhile: the book says which.
        log.info("cancel of %s refused (%s); reading the order", oid, exc)
    fault_point("after_send", symbol)
    fault_point("after_cancel_send", symbol)
    report = intents.reconcile(kite, tags=[tag])
    intent = intents.get(tag) or {}
    if tag in report.found:
        log.info("order %s of %s cancelled (%s): %s", oid, symbol, purpose, intent.get("order_status"))
        return SendResult(tag, oid, True, intent.get("order_status"))
    raise BrokerTemporaryError(f"{symbol}: order {oid} is still open after its cancel ({intent.get('note')}); "
                              "the next look sends the cancel again")


def modify_order_once(kite: Any, intents: IntentLog, tag: str, order_id: str, params: dict[str, Any], *,
                      symbol: str, purpose: str, job: str = "", session: date | None = None,
                      variety: str = "regular") -> SendResult:
    """Modify order ``order_id`` to ``params`` (kite.modify_order keyword arguments) at most once
    for ``tag``: record the intent, send, record the outcome. An open intent of this tag is first
    settled from the book (the order at the new price: done, nothing sent)."""
    intent = intents.get(tag)
    if intent is not None and intent.get("status") in OPEN_STATUSES:
        intents.reconcile(kite, tags=[tag])
        intent = intents.get(tag)
    if intent is not None and intent.get("status") in (SENT, RESOLVED):
        return _existing_result(intent)
    if intent is None:
        intents.record(tag, "modify", symbol, purpose, {"order_id": str(order_id), "variety": variety, **params},
                       job=job, session=session)
    else:
        intents.reopen(tag)
    fault_point("after_intent", symbol)
    try:
        kite.modify_order(variety, str(order_id), **params)
    except WriteOutcomeUnknown as exc:
        intents.mark_unknown(tag, str(exc))
        if tag in intents.reconcile(kite, tags=[tag]).found:
            return SendResult(tag, str(order_id), True)
        raise
    except BrokerRejected as exc:
        intents.mark_failed(tag, str(exc))
        raise
    fault_point("after_send", symbol)
    intents.mark_sent(tag, str(order_id))
    log.info("order %s modified for %s (%s): %s", order_id, symbol, purpose, params)
    return SendResult(tag, str(order_id), True)
