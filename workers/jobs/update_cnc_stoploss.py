"""``update_cnc_stoploss``: one broker-side stop GTT per held CNC symbol, at the previous session's low.

Over 400 lines because the job's contract below is a sixth of it; the code is one run whose locked
section, reconcile, prune and record share the state file and the GTT lock.

    python -m workers update_cnc_stoploss --user Som [--dry-run] [--json]

Held = holdings ``quantity`` + ``t1_quantity`` + today's CNC net position (workers.portfolio), so
today's filled buys get their stop the same day and a symbol sold today counts as gone.

What it protects (``MANAGE_SCOPE``, workers.portfolio.manage_scope): under ``own`` (the default)
only the shares the bot owns (the ledger, workers.ledger, brought up to today's order book first:
entry fills in, SELL trades out), at most what is held: ``min(owned, held)``; a symbol with owned
and hand-bought shares gets a stop for the owned quantity. A holding the bot does not own is not
planned at all: its GTTs stay exactly as they are, even a bot stop that code before the ledger
gave it (WARNING "bot stop on an unowned holding: run adopt or release"). Under ``all`` (legacy)
every held share, with a WARNING at each start. For each protected symbol (rules in
workers.strategy.stops and docs/trading-rules.md):

* stop = low of the previous **completed** session (the NSE calendar export and the shared
  clock; during a session that is yesterday's, after 15:30 today's), floored to the tick; the
  stop recorded in state (else the trigger of the symbol's managed stop GTT) is never lowered;
  a stop at or above the LTP is reported and not placed (Kite would fire it at once) **unless the
  symbol has no stop GTT at all**: then a fallback stop below the LTP is placed, recorded with
  source ``fallback``, and a WARNING asks a person to look;
* the GTT: single trigger at the stop, one SELL LIMIT CNC leg for the full held quantity, limit
  ``GTT_LIMIT_BUFFER_PERCENT`` (default 5) below the trigger, floored to the tick;
* only the bot's own stop GTTs are managed (workers.gtt, one predicate shared with the watchdog
  and doctor): ids recorded in state or in this job's GTT intents, and, on a held symbol the state
  has no record of (lost or migrated state), stop-shaped ones (single SELL leg, trigger below the
  GTT's ``last_price``). Two-leg (OCO) and take-profit GTTs placed by a person are never modified
  or deleted and never set the floor;
* a managed GTT whose trigger, limit or quantity differ is **modified in place** (the legacy job
  deleted and re-created, leaving moments without a stop); duplicates are deleted; owned stop
  GTTs on symbols no longer held are deleted; nothing changed -> nothing sent.

Reading the holdings and the GTT list, planning and writing happen under the user's GTT lock
(kitefleet.locks.gtt_lock, also taken by the watchdog when it cuts GTTs after an exit): neither
job writes back a GTT the other has just changed. Waiting more than 60 s for it fails the run
(exit 1); the next run plans afresh.

Writes. A new GTT goes through workers.bot_stop.send_stop_gtt (the one place every bot stop is
created, also the stop at an entry's fill) and workers.intents.send_gtt_once with the tag
``make_tag(user, "update_cnc_stoploss", session, symbol, purpose)``, purpose
``stop:<trigger>:<qty>``, or ``stop:<trigger>:<qty>:<n>`` (n = 2, 3, ...) when the stop GTT placed
under the earlier purpose that day is gone (deleted by hand, or fired and its limit did not
fill): a tag that was sent is never sent again, so a new GTT needs a new tag. (A GTT carries no
tag: a crash after the send is resolved by finding the GTT of that symbol, trigger and
quantity.) Open intents are reconciled before any write. Modifications and deletions are not
intents: they are full replacements and removals, so repeating one is harmless, and the next
run plans again from the broker's GTT list. A write whose outcome is unknown stops the run
(exit 7); the next run re-reads the GTT list before doing anything. An unresolved intent on a
symbol (an entry or exit whose outcome nobody knows) does not freeze its stop: stops always
follow the live holdings. The test-only fault point ``after_send`` (workers.faults) also follows
a modification and a deletion: the broker has it, the state not.

State (data/trading_state_<User>.json): ``stops[SYMBOL] = {stop, source: "prev_session_low" |
"fallback" | "legacy", gtt_id, trigger, limit_price, quantity, updated_at}`` for every held symbol
whose stop GTT is or was in place (written only once the broker has it; removed when the symbol is
no longer held). ``stops[S]`` is the one home of a stop's GTT id (schema 2,
kitefleet.state_migrations); ``gtt_id`` is the id of an **active** stop GTT or null: when the GTT
is gone and no new one could be placed the id is cleared, and ``stop`` stays as the never-lower
floor. The position record gets the legacy annotations ``stop_loss``, ``stop_loss_source``
(``previous_day_low_gtt``, or ``fallback_gtt``), ``stop_loss_updated``, and ``gtt_order_id``,
which is written only as a copy of ``stops[S].gtt_id`` and never read; positions follow the held
quantities (workers.portfolio.sync_held_positions). ``--dry-run`` prints the changes, sends and
writes nothing, and takes no GTT lock.

Intents: once a day, after the stop record is written, closed intents older than 30 days are
forgotten (workers.intents.IntentLog.prune): never an open or unresolved one, one of the current
session, or a GTT intent whose GTT is active in the list this run read.

Exit codes: 0 done (stops not placed and fallbacks are reported, not failures); 1 the GTT lock
was not free within 60 s; 5 Kite session; 6 an intent the broker cannot confirm blocked a write
(reported per symbol, the others proceed); 7 broker unavailable or a write's outcome unknown.
"""

