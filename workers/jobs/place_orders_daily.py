"""``place_orders_daily``: enter the day's selected symbols with marketable LIMIT BUY CNC orders.

Over 400 lines because the entry run's I/O (reconcile, read the input and quotes, send, wait,
protect, record) is one sequence over one run's state, and this docstring is its contract; its
decisions are pure functions apart (workers.strategy.entries, shared with the backtest), as are
the entry plan, the run record and the wait (workers.entry_plan, workers.run_record,
workers.entry_wait).

    python -m workers place_orders_daily --user Som [--dry-run] [--confirm] [--from FILE] [--json]

Input (workers.entry_input): the newest scan ``data/<User>/scans/pattern_daily_<YYYYMMDD>.csv``
(pattern_daily; it must be the scan of the last completed session by the NSE calendar, so the
evening's scan feeds the next morning's entries; an older one is refused), or ``--from FILE``, a
person's explicit pick (CSV or JSON with at least a ``ticker`` column): its rows keep their order
and ``MIN_SCORE`` applies only if it has a score column.

Rules (workers.strategy.entries and workers.strategy.sizing, the functions the backtest calls
too; docs/trading-rules.md): selection (score >= ``MIN_SCORE``, not
blocked for entries (``workers.portfolio.entry_blocked``: held, sold today, held on another
exchange, or an open BUY order), at most ``MAX_CNC_POSITIONS`` minus the positions the bot owns
(workers.ledger; every holding under ``MANAGE_SCOPE=all``) and the open BUY orders: an unfilled
entry of an earlier run takes a slot, a person's holding does not, though it is never bought
into), size (cash x ``CAPITAL_DEPLOYMENT_PERCENT`` / number selected / limit price, optional
``RISK_PER_TRADE_PERCENT`` cap on (entry - stop) x shares against the bot's equity = free cash +
the market value of the shares it manages, min(owned, held)), the order (BUY LIMIT CNC DAY), and
the pre-trade limits checked right before every order (pause flag, halt flag
(kitefleet.halt), ``MAX_ORDER_VALUE``,
``PRICE_BAND_PERCENT`` around the LTP the plan was sized on, tick grid, quantity 0).
Each refusal is reported and written to the run record.

Price. The plan (sized at the LTP) fixes each entry's budget and quantity, not its price: right
before each order a fresh ``quote()`` is read and the limit is the lowest ask level whose
cumulative depth covers the planned quantity (sizing.limit_from_depth), so a BUY never rests below
the ask; shares = min(planned, floor(budget / that limit)). A level more than
``ENTRY_SLIPPAGE_PERCENT`` above the quote's LTP (a thin or jumping stock), or an empty ask side
(upper circuit), refuses the entry with the reason (``ask X above slippage cap Y``); a later run
of the day tries it again. The same quote filters the setup (sizing.entry_filter): an LTP more than
``ENTRY_MAX_GAP_PERCENT`` (default 3) above the scan's entry, below the scan's stop, or at the
upper circuit (the quote's ``upper_circuit_limit``) skips the entry (``skipped: gapped up: ...``
in the run record). The same works against live Kite, whose quote has the same depth. Cash is
``margins("equity")["available"]["live_balance"]`` (else cash + intraday payin - debits), never
``net``, which on live Kite includes collateral (workers.portfolio.available_cash).

A symbol with an unresolved intent (workers.intents: any purpose, e.g. yesterday's exit that
timed out) is skipped as "blocked" until a person resolves it; entries are the writes such an
intent blocks (stops and exits of that symbol are not blocked, see workers.intents).

Outside the market session the job says so and places nothing (exit 0). It never sends an AMO:
an after-market order would be priced on yesterday's close, could not be checked against a live
LTP, and would fill at whatever the open gaps to; a trader expects the scheduled 09:20 run (or a
manual run during the session) to enter at a price it has seen. ``--dry-run`` works at any hour.

Idempotency. Every order goes through workers.intents.send_order_once with the tag
``make_tag(user, "place_orders_daily", session, symbol, "entry")``; open intents are reconciled
with the order book first, and the ownership ledger is brought up to the order book (entry
fills in, SELL trades out; a filled entry is owned at once, partial fills too). The first run
of a session that gets as far as sending fixes the day's
*entry plan* for its input (workers.entry_plan: the symbols, the cash, equity and number selected
it sized with, each entry's stop and target). A later run of the same session and input only
completes that plan: symbols whose entry was already sent are skipped ("already placed today"),
the others (crashed before the send, refused by a pre-trade limit, rejected by the broker) are
sized as the first run sized them and checked again. So a second run after a complete first run
sends nothing, and a rerun after a crash never deploys more than the first plan meant to.

Timeout (workers.entry_wait; docs/trading-rules.md "Entry timeout"). Each entry intent records
``cancel_after`` = its send + ``ENTRY_TIMEOUT_MINUTES`` (market-clock minutes). After the sends
the run writes its record, then waits for the session's open entries (progress lines on stdout),
records fills as it sees them (positions, ledger) and cancels what is left at ``cancel_after``
through the intent protocol; then it writes the record again with ``entry_timeout`` rows
(symbol, order_id, cancel_after, quantity, filled, status, cancelled, error). The watchdog cancels
an entry past its ``cancel_after`` on its next poll when this run was killed.

On-disk contract:

    data/<User>/orders/orders_<User>_<YYYYMMDD_HHMMSS>.json   the run record: one per run that
        planned entries (not for --dry-run, a cancelled --confirm, or outside the session); its
        fields are in workers.run_record.
    data/trading_state_<User>.json: intents (workers.intents), entry_plans (workers.entry_plan),
        and positions recorded when the broker shows fills (workers.portfolio).

Exit codes: 0 done (refusals and broker rejections are reported, not failures); 1 no usable
input (no scan, a stale scan, an unreadable --from file); 5 Kite session; 6 reconciliation
failed; 7 a write's outcome unknown or the broker unavailable (the record is written first).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from kitefleet import clock, halt, pause
from kitefleet.atomic import atomic_write_json
from kitefleet.errors import KitefleetError
from kitefleet.exitcodes import ExitCode
from kitefleet.state import StateStore
from workers import events, loss_limit
from workers.bot_stop import StopSettings, entry_order_ids, prev_low_reader, protect_fills
from workers.broker_errors import BrokerRejected, WriteOutcomeUnknown
from workers.context import JobContext
from workers.entry_input import load_scan, read_manual
from workers.entry_plan import JOB, PURPOSE, Basis, entry_tag, fix_plan, plan_basis, read_plan, remaining
from workers.entry_wait import EntryWait, Waited, cancel_after, timeout_minutes
from workers.entry_wait import as_rows as as_wait_rows
from workers.intents import IntentLog, SymbolBlocked, send_order_once
from workers.portfolio import (
    ALL,
    BUY_PENDING,
    FINAL_ORDER_STATUSES,
    SCOPE_ALL_WARNING,
    SOLD_TODAY,
    AccountSnapshot,
    available_cash,
    entry_blocked,
    held_quantities,
    manage_scope,
    prune_entry_plans,
    reconcile_ledger,
    record_entry_fills,
    snapshot,
)
from workers.run_record import Entry, EntryRun, write_record
from workers.strategy import entries as rules
from workers.strategy.entries import (
    EntryLimits,
    capital_room,
    check_at_send,
    entry_equity,
    over_cap_reason,
    select_entries,
    size_entries,
)
from workers.strategy.patterns import ScanResult
from workers.strategy.sizing import Skipped, order_params

TAKES_JOB_LOCK = True
EXCHANGE = "NSE"
#: market seconds the run re-reads the order book after its sends for immediate fills to protect
FILL_WAIT_SECONDS = 5


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--from", dest="from_file", type=Path, default=None, metavar="FILE",
                        help="CSV or JSON of symbols to enter (ticker column; stop/target optional) "
                             "instead of the newest scan")
    parser.add_argument("--confirm", action="store_true", help="show the plan and ask y/n before sending")
    parser.add_argument("--json", action="store_true", help="print one JSON summary line at the end")
    parser.add_argument("--no-wait", action="store_true",
                        help="send and return without waiting for fills: the watchdog cancels what is still "
                             "open at each entry's cancel_after and protects later fills")


# --- the run ---------------------------------------------------------------------------------------
def _ltps(kite: Any, symbols: list[str]) -> dict[str, float]:
    if not symbols:
        return {}
    answer = kite.ltp(*[f"{EXCHANGE}:{s}" for s in symbols])
    return {s: float((answer.get(f"{EXCHANGE}:{s}") or {}).get("last_price") or 0.0) for s in symbols}


def _quote(kite: Any, symbol: str) -> tuple[float, dict[str, Any], float | None]:
    """A fresh LTP, depth and upper circuit of ``symbol`` from one ``quote()`` read."""
    q = kite.quote(f"{EXCHANGE}:{symbol}").get(f"{EXCHANGE}:{symbol}") or {}
    upper = q.get("upper_circuit_limit")
    return float(q.get("last_price") or 0.0), dict(q.get("depth") or {}), float(upper) if upper else None


def _print_plan(entries: list[Entry], skipped: list[Skipped], header: str) -> None:
    print(header)
    if entries:
        print(f"  {'symbol':<12} {'ltp':>10} {'limit':>10} {'qty':>7} {'value':>13} {'stop':>10} {'target':>10}  note")
    for e in entries:
        p = e.plan
        note = "; ".join(e.refusals) or (e.error or "")
        if p is None:
            print(f"  {e.row.symbol:<12} {'-':>10} {'-':>10} {'-':>7} {'-':>13} {'-':>10} {'-':>10}  {note}")
            continue
        print(f"  {e.row.symbol:<12} {p.ltp:>10.2f} {p.limit_price:>10.2f} {p.quantity:>7d} {p.order_value:>13,.2f} "
              f"{e.row.stop_loss if e.row.stop_loss is not None else '-':>10} "
              f"{e.row.target_1 if e.row.target_1 is not None else '-':>10}  {note}")
    for s in skipped:
        print(f"  skip {s.symbol}: {s.reason}")


def _summary(entries: list[Entry], skipped: list[Skipped], record: Path | None) -> dict[str, Any]:
    return {
        "placed": [{"symbol": e.row.symbol, "order_id": e.order_id, "tag": e.tag, "sent_now": e.sent_now,
                    "quantity": e.plan.quantity if e.plan else 0,
                    "limit_price": e.plan.limit_price if e.plan else None}
                   for e in entries if e.success],
        "refused": {e.row.symbol: e.error for e in entries if not e.success and e.error},
        "planned": {e.row.symbol: {"quantity": e.plan.quantity, "limit_price": e.plan.limit_price,
                                   "ltp": e.plan.ltp, "refusals": e.refusals}
                    for e in entries if e.plan is not None},
        "skipped": {s.symbol: s.reason for s in skipped},
        "record": str(record) if record else None,
    }


def run(ctx: JobContext) -> int:
    from workers.kite_client import get_kite
    from workers.marketdata import market_data_for

    log = ctx.log
    now = clock.now()
    today = now.date()
    kite = get_kite(ctx)
    md = market_data_for(ctx)
    if not md.calendar.session_open_at(now) and not ctx.dry_run:
        return _market_closed(ctx, now)

    store = StateStore(ctx.home, ctx.user, ctx.settings.mode)
    intents = IntentLog(store)
    account = _reconcile(ctx, kite, store, intents, today, now)
    loss_limit.check_when_unwatched(ctx, kite, store, account, md.calendar, now)  # a trip halts: nothing sent
    loss_limit.flatten_when_unwatched(ctx, kite, store, now)  # LOSS_LIMIT_ACTION=flatten
    source_path, rows, has_score = _read_input(ctx, md.calendar.last_completed_session(now))
    source = source_path.name
    existing_plan = read_plan(store.read(), today, source)
    blocked = intents.blocked_symbols()
    paused = pause.is_paused(ctx.home, ctx.user)
    pause_note = pause.describe(pause.pause_info(ctx.home, ctx.user)) if paused else None
    equity_margins = kite.margins("equity")
    limits = EntryLimits.from_settings(ctx.settings.optional_number)

    planned_qty: dict[str, int] = {}
    if existing_plan is not None:
        basis = plan_basis(existing_plan)
        planned_qty = {sym: int(m["quantity"]) for sym, m in (existing_plan.get("entries") or {}).items()
                       if isinstance(m, dict) and m.get("quantity") is not None}
        selected, skipped = remaining(existing_plan, rows, account, intents, today, ctx.user)
        log.info("completing today's entry plan of %s (%d entries; %d left)", existing_plan.get("created_at"),
                 basis.n_selected, len(selected))
    else:
        basis, selected, skipped = _select(ctx, rows, has_score, account, equity_margins, limits)

    entries = [Entry(r, entry_tag(ctx.user, today, r.symbol)) for r in selected]
    for e in [e for e in entries if e.row.symbol in blocked]:
        skipped.append(Skipped(e.row.symbol, "blocked: an unresolved intent needs a person (see doctor)"))
    entries = [e for e in entries if e.row.symbol not in blocked]
    state_now = store.read()
    entries, over = cap_new_entries(entries, state_now.get("intents") or {}, today, limits.new_per_day)
    skipped += [Skipped(e.row.symbol, over_cap_reason(limits.new_per_day)) for e in over]
    deployed = deployed_capital(state_now, account)
    _size(kite, md, entries, basis, limits, paused, planned_qty, deployed)

    usable = round(basis.cash * limits.percent / 100, 2)
    header = (f"{ctx.user}: {len(entries)} entr{'y' if len(entries) == 1 else 'ies'} from {source}; cash "
              f"{basis.cash:,.2f}, usable {usable:,.2f} ({limits.percent:g} %), equity {basis.equity:,.2f}"
              + (f"; PAUSED: {pause_note}" if paused else "")
              + (f"; HALTED: {halt.describe(halted)}" if (halted := halt.halt_info(ctx.home, ctx.user)) else ""))
    if ctx.dry_run:
        _print_plan(entries, skipped, header + " [dry run: nothing is sent]")
        if ctx.args.json:
            print(json.dumps(_summary(entries, skipped, None)))
        return ExitCode.OK
    if ctx.args.confirm and not _confirmed(ctx, entries, skipped, header):
        return ExitCode.OK

    if existing_plan is None and entries:
        fix_plan(store, ctx.user, today, source, now, basis, limits.percent, [e.row for e in entries],
                 {e.row.symbol: e.plan.quantity for e in entries if e.plan is not None})
    entry_run = EntryRun(user=ctx.user, mode=ctx.settings.mode, started=now, session=today, source=source,
                         cash=basis.cash, percent=limits.percent, equity=basis.equity,
                         n_selected=basis.n_selected, paused=paused, entries=entries, skipped=skipped)
    code: int | None = None
    try:
        code = _send(ctx, kite, intents, entry_run, limits, deployed)
    except KitefleetError as exc:
        # Token, broker or reconciliation trouble mid-run: the record still says what happened.
        entry_run.stopped = str(exc)
        raise
    finally:
        # The record is written before the wait too: a run killed while waiting still leaves it.
        path = _finish(ctx, kite, md, store, intents, entry_run, summary=code != ExitCode.OK)
    waited = [] if ctx.args.no_wait else _wait(ctx, kite, md, store, intents, entry_run.session, md.calendar)
    _after_wait(ctx, kite, entry_run, path, waited)
    return code


def _market_closed(ctx: JobContext, now: datetime) -> int:
    message = (f"market closed at {now:%Y-%m-%d %H:%M} IST: entries are placed only during the session "
               "(LIMIT at the live ask); nothing placed")
    ctx.log.info("%s", message)
    print(message)
    if ctx.args.json:
        print(json.dumps({"placed": [], "refused": {}, "skipped": {}, "record": None,
                          "market_closed": True}))
    return ExitCode.OK


def _reconcile(ctx: JobContext, kite: Any, store: StateStore, intents: IntentLog, today: date,
               now: datetime) -> AccountSnapshot:
    """Open intents against the order book, then one read of the account; fills of earlier runs
    are recorded as positions. A dry run only reads."""
    if not ctx.dry_run:
        report = intents.reconcile(kite)
        if report.checked:
            ctx.log.info("%s", report.summary())
    account = snapshot(kite)
    if not ctx.dry_run:
        # The ledger needs the fired stops' orders too: a bot stop's SELL is not a person's.
        gtts = list(kite.get_gtts())
        with store.transaction() as state:
            record_entry_fills(state, account.orders, today, now)
            report = reconcile_ledger(state, account, gtts, today)
            prune_entry_plans(state, today)
        for line in report.changes:
            ctx.log.info("ledger: %s", line)
        for line in report.shortfalls:
            ctx.log.warning("ledger: %s", line)
    return account


def _read_input(ctx: JobContext, last_completed: date) -> tuple[Path, list[ScanResult], bool]:
    """The input file, its rows, and whether they carry scores."""
    if ctx.args.from_file is not None:
        rows, has_score = read_manual(ctx.args.from_file)
        return ctx.args.from_file, rows, has_score
    path, rows = load_scan(ctx, last_completed)
    return path, rows, True


def _select(ctx: JobContext, rows: list[ScanResult], has_score: bool, account: AccountSnapshot,
            equity_margins: dict[str, Any], limits: EntryLimits) -> tuple[Basis, list[ScanResult], list[Skipped]]:
    """The first run's selection (workers.strategy.entries.select_entries), and the cash and
    equity it is sized with."""
    cash = available_cash(equity_margins)
    scope = manage_scope(StateStore(ctx.home, ctx.user, ctx.settings.mode).read(), held_quantities(account),
                         ctx.settings.text("MANAGE_SCOPE"))
    if scope.mode == ALL:
        ctx.log.warning("%s", SCOPE_ALL_WARNING)
    equity = entry_equity(cash, account.market_value(scope.protect))
    blocked_now = entry_blocked(account)
    # An open BUY (an earlier run's entry not filled yet) will become a position: it takes a
    # slot, or a second input the same day could fill MAX_CNC_POSITIONS twice over. A symbol
    # sold today is blocked but holds nothing: no slot. A person's holding (not owned) is never
    # bought into, but takes no slot of the bot's.
    taken = sum(1 for s, why in blocked_now.items()
                if why != SOLD_TODAY and (scope.mode == ALL or why == BUY_PENDING or s in scope.protect))
    selected, skipped = select_entries(rows, blocked_now, taken, limits, has_score=has_score,
                                       manual=ctx.args.from_file is not None)
    return Basis(cash=cash, equity=equity, n_selected=len(selected)), selected, skipped


def _size(kite: Any, md: Any, entries: list[Entry], basis: Basis, limits: EntryLimits, paused: bool,
          planned_qty: dict[str, int], deployed: float) -> None:
    """The plan at the LTP, fitted to the limits (workers.strategy.entries.size_entries)."""
    ltps = _ltps(kite, [e.row.symbol for e in entries])
    ticks = {e.row.symbol: md.tick_size(e.row.symbol) for e in entries}
    sized = size_entries([e.row for e in entries], ltps, ticks, basis, limits, paused=paused,
                         planned_qty=planned_qty, deployed=deployed)
    for e, z in zip(entries, sized, strict=True):
        e.plan, e.refusals, e.planned_quantity = z.plan, z.refusals, z.planned_quantity


def cap_new_entries(entries: list[Entry], intents: dict[str, Any], today: date,
                    limit: int) -> tuple[list[Entry], list[Entry]]:
    """(entries this run may send, the rest): workers.strategy.entries.cap_new_entries with the
    entry intents of today's earlier runs counted (a tag already sent is no new entry)."""
    tags = {e.tag for e in entries}
    earlier = sum(1 for t, i in intents.items()
                  if i.get("kind") == "order" and str(i.get("purpose", "")).startswith("entry")
                  and i.get("session") == today.isoformat() and i.get("broker_id") and t not in tags)
    sent = {e.row.symbol for e in entries if (intents.get(e.tag) or {}).get("broker_id")}
    keep, _ = rules.cap_new_entries([e.row.symbol for e in entries], sent, earlier, limit)
    kept = set(keep)
    return [e for e in entries if e.row.symbol in kept], [e for e in entries if e.row.symbol not in kept]


