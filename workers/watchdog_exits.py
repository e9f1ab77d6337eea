"""The watchdog's exits against the broker: send, follow in the order book, settle, reprice,
and tidy the GTTs after a fill. Over 400 lines because each of those writes carries its intent
and restart handling beside it (the restart rows of docs/restart-behaviour.md), kept in one place.
The records themselves and their state table are in
workers.exit_records; the decisions (when to exit, when to reprice) in workers.watchdog. This is
a mixin of workers.watchdog.Watchdog, split off for size: it reads the Watchdog's attributes
declared below. The restart rows it implements are in docs/restart-behaviour.md.

Exits go through workers.intents (tag = make_tag(user, JOB, session, symbol, "exit"|"exit2"|
"exit3")): at most MAX_EXIT_ATTEMPTS per symbol and session, never while one is pending, each
sized as held minus the CNC sells already open. No tag ever names two orders: a tag is sent again
only when it provably never reached the broker. An unresolved intent of another purpose (e.g.
yesterday's entry) does not stop an exit (workers.intents lets protective writes through). A
send that fails does not leave the symbol pending for the session:

* refused before it was processed (429 after the client's retries, connection refused: the
  intent is still ``pending``, or was never recorded because the reconcile read before it
  failed): ``not_sent`` at once, intent failed; the next poll may send the same tag;
* outcome unknown (WriteOutcomeUnknown: intent ``unknown``), or a ``sending`` record left by a
  killed process: while its tag is not in the book, after EXIT_SETTLE_GRACE_S wall seconds (and
  at least one more poll) it is settled: never recorded or ``pending`` → ``not_sent`` (same tag);
  ``unknown`` → intent failed, record ``lost`` (the next exit uses the next purpose's tag). A
  ``lost`` exit that shows up in the book after all is adopted as sent.

Exit prices come from watchdog_rules (marketable after a gap through the level), never below the
lower circuit limit of a fresh ``quote()``: a sell at the band queues there. An exit the exchange
rejects for its circuit limit is not an exit attempt (workers.exit_records); the symbol is
looked at again CIRCUIT_RETRY_SECONDS later. An exit that is OPEN while the LTP has fallen below
its limit is modified (one full replacement of type, quantity and price) down to LTP × 0.995
floored to the tick (clamped to the lower circuit), at most MAX_EXIT_MODIFICATIONS times (Kite
refuses the 26th); the modification counts are in the record. Every modification goes through
the intent protocol (workers.intents.modify_order_once, tag from ``exitmod:<order id>:<n>``),
and the record's count is written before the send.

The bot's GTT child (gap through the stop): when a bot stop GTT fires into a gap of more than its
5 % buffer, its SELL LIMIT (trigger × 0.95) rests above the market, and the watchdog would count
it as "already being sold" all day. Each open, untagged CNC SELL of a tracked symbol that the
watchdog does not follow yet is looked up once in the GTT list: if a triggered **bot** GTT
(workers.exit_records.bot_gtt_children: by ``orders[i].result.order_result.order_id``, never by
price or quantity) placed it, it is adopted as a record (purpose ``gtt_child``) and repriced like
an exit: down to floor(LTP × 0.995), clamped to the lower circuit, counting toward the same cap.
A person's GTT child, or any other sell, is never touched; its open quantity is subtracted from
the next exit.

After an exit fills, every **bot stop** GTT of the symbol (workers.gtt: the one predicate shared
with update_cnc_stoploss and doctor) is deleted (nothing left) or its leg reduced to the quantity
still held, so the broker-side stop cannot sell shares already sold. A person's GTT (OCO,
take-profit, a stop the bot did not place) is never changed: one that now sells more than is held
is reported with a WARNING (and by doctor). That step runs under kitefleet.locks.gtt_lock
(update_cnc_stoploss takes it around its plan-and-apply) and reads the holdings, the GTT list and
the stop record inside it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from kitefleet.errors import BrokerTemporaryError, KitefleetError, LockTimeout, ReconcileError
from kitefleet.locks import exit_lock, gtt_lock
from kitefleet.states import ExitStatus, OrderStatus
from workers import events
from workers.broker_errors import BrokerRejected
from workers.exit_records import (
    PENDING_STATUSES,
    adopted_child,
    bot_gtt_children,
    exit_pending,
    is_circuit_rejection,
    move,
    new_record,
    next_exit_purpose,
    pending_sell_quantity,
)
from workers.gtt import DELETE, StopOwnership, cuts_after_exit, reduced_legs, stop_ownership
from workers.intents import (
    FAILED,
    PENDING,
    RESOLVED,
    SENT,
    UNKNOWN,
    UNRESOLVED,
    IntentLog,
    make_tag,
    modify_order_once,
    send_order_once,
)
from workers.ledger import owned_quantities
from workers.portfolio import AccountSnapshot, held_quantities, reconcile_ledger, snapshot
from workers.strategy.watchdog_rules import ExitDecision, exit_order_params
from workers.watchdog_scope import ALL, OwnedView, exit_quantity, gtt_target

JOB = "hourly_candle_watchdog"
EXCHANGE = "NSE"
#: modifications of one exit order at most (Kite refuses the 26th)
MAX_EXIT_MODIFICATIONS = 10
#: how long the GTT tidy step waits for update_cnc_stoploss to finish with the GTT list
GTT_LOCK_TIMEOUT_S = 60.0
#: after a circuit rejection the symbol is looked at again this many simulated seconds later
CIRCUIT_RETRY_SECONDS = 60


@dataclass(frozen=True)
class Reprice:
    """Modify the open exit ``tag`` down to ``price``; ``capped``: its modifications are used up."""

    tag: str
    order_id: str
    price: float
    capped: bool = False


@dataclass
class Stats:
    started: bool = False
    polls: int = 0
    exits_placed: int = 0
    exits_planned: list[dict[str, Any]] = field(default_factory=list)
    gtt_actions: int = 0
    rate_limited: bool = False
    errors: int = 0
    first_poll_at: str | None = None
    last_poll_at: str | None = None


def last_quote_at(rec: Mapping[str, Any]) -> str | None:
    """When the symbol's newest fresh quote was read (workers.watchdog.Watchdog.quoted)."""
    quotes = rec.get("quotes") or []
    return str(quotes[-1][0]) if quotes else None