from __future__ import annotations

import argparse
import contextlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from kitefleet import clock
from kitefleet.errors import LockTimeout
from kitefleet.exitcodes import ExitCode
from kitefleet.locks import gtt_lock
from kitefleet.state import StateStore
from kitefleet.state_migrations import fold_legacy_stop_ids
from workers import events, loss_limit
from workers.bot_stop import send_stop_gtt
from workers.broker_errors import BrokerRejected, WriteOutcomeUnknown
from workers.context import JobContext
from workers.faults import fault_point
from workers.gtt import bot_stops, gtt_symbol, stop_ownership
from workers.intents import (
    KEEP_INTENT_DAYS,
    IntentLog,
    SymbolBlocked,
)
from workers.portfolio import (
    ALL,
    OWN,
    SCOPE_ALL_WARNING,
    UNOWNED_BOT_STOP,
    Scope,
    held_quantities,
    manage_scope,
    reconcile_ledger,
    record_entry_fills,
    snapshot,
    sync_held_positions,
    unowned_bot_stops,
)
from workers.strategy.stops import (
    CREATE,
    DELETE,
    FALLBACK,
    MODIFY,
    NONE,
    PREV_SESSION_LOW,
    PRICE_TOLERANCE,
    DesiredGtt,
    StopDecision,
    StopPlanAction,
    decide_stop,
    fixed_band_percent,
    gtt_limit_price,
    gtt_params,
    plan_gtt_changes,
    previous_session_low,
    scale_for_adjustment,
    stop_floors,
)

TAKES_JOB_LOCK = True
JOB = "update_cnc_stoploss"
EXCHANGE = "NSE"
SOURCE = PREV_SESSION_LOW
LEGACY_SOURCE = {PREV_SESSION_LOW: "previous_day_low_gtt", FALLBACK: "fallback_gtt"}
#: calendar days of daily candles read to find the previous completed session (holidays included)
CANDLE_LOOKBACK_DAYS = 14
#: how long to wait for the user's GTT lock (the watchdog holds it for one GTT tidy step)
GTT_LOCK_TIMEOUT_S = 60.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON summary line at the end")


@dataclass
class Outcome:
    symbol: str
    action: str
    gtt_id: int | None = None
    trigger: float | None = None
    limit_price: float | None = None
    quantity: int | None = None
    note: str = ""
    done: bool = False
    error: str | None = None
    source: str = SOURCE
    #: the stop to record when it differs from the GTT's trigger (a kept GTT under a higher floor)
    stop: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"symbol": self.symbol, "action": self.action, "gtt_id": self.gtt_id, "trigger": self.trigger,
                "limit_price": self.limit_price, "quantity": self.quantity, "note": self.note,
                "done": self.done, "error": self.error, "source": self.source}