def deployed_capital(state: dict[str, Any], account: AccountSnapshot) -> float:
    """What the bot has deployed: its owned lots at cost plus its open entry BUYs' value."""
    from workers.entry_cancel import open_bot_entries

    lots = ((state.get("ledger") or {}).get("lots") or {}).values()
    at_cost = sum(float(x.get("price") or 0) * int(x.get("quantity") or 0) for ls in lots for x in ls or [])
    pending = sum(float(o.get("price") or 0) * int(o.get("pending_quantity") or 0)
                  for o in open_bot_entries(state.get("intents") or {}, account.orders))
    return round(at_cost + pending, 2)


def _confirmed(ctx: JobContext, entries: list[Entry], skipped: list[Skipped], header: str) -> bool:
    """--confirm: show the plan and ask; False when the person said anything but y."""
    _print_plan(entries, skipped, header)
    sendable = [e for e in entries if not e.refusals]
    if not sendable:
        print("nothing to send")
        return True
    print(f"Place {len(sendable)} order(s)? (y/n) ", end="", flush=True)
    try:
        answer = sys.stdin.readline().strip().lower()
    except (OSError, ValueError):
        answer = ""
    if answer != "y":
        print("cancelled: nothing sent")
        ctx.log.info("cancelled at the confirmation prompt")
        return False
    return True