class ExitDesk:
    """Exits of one user and session (mixed into workers.watchdog.Watchdog)."""

    user: str
    kite: Any
    store: Any
    rule: str
    session: date
    day: dict[str, Any]
    tracked: dict[str, int]
    ticks: dict[str, float]
    dry_run: bool
    dirty: bool
    log: logging.Logger
    stats: Stats
    intents: IntentLog
    positions_refresh: timedelta
    settle_grace_s: float
    _unsettled: dict[str, float]
    _said_mod_cap: set[str]
    _sells_seen: set[str]
    _would_exit: set[tuple[str, float]]
    scope_mode: str
    scope: OwnedView | None
    _account: AccountSnapshot | None
    previous_poll_at: str | None

    def sym(self, symbol: str) -> dict[str, Any]:
        raise NotImplementedError

    def flush(self, force: bool = False) -> None:
        raise NotImplementedError

    def refresh_positions(self, now: datetime, account: AccountSnapshot | None = None) -> AccountSnapshot:
        raise NotImplementedError

    def _read_state(self) -> dict[str, Any]:
        raise NotImplementedError

    def _apply_scope(self, state: Mapping[str, Any], account: AccountSnapshot) -> None:
        raise NotImplementedError

    def _adopt_exit_intents(self) -> None:
        """Make the exit records agree with the intents after a restart (see the module table)."""
        session = self.session.isoformat()
        mine = {t: i for t, i in self.intents.all().items()
                if i.get("job") == JOB and i.get("session") == session and i.get("kind") == "order"
                and str(i.get("purpose", "")).startswith("exit")}
        for tag, intent in mine.items():
            symbol = str(intent["symbol"]).upper()
            exits = self.sym(symbol)["exits"]
            rec = next((e for e in exits if e.get("tag") == tag), None)
            if rec is None:
                params = intent.get("params") or {}
                rec = new_record(str(intent.get("purpose")), tag)
                move(rec, ExitStatus.SENDING, rule=self.rule, level=None, ltp=None, price=params.get("price"),
                     quantity=params.get("quantity"), decided_at=intent.get("created_at"), order_id=None,
                     order_status=None, filled=0, note="recovered from the intent log")
                exits.append(rec)
                self.dirty = True
            status = intent.get("status")
            if status == SENT and rec.get("status") != ExitStatus.SENT:
                move(rec, ExitStatus.SENT, order_id=intent.get("broker_id"),
                     order_status=intent.get("order_status") or rec.get("order_status"))
                self.dirty = True
            elif status == PENDING:
                # Reconcile just looked: today's book does not have it, so it never reached the broker.
                self.intents.mark_failed(tag, "not sent: the watchdog stopped before sending; it re-decides")
                move(rec, ExitStatus.NOT_SENT, note="stopped before sending")
                self.dirty = True
            elif status == UNKNOWN:
                # Its write may have reached the broker: the tag is used up (no tag names two orders).
                self.intents.mark_failed(tag, "write outcome unknown and not in the order book at the restart: "
                                         "given up, the next exit uses a new tag")
                move(rec, ExitStatus.LOST, note="outcome unknown and not in the order book: given up")
                self.dirty = True
            elif status == FAILED and rec.get("status") in PENDING_STATUSES:
                move(rec, ExitStatus.REJECTED if intent.get("note") else ExitStatus.NOT_SENT,
                     note=intent.get("note", ""))
                self.dirty = True
        self.flush()

    def exit(self, symbol: str, decision: ExitDecision, now: datetime) -> None:
        if self.dry_run:
            key = (symbol, decision.level)
            if key not in self._would_exit:
                self._would_exit.add(key)
                qty = self.tracked.get(symbol, 0)
                self.stats.exits_planned.append({"symbol": symbol, "quantity": qty, "price": decision.limit_price,
                                                 "level": decision.level, "ltp": decision.ltp})
                self.log.info("dry run: would SELL %d %s LIMIT %s CNC: %s", qty, symbol, decision.limit_price,
                              decision.reason)
            return
        try:
            # halt --flatten sells too (workers.flatten): one sizing and one tag choice at a time.
            with exit_lock(self.store.home, self.user, timeout=GTT_LOCK_TIMEOUT_S):
                self._exit_locked(symbol, decision, now)
        except LockTimeout as exc:
            self.stats.errors += 1
            self.log.warning("%s: exit not sent now (%s); the next poll decides again", symbol, exc)

    def _exit_locked(self, symbol: str, decision: ExitDecision, now: datetime) -> None:
        account = self.refresh_positions(now)  # sell what is really held, net of sells already open
        held = held_quantities(account).get(symbol, 0)
        scope = self.scope
        mode = scope.mode if scope is not None else self.scope_mode
        owned = scope.owned.get(symbol, 0) if scope is not None else 0
        # Only the bot's shares: min(owned - its open SELLs, held - all open CNC SELLs) under own.
        quantity = exit_quantity(mode, symbol, owned, held, account.orders,
                                 scope.bot_sell_ids if scope is not None else ())
        rec = self.sym(symbol)
        if quantity <= 0:
            self.log.info("%s: exit level crossed but nothing of the bot's left to sell (held %d, owned %s, "
                          "already being sold %d)", symbol, held, owned if mode != ALL else "all",
                          pending_sell_quantity(account.orders, symbol))
            return
        if exit_pending(rec["exits"]):
            return
        purpose = next_exit_purpose(rec["exits"])
        if purpose is None:
            return
        tag = make_tag(self.user, JOB, self.session, symbol, purpose)
        params = exit_order_params(symbol, quantity, decision, EXCHANGE)
        record = next((e for e in rec["exits"] if e.get("tag") == tag), None)
        if record is None:
            record = new_record(purpose, tag)
            rec["exits"].append(record)
        move(record, ExitStatus.SENDING, rule=decision.rule, level=decision.level, ltp=decision.ltp,
             price=decision.limit_price, quantity=quantity, decided_at=now.isoformat(),
             previous_poll_at=self.previous_poll_at, quoted_at=last_quote_at(rec), order_id=None,
             order_status=None, filled=0, note=decision.reason, retry_after=None)
        self.dirty = True
        self.flush()
        self.log.info("%s: SELL %d LIMIT %s CNC (%s) tag %s", symbol, quantity, decision.limit_price,
                      decision.reason, tag)
        try:
            result = send_order_once(self.kite, self.intents, tag, params, purpose=purpose, job=JOB,
                                     session=self.session)
        except BrokerRejected as exc:
            circuit = is_circuit_rejection(exc)
            wait = timedelta(seconds=CIRCUIT_RETRY_SECONDS) if circuit else self.positions_refresh
            move(record, ExitStatus.REJECTED, note=str(exc), retry_after=(now + wait).isoformat(), circuit=circuit)
            self.log.error("%s: exit refused by the broker%s: %s", symbol,
                           " (circuit: not counted as an attempt)" if circuit else "", exc)
        except ReconcileError as exc:
            # SymbolBlocked. Only this exit's own tag being unreconcilable uses the tag up; either
            # way the symbol is looked at again later, never skipped for the rest of the session.
            own = (self.intents.get(tag) or {}).get("status") in (UNRESOLVED, RESOLVED)
            move(record, ExitStatus.BLOCKED if own else ExitStatus.NOT_SENT, note=str(exc),
                 retry_after=(now + self.positions_refresh).isoformat())
            self.log.error("%s: exit not sent: %s", symbol, exc)
        except BrokerTemporaryError as exc:
            intent = self.intents.get(tag)
            if intent is None or intent.get("status") in (PENDING, FAILED):
                # The intent is marked unknown before any write that may have reached the broker;
                # still pending (or never recorded: the reconcile read before it failed) means the
                # request was refused before it was processed (429 after retries, connection
                # refused, workers.broker_errors.never_sent): the next poll may send the same tag.
                if intent is not None and intent.get("status") == PENDING:
                    self.intents.mark_failed(tag, f"not sent: {exc}")
                move(record, ExitStatus.NOT_SENT, note=f"not sent: {exc}")
                self.log.warning("%s: exit not sent (%s); the next poll decides again", symbol, exc)
            else:
                move(record, ExitStatus.UNKNOWN, note=str(exc))
                self._unsettled[tag] = time.monotonic()
                self.log.warning("%s: exit outcome unknown (%s); the order book will tell", symbol, exc)
        else:
            move(record, ExitStatus.SENT, order_id=result.broker_id, order_status=result.order_status)
            if result.sent_now:
                self.stats.exits_placed += 1
        self.dirty = True
        self.flush()

    def _update_exits(self, orders: Sequence[Mapping[str, Any]], now: datetime) -> None:
        by_id = {str(o.get("order_id")): o for o in orders}
        by_tag: dict[str, Mapping[str, Any]] = {}
        for o in orders:
            for tag in {o.get("tag"), *(o.get("tags") or [])} - {None}:
                by_tag[str(tag)] = o
        order: Mapping[str, Any] | None
        for symbol, rec in self.day["symbols"].items():
            for e in rec["exits"]:
                status = e.get("status")
                if status == ExitStatus.LOST and e["tag"] in by_tag:
                    # Given up on, then it did arrive: it is an exit like any other (the next one,
                    # if any, is sized net of it).
                    order = by_tag[e["tag"]]
                    self.intents.mark_sent(e["tag"], str(order.get("order_id")), order_status=order.get("status"))
                    move(e, ExitStatus.SENT)
                    status = ExitStatus.SENT
                    self.log.warning("%s: exit %s given up on is in the book after all: %s", symbol, e["tag"],
                                     order.get("order_id"))
                if status not in PENDING_STATUSES:
                    continue
                order = by_id.get(str(e.get("order_id"))) if e.get("order_id") else by_tag.get(e["tag"])
                if order is None:
                    if not e.get("order_id"):
                        self._settle_unsent(symbol, e)
                    continue
                self._unsettled.pop(e["tag"], None)
                if status in (ExitStatus.UNKNOWN, ExitStatus.SENDING) and not e.get("order_id"):
                    # The write timed out (or the process died) but the book shows it: settle the intent too.
                    self.intents.reconcile(self.kite, tags=[e["tag"]])
                    move(e, ExitStatus.SENT)
                filled = int(order.get("filled_quantity") or 0)
                price = order.get("price")
                changed = (str(order.get("order_id")) != e.get("order_id")
                           or order.get("status") != e.get("order_status") or filled != e.get("filled")
                           or (price is not None and float(price) != e.get("price")))
                if changed:
                    move(e, ExitStatus.SENT, order_id=str(order.get("order_id")), order_status=order.get("status"),
                         filled=filled)
                    if price is not None and float(price) > 0:
                        e["price"] = float(price)  # the book's price (after a modification) is the truth
                    self.dirty = True
                    self.log.info("%s: exit %s is %s at %s, %d of %s filled", symbol, e["order_id"],
                                  order.get("status"), e.get("price"), filled, e.get("quantity"))
                    if order.get("status") == OrderStatus.COMPLETE:
                        events.exit_filled(self.store.home, self.user, symbol, e)
                    if order.get("status") in (OrderStatus.CANCELLED, OrderStatus.REJECTED):
                        e["retry_after"] = now.isoformat()
                    if order.get("status") == OrderStatus.REJECTED and is_circuit_rejection(
                            order.get("status_message")):
                        # Not an exit attempt: the next one (fresh tag, priced at the band) may go
                        # after a pause, so a band that keeps moving cannot end the exits.
                        e["circuit"] = True
                        e["retry_after"] = (now + timedelta(seconds=CIRCUIT_RETRY_SECONDS)).isoformat()
                        self.log.warning("%s: exit %s rejected at the circuit limit (%s); not counted as an "
                                         "attempt", symbol, e["order_id"], order.get("status_message"))
        self._tidy_gtts(now)

    def _adopt_gtt_children(self, orders: Sequence[Mapping[str, Any]]) -> None:
        """Follow the bot's GTT child orders (see the module docstring). The GTT list is read only
        when an open, untagged CNC SELL of a tracked symbol appears that was not looked up yet."""
        if self.dry_run:
            return
        followed = {str(e.get("order_id")) for rec in self.day["symbols"].values() for e in rec["exits"]
                    if e.get("order_id")}
        new = {str(o.get("order_id")): o for o in orders
               if o.get("transaction_type") == "SELL" and o.get("product") == "CNC" and not o.get("tag")
               and o.get("status") == OrderStatus.OPEN and str(o.get("tradingsymbol", "")).upper() in self.tracked
               and str(o.get("order_id")) not in followed and str(o.get("order_id")) not in self._sells_seen}
        if not new:
            return
        children = bot_gtt_children(self.kite.get_gtts(), stop_ownership(self.store.read()),
                                    {str(o.get("tradingsymbol", "")).upper() for o in new.values()})
        self._sells_seen.update(new)
        for oid, (gid, symbol) in sorted(children.items()):
            if oid not in new:
                continue
            self.sym(symbol)["exits"].append(adopted_child(gid, new[oid]))
            self.dirty = True
            self.log.warning("%s: the bot's stop GTT %d fired; its SELL %s rests at %s: watching it (repriced if "
                             "the market is below it)", symbol, gid, oid, new[oid].get("price"))
        self.flush()

    def _settle_unsent(self, symbol: str, e: dict[str, Any]) -> None:
        """An exit whose send failed (or whose process died sending it) and whose tag the book
        does not show. Left pending, it would block the symbol for the rest of the session; after
        a grace it is given up: ``not_sent`` (same tag next time) when it never reached the
        broker, ``lost`` (the next purpose's tag: no tag may name two orders) when it may have."""
        tag = e["tag"]
        first = self._unsettled.setdefault(tag, time.monotonic())
        if time.monotonic() - first < self.settle_grace_s:
            return
        intent = self.intents.get(tag)
        status = (intent or {}).get("status")
        if status == PENDING:
            # Recorded, never marked unknown: the write was not made, or refused unprocessed.
            status = (self.intents.mark_failed(tag, "not in the order book: never sent") or {}).get("status")
            never_sent = status == FAILED
        elif status == UNKNOWN:
            status = (self.intents.mark_failed(tag, "write outcome unknown and not in the order book after "
                                               f"{self.settle_grace_s:g} s: given up, the next exit uses "
                                               "a new tag") or {}).get("status")
            never_sent = False
        else:
            never_sent = status in (None, FAILED)
        if status == SENT:  # another path recorded it meanwhile; the next book read shows it
            move(e, ExitStatus.SENT, order_id=(intent or {}).get("broker_id"))
        elif status in (UNRESOLVED, RESOLVED):
            move(e, ExitStatus.BLOCKED, note=(intent or {}).get("note", ""))
        elif never_sent:
            move(e, ExitStatus.NOT_SENT, note="not in the order book: never sent; the next poll may resend it")
        else:
            move(e, ExitStatus.LOST, note="outcome unknown and not in the order book: given up")
        self._unsettled.pop(tag, None)
        self.dirty = True
        self.log.warning("%s: exit %s not in the order book %g s after its send failed: %s", symbol, tag,
                         self.settle_grace_s, e["status"])

    def reprice(self, symbol: str, ltp: float, now: datetime, plans: Sequence[Reprice]) -> None:
        """Apply the poll's reprice decisions (workers.watchdog.decide_symbol): an open exit whose
        limit the market has fallen below would never fill, so it is modified down to the
        marketable limit. A modification is a full replacement of price, type and quantity, so
        repeating one is harmless."""
        if self.dry_run:
            return
        exits = {str(e.get("tag")): e for e in self.sym(symbol)["exits"]}
        for plan in plans:
            e = exits[plan.tag]
            done = int(e.get("modifications") or 0)
            if plan.capped:
                if e["tag"] not in self._said_mod_cap:
                    self._said_mod_cap.add(e["tag"])
                    self.log.error("%s: exit %s rests at %s above the LTP %s, but it was modified %d times "
                                   "already: leaving it (the GTT stays the backstop)", symbol, e["order_id"],
                                   e.get("price"), ltp, done)
                continue
            new = plan.price
            e["modifications"] = done + 1  # attempts count: a refused one must not repeat without end
            self.dirty = True
            self.flush()  # the count is on disk before the write (a restart never exceeds the cap)
            tag = make_tag(self.user, JOB, self.session, symbol, f"exitmod:{e['order_id']}:{done + 1}")
            params = {"order_type": "LIMIT", "quantity": int(e.get("quantity") or 0), "price": new,
                      "validity": "DAY"}
            try:
                modify_order_once(self.kite, self.intents, tag, str(e["order_id"]), params, symbol=symbol,
                                  purpose="exitmod", job=JOB, session=self.session)
            except BrokerRejected as exc:
                self.stats.errors += 1
                self.log.warning("%s: exit %s not repriced to %s: %s", symbol, e["order_id"], new, exc)
                continue
            except (BrokerTemporaryError, ReconcileError) as exc:
                # Outcome unknown at worst: the next book read shows the price, the next poll decides.
                self.stats.errors += 1
                self.log.warning("%s: repricing exit %s to %s failed (%s); will look again", symbol,
                                 e["order_id"], new, exc)
                continue
            old = e.get("price")
            e.update(price=new, ltp=ltp, repriced_at=now.isoformat())
            self.log.warning("%s: exit %s rested at %s above the LTP %s: modified to %s", symbol, e["order_id"],
                             old, ltp, new)

    def _tidy_gtts(self, now: datetime) -> None:
        """After an exit filled (partly or wholly): no stop GTT may sell more than is still held."""
        due = [(s, e) for s, rec in self.day["symbols"].items() for e in rec["exits"]
               if int(e.get("filled") or 0) > int((e.get("gtt") or {}).get("synced_filled") or 0)]
        if not due or self.dry_run:
            return
        try:
            with gtt_lock(self.store.home, self.user, timeout=GTT_LOCK_TIMEOUT_S):
                # Holdings and GTTs read inside the lock: update_cnc_stoploss plans from them too.
                account = self._tidy_gtts_locked(due, now)
        except KitefleetError as exc:  # LockTimeout: the stop job held it too long; look again later
            self.stats.errors += 1
            self.log.warning("GTTs not tidied after the exit fill (%s); will look again", exc)
            return
        self._account = account
        self._apply_scope(self._read_state(), account)

    def _tidy_gtts_locked(self, due: list[tuple[str, dict[str, Any]]], now: datetime) -> AccountSnapshot:
        account = snapshot(self.kite)
        gtts = self.kite.get_gtts()
        if self.scope_mode == ALL:
            state = self.store.read()
        else:
            # The exit's fill leaves the ledger now (a bot SELL), not at the next stop run: what the
            # bot's stop may still sell is the owned shares left, never a person's.
            with self.store.transaction() as state:
                reconcile_ledger(state, account, gtts, self.session)
        ownership = stop_ownership(state)
        owned = owned_quantities(state.get("ledger"))
        for symbol, e in due:
            held = held_quantities(account).get(symbol, 0)
            target = gtt_target(self.scope_mode, owned.get(symbol, 0), held)
            gtt = e.setdefault("gtt", {"synced_filled": 0, "actions": []})
            ok = True
            mine = ownership
            if target < held:
                # A person's shares are left: a stop-shaped GTT the bot has no record of may be
                # theirs, so nothing is adopted here (workers.gtt adopts only without other owners).
                mine = StopOwnership(ownership.owned_ids, ownership.known_symbols | {symbol})
            cuts, _ = cuts_after_exit(gtts, symbol, target, mine)
            _, reports = cuts_after_exit(gtts, symbol, held, mine)  # a person's GTT: against all held
            for line in reports:
                self.log.warning("%s", line)
            for action in cuts:
                try:
                    if action.action == DELETE:
                        self.kite.delete_gtt(action.gtt_id)
                    else:
                        cond = action.gtt.get("condition") or {}
                        self.kite.modify_gtt(action.gtt_id, str(action.gtt.get("type", "single")), symbol,
                                             cond.get("exchange", EXCHANGE), list(cond.get("trigger_values") or []),
                                             float(cond.get("last_price") or 0.0), reduced_legs(action.gtt, target))
                except KitefleetError as exc:
                    # Deleting/reducing is idempotent: the next look at the GTT list decides again.
                    ok = False
                    self.stats.errors += 1
                    self.log.warning("%s: GTT %d not %sd (%s); will look again", symbol, action.gtt_id,
                                     action.action, exc)
                    continue
                self.stats.gtt_actions += 1
                gtt["actions"].append({"id": action.gtt_id, "action": action.action,
                                       "quantity": action.quantity, "at": now.isoformat()})
                self.log.info("%s: GTT %d %s after the exit fill (%d of the bot's shares still held, %d in "
                              "all)", symbol, action.gtt_id, "deleted" if action.action == DELETE else "reduced",
                              target, held)
            if ok:
                gtt["synced_filled"] = int(e.get("filled") or 0)
            self.dirty = True
        return account