def decide_stops(md: Any, kite: Any, held: dict[str, int], state: dict[str, Any],
                 managed: Mapping[str, list[Mapping[str, Any]]], now: datetime, buffer: float,
                 min_gap: float,
                 ) -> tuple[dict[str, StopDecision], dict[str, float], dict[str, float], dict[str, float],
                            dict[str, Mapping[str, Any]]]:
    """Per held symbol: the stop decision, its tick size, its LTP, and (where the rule stop
    cannot be placed) the fallback stop that would be placed if the symbol had no stop GTT: a
    kept GTT at that level is a fallback placed earlier (e.g. by a run killed after the send);
    and each symbol's ``quote()`` row (its circuit band prices the GTT leg)."""
    last_completed: date = md.calendar.last_completed_session(now)
    start = last_completed - timedelta(days=CANDLE_LOOKBACK_DAYS)
    ltp_answer = kite.quote(*[f"{EXCHANGE}:{s}" for s in sorted(held)]) if held else {}
    broker_floor = stop_floors(managed)
    recorded_stops = state.get("stops") or {}
    decisions: dict[str, StopDecision] = {}
    ticks: dict[str, float] = {}
    ltps: dict[str, float] = {}
    fallbacks: dict[str, float] = {}
    for sym in sorted(held):
        tick = md.tick_size(sym)
        candles = md.daily_candles(sym, start, last_completed, last_completed=last_completed, now=now)
        prev_low = previous_session_low(candles, now)
        rec = (recorded_stops.get(sym) or {}).get("stop")
        recorded = float(rec) if isinstance(rec, int | float) else broker_floor.get(sym)
        ltp = float((ltp_answer.get(f"{EXCHANGE}:{sym}") or {}).get("last_price") or 0.0)
        decisions[sym] = decide_stop(prev_low, recorded, ltp or None, tick, has_stop_gtt=bool(managed.get(sym)),
                                     buffer_percent=buffer, min_gap_percent=min_gap)
        if managed.get(sym) and not decisions[sym].place:
            bare = decide_stop(prev_low, recorded, ltp or None, tick, has_stop_gtt=False, buffer_percent=buffer,
                               min_gap_percent=min_gap)
            if bare.source == FALLBACK and bare.stop is not None:
                fallbacks[sym] = bare.stop
        ticks[sym], ltps[sym] = tick, ltp
    quotes = {sym: ltp_answer.get(f"{EXCHANGE}:{sym}") or {} for sym in held}
    return decisions, ticks, ltps, fallbacks, quotes


def _kept_stop(rec: Mapping[str, Any], gtt_trigger: float, decision: StopDecision | None,
               fallback: float | None) -> tuple[float, str]:
    """(stop, source) to record for a kept stop GTT: the recorded stop stays the floor when there
    is one; else the GTT's trigger, a ``fallback`` if that is where the fallback rule puts it."""
    recorded = rec.get("stop")
    if isinstance(recorded, int | float) and not isinstance(recorded, bool):
        return float(recorded), str(rec.get("source") or SOURCE)
    if fallback is not None and abs(fallback - gtt_trigger) < PRICE_TOLERANCE:
        return gtt_trigger, FALLBACK
    candidate = decision.candidate if decision is not None else None
    if candidate is not None and abs(candidate - gtt_trigger) < PRICE_TOLERANCE:
        return gtt_trigger, PREV_SESSION_LOW
    return gtt_trigger, str(rec.get("source") or SOURCE)


def _gtt_locked(ctx: JobContext) -> contextlib.ExitStack[bool | None]:
    """The user's GTT lock (none for a dry run); says so in the log when it has to wait."""
    stack = contextlib.ExitStack()
    if ctx.dry_run:
        return stack
    try:
        stack.enter_context(gtt_lock(ctx.home, ctx.user, timeout=0))
    except LockTimeout:
        ctx.log.info("waiting for %s's GTT lock (another job is changing GTTs), up to %.0f s", ctx.user,
                     GTT_LOCK_TIMEOUT_S)
        stack.enter_context(gtt_lock(ctx.home, ctx.user, timeout=GTT_LOCK_TIMEOUT_S))
    return stack