def _send(ctx: JobContext, kite: Any, intents: IntentLog, entry_run: EntryRun, limits: EntryLimits,
          deployed: float) -> int:
    """Each entry in turn: the checks on a fresh quote (workers.strategy.entries.check_at_send;
    MAX_CAPITAL's room is what ``deployed``, the capital deployed when the run started, and this
    run's earlier sends leave), the halt flag, then sent at most once (an intent re-sent after a
    crash gets the params actually sent: workers.intents.record)."""
    log = ctx.log
    basis = Basis(entry_run.cash, entry_run.equity, entry_run.n_selected)
    room = capital_room(limits, deployed)
    for e in entry_run.entries:
        e.at = clock.now()
        assert e.plan is not None
        fresh, depth, upper = _quote(kite, e.row.symbol)
        e.fresh_ltp = fresh
        checked = check_at_send(e.plan, e.row, fresh, depth, upper, basis, limits,
                                paused=pause.is_paused(ctx.home, ctx.user), capital_room=room)
        if checked.gone is not None:
            # The setup the scan saw is gone: skipped, with the reason in the run record.
            e.refusals, e.error = [checked.gone], f"skipped: {checked.gone}"
            log.warning("%s: %s", e.row.symbol, e.error)
            continue
        e.plan, e.refusals, e.best_ask = checked.plan, checked.refusals, checked.best_ask
        halted = halt.halt_info(ctx.home, ctx.user)
        if halted is not None:  # checked before each order: a halt stops the run's next order
            e.refusals.insert(0, halt.describe(halted))
        if e.refusals:
            e.error = "refused: " + "; ".join(e.refusals)
            log.warning("%s: %s", e.row.symbol, e.error)
            continue
        try:
            result = send_order_once(kite, intents, e.tag, order_params(e.plan), purpose=PURPOSE, job=JOB,
                                     session=entry_run.session,
                                     cancel_after=cancel_after(clock.now(), timeout_minutes(ctx.settings)))
        except SymbolBlocked as exc:
            e.error = str(exc)
        except BrokerRejected as exc:
            e.error = exc.kite_message or str(exc)
            log.warning("%s: broker refused the entry: %s", e.row.symbol, e.error)
        except WriteOutcomeUnknown as exc:
            e.error = str(exc)
            entry_run.stopped = f"{e.row.symbol}: {exc}"
            log.error("%s; stopping: no more orders until the next run has reconciled it", entry_run.stopped)
            return ExitCode.BROKER_TEMPORARY
        else:
            e.order_id, e.sent_now = result.broker_id, result.sent_now
            e.order_status = result.order_status
            if room is not None and result.sent_now:  # one already at the broker is in ``deployed``
                room = max(0.0, room - e.plan.order_value)
            log.info("%s: BUY %d @ %.2f LIMIT CNC -> order %s%s", e.row.symbol, e.plan.quantity,
                     e.plan.limit_price, e.order_id, "" if e.sent_now else " (already at the broker)")
            events.entry_placed(ctx.home, ctx.user, e.row.symbol, e.plan.quantity, e.plan.limit_price, e.order_id)
    return ExitCode.OK


