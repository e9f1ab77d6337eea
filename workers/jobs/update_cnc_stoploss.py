"""``update_cnc_stoploss``: one broker-side stop GTT per held CNC symbol, at the previous session's low.

    python -m workers update_cnc_stoploss --user Som [--dry-run] [--json]

Held = holdings ``quantity`` + ``t1_quantity`` + today's CNC net position (workers.portfolio), so
today's filled buys get their stop the same day and a symbol sold today counts as gone. For each
held symbol (rules in workers.strategy.stops and docs/trading-rules.md):

* stop = low of the previous **completed** session (the NSE calendar export and the shared
  clock; during a session that is yesterday's, after 15:30 today's), floored to the tick; the
  stop recorded in state (else the trigger of the symbol's active stop GTT) is never lowered;
  a stop at or above the LTP is reported and not placed (Kite would fire it at once);
* the GTT: single trigger at the stop, one SELL LIMIT CNC leg for the full held quantity, limit
  ``GTT_LIMIT_BUFFER_PERCENT`` (default 5) below the trigger, floored to the tick;
* an existing stop GTT whose trigger, limit or quantity differ is **modified in place** (the
  legacy job deleted and re-created, leaving moments without a stop); duplicates are deleted;
  stop GTTs on symbols no longer held are deleted; nothing changed -> nothing sent.

Writes. A new GTT goes through workers.intents.send_gtt_once with the tag
``make_tag(user, "update_cnc_stoploss", session, symbol, "stop:<trigger>:<qty>")`` (a GTT carries
no tag: a crash after the send is resolved by finding the GTT of that symbol, trigger and
quantity). Open intents are reconciled before any write. Modifications and deletions are not
intents: they are full replacements and removals, so repeating one is harmless, and the next
run plans again from the broker's GTT list. A write whose outcome is unknown stops the run
(exit 7); the next run re-reads the GTT list before doing anything. GTTs of a symbol blocked by
an unresolved intent are left alone and reported. The test-only fault point ``after_send``
(workers.faults) also follows a modification and a deletion: the broker has it, the state not.

State (data/trading_state_<User>.json): ``stops[SYMBOL] = {stop, source: "prev_session_low",
gtt_id, trigger, limit_price, quantity, updated_at}`` for every symbol whose stop GTT is in
place (written only once the broker has it; removed when the symbol is no longer held); the
position record gets the legacy annotations ``stop_loss``, ``stop_loss_source``
(``previous_day_low_gtt``), ``stop_loss_updated``, ``gtt_order_id``; positions follow the held
quantities (workers.portfolio.sync_held_positions). ``--dry-run`` prints the changes, sends and
writes nothing.

Exit codes: 0 done (stops not placed are reported, not failures); 5 Kite session; 6 an
unresolved intent (reported per symbol, the others proceed: 0); 7 broker unavailable or a
write's outcome unknown.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from kitefleet import clock
from kitefleet.exitcodes import ExitCode
from kitefleet.state import StateStore
from workers.broker_errors import BrokerRejected, WriteOutcomeUnknown
from workers.context import JobContext
from workers.faults import fault_point
from workers.intents import IntentLog, SymbolBlocked, make_tag, send_gtt_once
from workers.portfolio import record_entry_fills, snapshot, sync_held_positions
from workers.strategy.stops import (
    CREATE,
    DEFAULT_GTT_LIMIT_BUFFER_PERCENT,
    DELETE,
    MODIFY,
    NONE,
    DesiredGtt,
    GttAction,
    StopDecision,
    compute_stop,
    gtt_limit_price,
    gtt_params,
    plan_gtt_changes,
    previous_session_low,
)

TAKES_JOB_LOCK = True
JOB = "update_cnc_stoploss"
EXCHANGE = "NSE"
SOURCE = "prev_session_low"
LEGACY_SOURCE = "previous_day_low_gtt"
#: calendar days of daily candles read to find the previous completed session (holidays included)
CANDLE_LOOKBACK_DAYS = 14


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON summary line at the end")


def stop_purpose(trigger: float, quantity: int) -> str:
    return f"stop:{trigger:.2f}:{quantity}"


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

    def as_dict(self) -> dict[str, Any]:
        return {"symbol": self.symbol, "action": self.action, "gtt_id": self.gtt_id, "trigger": self.trigger,
                "limit_price": self.limit_price, "quantity": self.quantity, "note": self.note,
                "done": self.done, "error": self.error}


def _active_stop_triggers(gtts: list[dict[str, Any]]) -> dict[str, float]:
    """Symbol -> the highest trigger among its active stop GTTs (the floor when state has none)."""
    out: dict[str, float] = {}
    for g in gtts:
        cond = g.get("condition") or {}
        legs = g.get("orders") or []
        if (str(g.get("status", "")).lower() == "active" and str(cond.get("exchange") or EXCHANGE) == EXCHANGE
                and len(cond.get("trigger_values") or []) == 1 and legs
                and all(str(leg.get("transaction_type", "")).upper() == "SELL" for leg in legs)):
            sym = str(cond["tradingsymbol"]).upper()
            out[sym] = max(out.get(sym, 0.0), float(g["condition"]["trigger_values"][0]))
    return out


def decide_stops(ctx: JobContext, md: Any, kite: Any, held: dict[str, int], state: dict[str, Any],
                 gtts: list[dict[str, Any]], now: datetime) -> tuple[dict[str, StopDecision], dict[str, float],
                                                                      dict[str, float]]:
    """Per held symbol: the stop decision, its tick size and its LTP."""
    last_completed: date = md.calendar.last_completed_session(now)
    start = last_completed - timedelta(days=CANDLE_LOOKBACK_DAYS)
    ltp_answer = kite.ltp(*[f"{EXCHANGE}:{s}" for s in sorted(held)]) if held else {}
    broker_floor = _active_stop_triggers(gtts)
    recorded_stops = state.get("stops") or {}
    decisions: dict[str, StopDecision] = {}
    ticks: dict[str, float] = {}
    ltps: dict[str, float] = {}
    for sym in sorted(held):
        tick = md.tick_size(sym)
        candles = md.daily_candles(sym, start, last_completed, last_completed=last_completed, now=now)
        prev_low = previous_session_low(candles, now)
        rec = (recorded_stops.get(sym) or {}).get("stop")
        recorded = float(rec) if isinstance(rec, int | float) else broker_floor.get(sym)
        ltp = float((ltp_answer.get(f"{EXCHANGE}:{sym}") or {}).get("last_price") or 0.0)
        decisions[sym] = compute_stop(prev_low, recorded, ltp or None, tick)
        ticks[sym], ltps[sym] = tick, ltp
    return decisions, ticks, ltps


def run(ctx: JobContext) -> int:
    from workers.kite_client import get_kite
    from workers.marketdata import market_data_for

    log = ctx.log
    now = clock.now()
    today = now.date()
    kite = get_kite(ctx)
    md = market_data_for(ctx)
    store = StateStore(ctx.home, ctx.user, ctx.settings.mode)
    intents = IntentLog(store)
    if not ctx.dry_run:
        report = intents.reconcile(kite)
        if report.checked:
            log.info("reconciled %d open intent(s): %d found, %d resendable, %d unresolved", report.checked,
                     len(report.found), len(report.resendable), len(report.unresolved))
    account = snapshot(kite)
    held = account.held_quantities()
    if not ctx.dry_run:
        with store.transaction() as state:
            record_entry_fills(state, account.orders, today, now)
            sync_held_positions(state, account, now)
    state = store.read()
    gtts = list(kite.get_gtts())
    decisions, ticks, ltps = decide_stops(ctx, md, kite, held, state, gtts, now)
    buffer = float(ctx.settings.get("GTT_LIMIT_BUFFER_PERCENT", DEFAULT_GTT_LIMIT_BUFFER_PERCENT))  # type: ignore[arg-type]
    desired: dict[str, DesiredGtt] = {}
    for sym, d in decisions.items():
        if d.place and d.stop is not None:
            desired[sym] = DesiredGtt(d.stop, gtt_limit_price(d.stop, buffer, ticks[sym]), held[sym])
    actions = plan_gtt_changes(held, desired, gtts, EXCHANGE)
    blocked = intents.blocked_symbols()
    outcomes: list[Outcome] = []
    for a in actions:
        note = a.reason
        d = decisions.get(a.symbol)
        if d is not None and d.reason and a.action in (NONE, CREATE, MODIFY):
            note = f"{note}; {d.reason}" if note else d.reason
        outcomes.append(Outcome(a.symbol, a.action, a.gtt_id, a.trigger, a.limit_price, a.quantity, note))

    if ctx.dry_run:
        _print(ctx, outcomes, decisions, ltps, dry_run=True)
        if ctx.args.json:
            print(json.dumps(_summary(outcomes, decisions)))
        return ExitCode.OK

    exit_code = ExitCode.OK
    try:
        for out, action in zip(outcomes, actions, strict=True):
            if out.action == NONE:
                continue
            if out.symbol in blocked:
                out.error = "blocked: an unresolved intent needs a person (see doctor); GTT left as it is"
                exit_code = ExitCode.RECONCILE_FAILED
                continue
            try:
                _apply(ctx, kite, intents, out, action, ltps, today)
            except SymbolBlocked as exc:
                out.error = str(exc)
                exit_code = ExitCode.RECONCILE_FAILED
            except BrokerRejected as exc:
                out.error = exc.kite_message or str(exc)
                log.warning("%s: broker refused the %s: %s", out.symbol, out.action, out.error)
            except WriteOutcomeUnknown as exc:
                out.error = str(exc)
                log.error("%s: %s; stopping: the next run re-reads the GTT list first", out.symbol, exc)
                exit_code = ExitCode.BROKER_TEMPORARY
                break
    finally:
        _record(store, outcomes, held, now)
        _print(ctx, outcomes, decisions, ltps, dry_run=False)
        if ctx.args.json:
            print(json.dumps(_summary(outcomes, decisions)))
    return exit_code


def _apply(ctx: JobContext, kite: Any, intents: IntentLog, out: Outcome, action: GttAction,
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
        return
    purpose = stop_purpose(action.trigger, action.quantity)
    tag = make_tag(ctx.user, JOB, today, out.symbol, purpose)
    result = send_gtt_once(kite, intents, tag, purpose=purpose, job=JOB, session=today, **params)
    out.gtt_id = int(result.broker_id) if result.broker_id is not None else None
    out.done = True
    log.info("%s: stop GTT %s at %.2f (limit %.2f, qty %d)%s", out.symbol, out.gtt_id, action.trigger,
             action.limit_price, action.quantity, "" if result.sent_now else " (already at the broker)")


def _record(store: StateStore, outcomes: list[Outcome], held: dict[str, int], now: datetime) -> None:
    stamp = now.isoformat()
    with store.transaction() as state:
        stops = state.setdefault("stops", {})
        positions = state.setdefault("positions", {})
        for out in outcomes:
            if out.error is not None:
                continue
            if out.action == DELETE and out.done and out.symbol not in held:
                stops.pop(out.symbol, None)
                continue
            if out.action not in (CREATE, MODIFY, NONE) or out.trigger is None or out.gtt_id is None:
                continue
            if out.action != NONE and not out.done:
                continue
            entry = {"stop": out.trigger, "source": SOURCE, "gtt_id": out.gtt_id, "trigger": out.trigger,
                     "limit_price": out.limit_price, "quantity": out.quantity}
            old = stops.get(out.symbol) or {}
            if {k: old.get(k) for k in entry} != entry:
                stops[out.symbol] = {**entry, "updated_at": stamp}
            pos = positions.get(out.symbol)
            if pos is not None and (pos.get("stop_loss") != out.trigger or pos.get("gtt_order_id") != out.gtt_id):
                pos.update({"stop_loss": out.trigger, "stop_loss_source": LEGACY_SOURCE,
                            "stop_loss_updated": stamp, "gtt_order_id": out.gtt_id})
        for sym in [s for s in stops if s not in held]:
            # Sold out while its GTT was already gone (fired, or deleted by hand): nothing to protect.
            if not any(o.symbol == sym and o.error for o in outcomes):
                stops.pop(sym)


def _summary(outcomes: list[Outcome], decisions: dict[str, StopDecision]) -> dict[str, Any]:
    return {
        "actions": [o.as_dict() for o in outcomes],
        "sent": sum(1 for o in outcomes if o.done and o.action != NONE),
        "not_placed": {s: d.reason for s, d in decisions.items() if not d.place},
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
    not_placed = [s for s, d in decisions.items() if not d.place]
    for sym in not_placed:
        ctx.log.warning("%s: stop %s", sym, decisions[sym].reason)