def run(ctx: JobContext) -> int:
    from workers.kite_client import get_kite
    from workers.marketdata import market_data_for

    kite = get_kite(ctx)
    md = market_data_for(ctx)
    store = StateStore(ctx.home, ctx.user, ctx.settings.mode)
    with _gtt_locked(ctx):
        code = _run_locked(ctx, kite, md, store, IntentLog(store))
    # LOSS_LIMIT_ACTION=flatten after a trip: outside the GTT lock, which the flatten's tidy takes.
    loss_limit.flatten_when_unwatched(ctx, kite, store, clock.now())
    return code


# C901 on purpose: the stop job's one locked pass (read, scope, decide, plan, send, record) in order;
# the steps share the account snapshot and the decisions, and are split out where they are pure.
def _run_locked(ctx: JobContext, kite: Any, md: Any, store: StateStore, intents: IntentLog) -> int:  # noqa: C901
    log = ctx.log
    now = clock.now()
    today = now.date()
    if not ctx.dry_run:
        report = intents.reconcile(kite)
        if report.checked:
            log.info("%s", report.summary())
    account = snapshot(kite)
    held_all = held_quantities(account)
    gtts = list(kite.get_gtts())
    if not ctx.dry_run:
        with store.transaction() as state:
            # A position migrate-state brought in with a legacy GTT id gets its stop record first.
            fold_legacy_stop_ids(state)
            record_entry_fills(state, account.orders, today, now)
            sync_held_positions(state, account, now)
            ledger_report = reconcile_ledger(state, account, gtts, today, settle_shortfalls=True)
    if not ctx.dry_run:
        _carry_over_adjustments(ctx, md, store, held_all, today)
    state = store.read()
    fold_legacy_stop_ids(state)  # in memory: a dry run plans as the real run would
    if ctx.dry_run:
        ledger_report = reconcile_ledger(state, account, gtts, today, settle_shortfalls=True)
    for line in ledger_report.changes:
        log.info("ledger: %s", line)
    for line in ledger_report.shortfalls:
        log.warning("ledger: %s", line)
    loss_limit.check_when_unwatched(ctx, kite, store, account, md.calendar, now, gtts)
    scope = manage_scope(state, held_all, str(ctx.settings.get("MANAGE_SCOPE", OWN)))
    if scope.mode == ALL:
        log.warning("%s", SCOPE_ALL_WARNING)
    held = scope.protect
    # A holding the bot does not own is not planned at all: its GTTs (a person's, or a bot stop
    # today's code gave it before the ledger) are left exactly as they are, never trailed or deleted.
    untouched = [s for s in scope.unmanaged if s not in held]
    for sym in unowned_bot_stops(state, scope):
        log.warning("%s: %s (GTT %s left as it is)", sym, UNOWNED_BOT_STOP, state["stops"][sym]["gtt_id"])
    gtts = [g for g in gtts if gtt_symbol(g) not in untouched]
    ownership = stop_ownership(state)
    events.fills(ctx.home, ctx.user, account.orders)
    events.gtts_triggered(ctx.home, ctx.user, gtts, ownership.owned_ids)
    managed = bot_stops(gtts, ownership, adopt_on=held, exchange=EXCHANGE)
    buffer = ctx.settings.number("GTT_LIMIT_BUFFER_PERCENT")
    min_gap = ctx.settings.number("STOP_MIN_GAP_PERCENT")
    decisions, ticks, ltps, fallbacks, quotes = decide_stops(md, kite, held, state, managed, now, buffer, min_gap)
    desired: dict[str, DesiredGtt] = {}
    d: StopDecision | None
    for sym, d in decisions.items():
        if d.place and d.stop is not None:
            lower = quotes[sym].get("lower_circuit_limit")
            limit = gtt_limit_price(d.stop, buffer, ticks[sym], band_percent=fixed_band_percent(quotes[sym]),
                                    lower_circuit=float(lower) if lower else None)
            desired[sym] = DesiredGtt(d.stop, limit, held[sym])
    actions = plan_gtt_changes(held, desired, gtts, EXCHANGE, ownership=ownership)
    recorded_stops = state.get("stops") or {}
    outcomes: list[Outcome] = []
    for a in actions:
        note = a.reason
        d = decisions.get(a.symbol)
        source = SOURCE
        if d is not None and a.action in (NONE, CREATE, MODIFY):
            if d.reason:
                note = f"{note}; {d.reason}" if note else d.reason
            rec = recorded_stops.get(a.symbol) or {}
            # A kept stop keeps the source it was placed with (a fallback stays a fallback).
            source = d.source if d.moved or rec.get("stop") != d.stop else str(rec.get("source") or d.source)
        stop: float | None = None
        if a.action == NONE and a.gtt_id is not None and a.symbol not in desired and a.trigger is not None:
            # A GTT kept as it is (no stop to place now) is recorded as it stands, so that one
            # sent by a run killed before its record is in stops[S] after this run.
            stop, source = _kept_stop(recorded_stops.get(a.symbol) or {}, a.trigger, decisions.get(a.symbol),
                                      fallbacks.get(a.symbol))
        outcomes.append(Outcome(a.symbol, a.action, a.gtt_id, a.trigger, a.limit_price, a.quantity, note,
                                source=source, stop=stop))

    if ctx.dry_run:
        _print(ctx, outcomes, decisions, ltps, dry_run=True)
        if ctx.args.json:
            print(json.dumps(_summary(outcomes, decisions, scope)))
        return ExitCode.OK

    exit_code = ExitCode.OK
    try:
        for out, action in zip(outcomes, actions, strict=True):
            if out.action == NONE:
                continue
            try:
                _apply(ctx, kite, intents, out, action, ltps, today)
            except SymbolBlocked as exc:
                out.error = str(exc)
                exit_code = ExitCode.RECONCILE_FAILED
                events.reconcile_failed(ctx.home, ctx.user, JOB, out.error)
            except BrokerRejected as exc:
                out.error = exc.kite_message or str(exc)
                log.warning("%s: broker refused the %s: %s", out.symbol, out.action, out.error)
            except WriteOutcomeUnknown as exc:
                out.error = str(exc)
                log.error("%s: %s; stopping: the next run re-reads the GTT list first", out.symbol, exc)
                exit_code = ExitCode.BROKER_TEMPORARY
                break
    finally:
        # Stop records of unowned holdings are kept as they are (``held`` names what stays recorded).
        _record(store, outcomes, {**{s: held_all[s] for s in untouched}, **held}, now)
        _print(ctx, outcomes, decisions, ltps, dry_run=False)
        if ctx.args.json:
            print(json.dumps(_summary(outcomes, decisions, scope)))
    _prune_once_a_day(ctx, store, intents, gtts, today)
    return exit_code