def _wait(ctx: JobContext, kite: Any, md: Any, store: StateStore, intents: IntentLog, session: date,
          calendar: Any) -> list[Waited]:
    """After the sends: wait for the session's open entries until their ``cancel_after`` and
    cancel what is left (workers.entry_wait). A fill seen while waiting gets its broker stop at
    once (workers.bot_stop, the one function that places bot stops)."""
    _, close = calendar.session_bounds(session)

    def on_fill(order: Mapping[str, Any], _more: int) -> None:
        try:
            protect_fills(kite, store, intents, ctx.home, ctx.user, [order], session=session, now=clock.now(),
                          tick_size=md.tick_size, prev_low=prev_low_reader(md, clock.now()),
                          settings=StopSettings.of(ctx.settings), log=ctx.log)
        except KitefleetError as exc:  # the watchdog's next poll or the next run places it
            ctx.log.warning("%s: stop at the fill not placed now (%s)", order.get("tradingsymbol"), exc)

    return EntryWait(kite, store, intents, ctx.user, session, ctx.log, clock.get_clock(), close,
                     on_fill=on_fill).run()


def _await_fills(kite: Any, entries: list[Entry]) -> list[dict[str, Any]]:
    """The order book after the sends, re-read for at most FILL_WAIT_SECONDS of market time
    while a sent entry is still open: a marketable entry fills (in part) at once, and those
    shares get their stop now. What fills later is the watchdog's to protect (workers.bot_stop)."""
    ids = {e.order_id for e in entries if e.order_id}
    if not ids:
        return []
    deadline = clock.now() + timedelta(seconds=FILL_WAIT_SECONDS)
    for _ in range(FILL_WAIT_SECONDS + 1):
        orders = list(kite.orders())
        still_open = [o for o in orders
                      if str(o.get("order_id")) in ids and o.get("status") not in FINAL_ORDER_STATUSES]
        if not still_open or clock.now() >= deadline:
            return orders
        clock.get_clock().sleep_until(min(deadline, clock.now() + timedelta(seconds=1)), max_wall=2.0)
    return orders