def _carry_over_adjustments(ctx: JobContext, md: Any, store: StateStore, held: Mapping[str, int],
                            today: date) -> None:
    """A held symbol whose history changed today (a split or bonus ex-date: workers.marketdata's
    daily check) gets its stop floor and its ATR anchor and stop scaled by the same factor, once
    (``state["adjustments"][S] = {"day", "factor"}``): the old floor would sit above the new price
    and freeze the stop ("stop >= LTP"). The stop GTT itself is disabled by Kite on the ex-date;
    the plan places a new one for the quantity held, and raises it when the new shares arrive."""
    factors = {sym: f for sym in sorted(held) if held[sym] > 0 and (f := md.adjustment(sym, today))}
    if not factors:
        return
    with store.transaction() as state:
        done = state.setdefault("adjustments", {})
        for sym, factor in factors.items():
            if (done.get(sym) or {}).get("day") == today.isoformat():
                continue
            tick = md.tick_size(sym)
            records: list[tuple[dict[str, Any], tuple[str, ...]]] = []
            rec = (state.get("stops") or {}).get(sym)
            if isinstance(rec, dict):
                records.append((rec, ("stop",)))
            for session in (state.get("watchdog") or {}).values():
                trail = (((session or {}).get("symbols") or {}).get(sym) or {}).get("atr")
                if isinstance(trail, dict):
                    records.append((trail, ("anchor", "stop")))
            old = rec.get("stop") if isinstance(rec, dict) else None
            for target, keys in records:
                for key in keys:
                    value = target.get(key)
                    if isinstance(value, int | float) and not isinstance(value, bool):
                        target[key] = scale_for_adjustment(float(value), factor, tick)
            done[sym] = {"day": today.isoformat(), "factor": factor}
            ctx.log.warning("%s: its history changed by a factor of %.4f today (a split or bonus): stop floor "
                            "%s -> %s, ATR anchor and stop scaled alike", sym, factor, old,
                            rec.get("stop") if isinstance(rec, dict) else None)