def _protect(ctx: JobContext, kite: Any, md: Any, store: StateStore, intents: IntentLog, entry_run: EntryRun,
             orders: list[dict[str, Any]]) -> None:
    """A broker stop for the shares filled so far (workers.bot_stop); a failure is reported and
    left to the watchdog's next poll or the next run, which place it."""
    now = clock.now()
    try:
        done = protect_fills(kite, store, intents, ctx.home, ctx.user, orders, session=entry_run.session, now=now,
                             tick_size=md.tick_size, prev_low=prev_low_reader(md, now),
                             settings=StopSettings.of(ctx.settings), log=ctx.log)
    except KitefleetError as exc:
        ctx.log.warning("stops at the fill not placed now (%s); the watchdog or the next run places them", exc)
        for e in entry_run.entries:
            e.stop_error = e.stop_error or str(exc)
        return
    by_symbol = {d.symbol: d for d in done}
    for e in entry_run.entries:
        d = by_symbol.get(e.row.symbol)
        if d is not None:
            e.stop_gtt_id, e.stop_trigger, e.stop_source, e.stop_error = d.gtt_id, d.trigger, d.source, d.error


def _finish(ctx: JobContext, kite: Any, md: Any, store: StateStore, intents: IntentLog, entry_run: EntryRun,
            *, summary: bool = True) -> Path:
    """After the sends: statuses and fills from the order book, a stop for what filled, then the
    run record; the JSON summary when the run ends here (``summary``)."""
    log = ctx.log
    entries, skipped = entry_run.entries, entry_run.skipped
    try:
        orders = _await_fills(kite, entries)
        if not orders and entry_order_ids(store.read(), entry_run.session):
            # Nothing sent now, but today's earlier entries may have filled unprotected (a run
            # killed between the fill and its stop): their stop is placed here.
            orders = list(kite.orders())
    except KitefleetError as exc:
        log.warning("order book not read after sending (%s); fills are recorded by the next run", exc)
        orders = []
    entry_run.note_order_book(orders)
    events.fills(ctx.home, ctx.user, orders)
    if orders:
        with store.transaction() as state:
            record_entry_fills(state, orders, entry_run.session, clock.now())
            # Filled entries are the bot's at once (partial fills too): lots in the ledger.
            reconcile_ledger(state, None, [], entry_run.session, orders=orders)
        _protect(ctx, kite, md, store, intents, entry_run, orders)
    record = entry_run.record()
    path = write_record(ctx.home, ctx.user, record, entry_run.started)
    successes = entry_run.successes
    _print_plan(entries, skipped, f"{ctx.user}: {len(successes)} of {len(entries)} entr"
                                  f"{'y' if len(entries) == 1 else 'ies'} at the broker; record {path}")
    log.info("run record %s: %d attempted, %d at the broker", path, record["total_orders_attempted"], len(successes))
    if ctx.args.json and summary:
        print(json.dumps(_summary(entries, skipped, path)))
    return path


def _after_wait(ctx: JobContext, kite: Any, entry_run: EntryRun, path: Path, waited: list[Waited]) -> None:
    """The run record again, now with each entry's status after the wait and what the wait did
    (``entry_timeout``: one row per entry it watched); then the JSON summary."""
    if waited:
        try:
            entry_run.note_order_book(list(kite.orders()))
        except KitefleetError as exc:
            ctx.log.warning("order book not read after the wait (%s); the record keeps the statuses at the send", exc)
        record = entry_run.record()
        record["entry_timeout"] = as_wait_rows(waited)
        atomic_write_json(path, record, mode=0o600)
    if ctx.args.json:
        print(json.dumps({**_summary(entry_run.entries, entry_run.skipped, path),
                          "entry_timeout": as_wait_rows(waited)}))