def _prune_once_a_day(ctx: JobContext, store: StateStore, intents: IntentLog, gtts: list[Mapping[str, Any]],
                      today: date) -> None:
    """Forget old closed intents (workers.intents.IntentLog.prune), once a day, after the stop
    record is written: a GTT intent whose GTT is active in the list this run read is kept."""
    if (store.read().get("meta") or {}).get("intents_pruned_on") == today.isoformat():
        return
    active = [g.get("id") for g in gtts if str(g.get("status", "")).lower() == "active"]
    dropped = intents.prune(active_gtt_ids=active)
    if dropped:
        ctx.log.info("forgot %d closed intent(s) older than %d days", dropped, KEEP_INTENT_DAYS)


def _apply(ctx: JobContext, kite: Any, intents: IntentLog, out: Outcome, action: StopPlanAction,
           ltps: dict[str, float], today: date) -> None:
    log = ctx.log
    if out.action == DELETE:
        if intents.open_intents():
            intents.reconcile(kite)
        assert action.gtt_id is not None
        kite.delete_gtt(action.gtt_id)
        fault_point("after_send", out.symbol)
        out.done = True
        log.info("%s: GTT %s deleted (%s)", out.symbol, action.gtt_id, action.reason)
        return
    assert action.trigger is not None and action.limit_price is not None and action.quantity is not None
    params = gtt_params(out.symbol, action.trigger, action.limit_price, action.quantity, ltps[out.symbol])
    if out.action == MODIFY:
        if intents.open_intents():
            intents.reconcile(kite)
        assert action.gtt_id is not None
        kite.modify_gtt(action.gtt_id, params["trigger_type"], params["tradingsymbol"], params["exchange"],
                        params["trigger_values"], params["last_price"], params["orders"])
        fault_point("after_send", out.symbol)
        out.done = True
        log.info("%s: GTT %s modified: %s", out.symbol, action.gtt_id, action.reason)
        events.stop(ctx.home, ctx.user, "stop_moved", out.symbol, f"stop moved to {action.trigger} ({action.reason})")
        return
    # The plan creates only when no managed stop GTT is active, so an earlier GTT of this purpose
    # today is gone: its tag is spent, and a new GTT gets the next one (workers.bot_stop). A GTT in
    # any state but active protects nothing: send_stop_gtt claims only an active one.
    sent = send_stop_gtt(kite, intents, ctx.user, today, out.symbol, action.trigger, action.limit_price,
                         action.quantity, ltps[out.symbol], log=log)
    tag, gtt_id = sent.tag, sent.gtt_id
    if gtt_id is None:
        out.error = sent.error
        log.error("%s: %s", out.symbol, out.error)
        if not sent.sent_now:
            events.stop(ctx.home, ctx.user, "stop_not_active", out.symbol, str(out.error), daily=True)
        return
    out.gtt_id = gtt_id
    out.done = True
    log.info("%s: stop GTT %s at %.2f (limit %.2f, qty %d, tag %s)%s", out.symbol, out.gtt_id, action.trigger,
             action.limit_price, action.quantity, tag, "" if sent.sent_now else " (already at the broker)")
    events.stop(ctx.home, ctx.user, "stop_placed", out.symbol, f"stop GTT at {action.trigger:.2f} for "
                f"{action.quantity} shares", key=f"placed|{out.gtt_id}")


# C901 on purpose: one branch per GTT plan action and its outcome (done, failed, kept), in one state
# transaction so the stop records never disagree with the GTTs sent.
def _record(store: StateStore, outcomes: list[Outcome], held: dict[str, int], now: datetime) -> None:  # noqa: C901
    stamp = now.isoformat()
    with store.transaction() as state:
        stops = state.setdefault("stops", {})
        positions = state.setdefault("positions", {})
        live: dict[str, int | None] = {}
        for out in outcomes:
            if out.action in (NONE, MODIFY):
                live[out.symbol] = out.gtt_id
            elif out.action == CREATE:
                live[out.symbol] = out.gtt_id if out.done and out.error is None else None
            if out.error is not None:
                continue
            if out.action == DELETE and out.done and out.symbol not in held:
                stops.pop(out.symbol, None)
                continue
            if out.action not in (CREATE, MODIFY, NONE) or out.trigger is None or out.gtt_id is None:
                continue
            if out.action != NONE and not out.done:
                continue
            stop = out.stop if out.stop is not None else out.trigger
            entry = {"stop": stop, "source": out.source, "gtt_id": out.gtt_id, "trigger": out.trigger,
                     "limit_price": out.limit_price, "quantity": out.quantity}
            old = stops.get(out.symbol) or {}
            if {k: old.get(k) for k in entry} != entry:
                stops[out.symbol] = {**entry, "updated_at": stamp}
            pos = positions.get(out.symbol)
            if pos is not None and pos.get("stop_loss") != stop:
                pos.update({"stop_loss": stop, "stop_loss_source": LEGACY_SOURCE.get(out.source, out.source),
                            "stop_loss_updated": stamp})
        for sym, gtt_id in live.items():
            if gtt_id is not None:
                continue
            # The stop GTT is gone (deleted by hand, or fired without a fill) and none replaced it:
            # the state must not name a dead GTT. The stop stays: it is still the never-lower floor.
            if sym in stops and stops[sym].get("gtt_id") is not None:
                stops[sym] = {**stops[sym], "gtt_id": None, "updated_at": stamp}
        for sym in [s for s in stops if s not in held]:
            # Sold out while its GTT was already gone (fired, or deleted by hand): nothing to protect.
            if not any(o.symbol == sym and o.error for o in outcomes):
                stops.pop(sym)
        # positions[S].gtt_order_id is derived from the one home, stops[S].gtt_id, for legacy readers.
        for sym, pos in positions.items():
            want = (stops.get(sym) or {}).get("gtt_id")
            if not isinstance(pos, dict) or pos.get("gtt_order_id") == want:
                continue
            if want is not None or "gtt_order_id" in pos:
                pos["gtt_order_id"] = want


def _summary(outcomes: list[Outcome], decisions: dict[str, StopDecision], scope: Scope) -> dict[str, Any]:
    return {
        "scope": scope.mode, "protected": scope.protect, "unmanaged": scope.unmanaged,
        "actions": [o.as_dict() for o in outcomes],
        "sent": sum(1 for o in outcomes if o.done and o.action != NONE),
        "not_placed": {s: d.reason for s, d in decisions.items() if not d.place},
        "fallback": {s: d.stop for s, d in decisions.items() if d.place and d.source == FALLBACK},
        "stops": {s: d.stop for s, d in decisions.items()},
    }


def _print(ctx: JobContext, outcomes: list[Outcome], decisions: dict[str, StopDecision], ltps: dict[str, float],
           *, dry_run: bool) -> None:
    prefix = "would " if dry_run else ""
    print(f"{ctx.user}: {len(decisions)} held symbol(s){' [dry run: nothing is sent]' if dry_run else ''}")
    for o in outcomes:
        what = {CREATE: "create GTT", MODIFY: f"modify GTT {o.gtt_id}", DELETE: f"delete GTT {o.gtt_id}",
                NONE: "keep" if o.gtt_id else "no GTT"}[o.action]
        verb = what if o.action == NONE else prefix + what
        level = f" trigger {o.trigger:.2f} limit {o.limit_price:.2f} qty {o.quantity}" if o.trigger is not None else ""
        ltp = f" (LTP {ltps[o.symbol]:.2f})" if o.symbol in ltps else ""
        status = f" FAILED: {o.error}" if o.error else ""
        print(f"  {o.symbol:<12} {verb}{level}{ltp}{' - ' + o.note if o.note else ''}{status}")
    for sym, d in decisions.items():
        if not d.place:
            ctx.log.warning("%s: stop %s", sym, d.reason)
            events.stop(ctx.home, ctx.user, "stop_not_placed", sym, f"stop {d.reason}", daily=True, dry_run=dry_run)
        elif d.source == FALLBACK:
            events.stop(ctx.home, ctx.user, "stop_fallback", sym, str(d.reason), daily=True, dry_run=dry_run)
            ctx.log.warning("%s: %s (LTP %.2f)%s", sym, d.reason, ltps.get(sym, 0.0),
                            " [dry run: not placed]" if dry_run else "")
