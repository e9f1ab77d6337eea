"""``place_orders_daily``: enter the day's selected symbols with marketable LIMIT BUY CNC orders.

    python -m workers place_orders_daily --user Som [--dry-run] [--confirm] [--from FILE] [--json]

Input: the newest scan ``data/<User>/scans/pattern_daily_<YYYYMMDD>.csv`` (pattern_daily; it must
be the scan of the last completed session by the NSE calendar, so the evening's scan feeds the
next morning's entries; an older one is refused), or ``--from FILE``: CSV or JSON (a list of
objects or of symbols, or an object holding such a list under ``rows``/``orders``/``stocks``)
with at least a ``ticker`` (or ``symbol``) column; ``stop_loss``/``stop``, ``target_price``/
``target``, ``score`` and ``entry`` are optional. A ``--from`` file is a person's explicit pick:
its rows keep their order and ``MIN_SCORE`` applies only if it has a score column.

Rules (workers.strategy.sizing; docs/trading-rules.md): selection (score >= ``MIN_SCORE``, not
blocked for entries (``workers.portfolio.entry_blocked``: held, sold today, held on another
exchange, or an open BUY order), at most ``MAX_CNC_POSITIONS`` minus the symbols held or with an open BUY order:
an unfilled entry of an earlier run takes a slot), size (cash x
``CAPITAL_DEPLOYMENT_PERCENT`` / number selected / limit price, optional ``RISK_PER_TRADE_PERCENT``
cap on (entry - stop) x shares against equity = free cash + held market value), the order (BUY
LIMIT CNC DAY at the LTP rounded up to the tick), and the pre-trade limits checked right before
every order against a fresh LTP (pause flag, ``MAX_ORDER_VALUE``, ``PRICE_BAND_PERCENT`` around
the LTP, tick grid, quantity 0). Each refusal is reported and written to the run record. Cash is
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
with the order book first. The first run of a session that gets as far as sending fixes the day's
*entry plan* for its input (state ``entry_plans["<session>|<input file>"]``: the symbols, the
cash, equity and number selected it sized with, each entry's stop and target). A later run of the
same session and input only completes that plan: symbols whose entry was already sent are
skipped ("already placed today"), the others (crashed before the send, refused by a pre-trade
limit, rejected by the broker) are sized as the first run sized them and checked again. So a
second run after a complete first run sends nothing, and a rerun after a crash never deploys
more than the first plan meant to.

On-disk contract:

    data/<User>/orders/orders_<User>_<YYYYMMDD_HHMMSS>.json   one per run that planned entries
        (not for --dry-run, a cancelled --confirm, or outside the session). Legacy top-level
        fields (user_profile, timestamp, brooks_file_used, available_capital, usable_capital,
        capital_utilization_percent, total_orders_attempted, successful_orders,
        total_investment, skipped_existing_positions, orders) plus session, scan_file_used,
        equity, paused, skipped [{ticker, reason}], stopped (why the run stopped early, or null).
        Each order: ticker, brooks_entry_price, stop_loss, target_price, risk_reward_ratio,
        order_timestamp, order_success, gtt_success (always false: stops are
        update_cnc_stoploss's), error_message, current_price (the LTP sized on),
        position_size, investment_amount (shares x limit price), limit_price, order_id, tag,
        order_status, refusals [...]. Written atomically; a name already taken gets ``_2``...
    data/trading_state_<User>.json: intents (workers.intents), entry_plans, and positions
        recorded when the broker shows fills (workers.portfolio).

Exit codes: 0 done (refusals and broker rejections are reported, not failures); 1 no usable
input (no scan, a stale scan, an unreadable --from file); 5 Kite session; 6 reconciliation
failed; 7 a write's outcome unknown or the broker unavailable (the record is written first).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

from kitefleet import clock
from kitefleet.atomic import atomic_write_json
from kitefleet.errors import KitefleetError
from kitefleet.exitcodes import ExitCode
from kitefleet.state import StateStore
from workers import pause
from workers.broker_errors import BrokerRejected, WriteOutcomeUnknown
from workers.context import JobContext
from workers.intents import SENT, IntentLog, SymbolBlocked, make_tag, send_order_once
from workers.portfolio import (
    HELD,
    HELD_ELSEWHERE,
    SOLD_TODAY,
    AccountSnapshot,
    available_cash,
    entry_blocked,
    plan_key,
    prune_entry_plans,
    record_entry_fills,
    snapshot,
)
from workers.strategy.patterns import ScanResult
from workers.strategy.sizing import (
    DEFAULT_CAPITAL_DEPLOYMENT_PERCENT,
    DEFAULT_MAX_CNC_POSITIONS,
    DEFAULT_MIN_SCORE,
    EntryPlan,
    Skipped,
    check_pre_trade,
    order_params,
    select_candidates,
    size_entry,
)

TAKES_JOB_LOCK = True
JOB = "place_orders_daily"
PURPOSE = "entry"
EXCHANGE = "NSE"


class InputError(KitefleetError):
    """No usable input (missing or stale scan, unreadable --from file)."""

    exit_code = ExitCode.JOB_FAILED


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--from", dest="from_file", type=Path, default=None, metavar="FILE",
                        help="CSV or JSON of symbols to enter (ticker column; stop/target optional) "
                             "instead of the newest scan")
    parser.add_argument("--confirm", action="store_true", help="show the plan and ask y/n before sending")
    parser.add_argument("--json", action="store_true", help="print one JSON summary line at the end")


# --- input ---------------------------------------------------------------------------------------
_SYMBOL_KEYS = ("ticker", "symbol", "tradingsymbol")
_STOP_KEYS = ("stop_loss", "stop", "sl")
_TARGET_KEYS = ("target_price", "target", "target_1", "target1")


def _pick(row: dict[str, Any], keys: tuple[str, ...]) -> Any:
    lowered = {str(k).strip().lower(): v for k, v in row.items()}
    for key in keys:
        value = lowered.get(key)
        if value not in (None, ""):
            return value
    return None


def _num(value: Any) -> float | None:
    if value in (None, ""):
        return None
    try:
        return float(str(value).replace(",", ""))
    except ValueError:
        return None


def read_manual(path: Path) -> tuple[list[ScanResult], bool]:
    """Rows of a ``--from`` file as ScanResults, and whether it carries scores."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise InputError(f"--from {path}: cannot be read ({exc.strerror})") from None
    raw: list[Any]
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise InputError(f"--from {path}: not valid JSON ({exc})") from None
        if isinstance(data, dict):
            data = next((data[k] for k in ("rows", "orders", "stocks", "tickers") if isinstance(data.get(k), list)),
                        None)
        if not isinstance(data, list):
            raise InputError(f"--from {path}: expected a list of rows (or of symbols)")
        raw = [{"ticker": r} if isinstance(r, str) else r for r in data]
    else:
        raw = list(csv.DictReader(text.splitlines()))
    rows: list[ScanResult] = []
    has_score = False
    for i, row in enumerate(raw):
        if not isinstance(row, dict):
            raise InputError(f"--from {path}: row {i + 1} is not an object")
        symbol = _pick(row, _SYMBOL_KEYS)
        if symbol is None or not str(symbol).strip():
            raise InputError(f"--from {path}: row {i + 1} has no ticker/symbol")
        score = _num(_pick(row, ("score",)))
        has_score = has_score or score is not None
        rows.append(ScanResult(
            symbol=str(symbol).strip().upper().removeprefix("NSE:"),
            score=int(score) if score is not None else 0,
            entry=_num(_pick(row, ("entry", "entry_price"))),
            stop_loss=_num(_pick(row, _STOP_KEYS)),
            target_1=_num(_pick(row, _TARGET_KEYS)),
            risk_reward=_num(_pick(row, ("risk_reward", "risk_reward_ratio"))) or 0.0,
        ))
    return rows, has_score


def _scan_session(path: Path) -> date | None:
    stem = path.stem.rsplit("_", 1)[-1]
    try:
        return date(int(stem[:4]), int(stem[4:6]), int(stem[6:8])) if len(stem) == 8 else None
    except ValueError:
        return None


def load_scan(ctx: JobContext, last_completed: date) -> tuple[Path, list[ScanResult]]:
    from workers.jobs.pattern_daily import latest_scan_file, read_scan, scans_dir

    path = latest_scan_file(ctx.home, ctx.user)
    if path is None:
        raise InputError(f"no scan in {scans_dir(ctx.home, ctx.user)}; run pattern_daily first (or pass --from FILE)")
    session = _scan_session(path)
    if session != last_completed:
        raise InputError(f"the newest scan {path.name} is for session {session}, but the last completed session "
                         f"is {last_completed}; run pattern_daily first (or pass --from FILE)")
    try:
        return path, read_scan(path)
    except (OSError, ValueError, KeyError) as exc:
        raise InputError(f"{path}: unreadable scan ({exc})") from None


# --- the run ---------------------------------------------------------------------------------------
@dataclass
class Entry:
    row: ScanResult
    tag: str
    plan: EntryPlan | None = None
    refusals: list[str] = field(default_factory=list)
    fresh_ltp: float | None = None
    order_id: str | None = None
    order_status: str | None = None
    sent_now: bool = False
    error: str | None = None
    at: datetime | None = None

    @property
    def success(self) -> bool:
        return self.order_id is not None and self.error is None

    def record(self) -> dict[str, Any]:
        plan = self.plan
        qty = plan.quantity if plan else 0
        return {
            "ticker": self.row.symbol,
            "brooks_entry_price": self.row.entry or 0,
            "stop_loss": self.row.stop_loss,
            "target_price": self.row.target_1,
            "risk_reward_ratio": self.row.risk_reward,
            "order_timestamp": (self.at or clock.now()).isoformat(),
            "order_success": self.success,
            "gtt_success": False,
            "error_message": self.error,
            "current_price": plan.ltp if plan else 0,
            "position_size": qty if self.success or plan is not None else 0,
            "investment_amount": plan.order_value if plan else 0,
            "limit_price": plan.limit_price if plan else None,
            "order_id": self.order_id,
            "tag": self.tag,
            "order_status": self.order_status,
            "refusals": self.refusals,
            "sent_now": self.sent_now,
        }


def _float_setting(ctx: JobContext, key: str, default: float | None) -> float | None:
    value = ctx.settings.get(key, default)
    return None if value is None else float(value)  # type: ignore[arg-type]


def _ltps(kite: Any, symbols: list[str]) -> dict[str, float]:
    if not symbols:
        return {}
    answer = kite.ltp(*[f"{EXCHANGE}:{s}" for s in symbols])
    return {s: float((answer.get(f"{EXCHANGE}:{s}") or {}).get("last_price") or 0.0) for s in symbols}


def _orders_dir(ctx: JobContext) -> Path:
    return ctx.home.user_data_dir(ctx.user) / "orders"


def write_record(ctx: JobContext, record: dict[str, Any], now: datetime) -> Path:
    folder = _orders_dir(ctx)
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    stem = f"orders_{ctx.user}_{now:%Y%m%d_%H%M%S}"
    path = folder / f"{stem}.json"
    n = 2
    while path.exists():
        path = folder / f"{stem}_{n}.json"
        n += 1
    atomic_write_json(path, record, mode=0o600)
    return path


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


def run(ctx: JobContext) -> int:
    from workers.kite_client import get_kite
    from workers.marketdata import market_data_for

    log = ctx.log
    args = ctx.args
    now = clock.now()
    today = now.date()
    kite = get_kite(ctx)
    md = market_data_for(ctx)
    calendar = md.calendar
    in_session = calendar.session_open_at(now)
    if not in_session and not ctx.dry_run:
        message = (f"market closed at {now:%Y-%m-%d %H:%M} IST: entries are placed only during the session "
                   "(LIMIT at the live LTP); nothing placed")
        log.info("%s", message)
        print(message)
        if args.json:
            print(json.dumps({"placed": [], "refused": {}, "skipped": {}, "record": None,
                              "market_closed": True}))
        return ExitCode.OK

    store = StateStore(ctx.home, ctx.user, ctx.settings.mode)
    intents = IntentLog(store)
    if not ctx.dry_run:
        report = intents.reconcile(kite)
        if report.checked:
            log.info("%s", report.summary())
    account = snapshot(kite)
    if not ctx.dry_run:
        with store.transaction() as state:
            record_entry_fills(state, account.orders, today, now)
            prune_entry_plans(state, today)

    # Input and selection.
    if args.from_file is not None:
        source_path = args.from_file
        rows, has_score = read_manual(source_path)
    else:
        source_path, rows = load_scan(ctx, calendar.last_completed_session(now))
        has_score = True
    source = source_path.name
    key = plan_key(today, source)
    state = store.read()
    existing_plan = (state.get("entry_plans") or {}).get(key)
    blocked = intents.blocked_symbols()
    paused = pause.is_paused(ctx.home, ctx.user)
    pause_note = pause.describe(pause.pause_info(ctx.home, ctx.user)) if paused else None
    equity_margins = kite.margins("equity")
    min_score = int(ctx.settings.get("MIN_SCORE", DEFAULT_MIN_SCORE))  # type: ignore[call-overload]
    max_positions = int(ctx.settings.get("MAX_CNC_POSITIONS", DEFAULT_MAX_CNC_POSITIONS))  # type: ignore[call-overload]
    percent = _float_setting(ctx, "CAPITAL_DEPLOYMENT_PERCENT", DEFAULT_CAPITAL_DEPLOYMENT_PERCENT) or 0.0
    risk_percent = _float_setting(ctx, "RISK_PER_TRADE_PERCENT", None)
    max_value = _float_setting(ctx, "MAX_ORDER_VALUE", None)
    band = _float_setting(ctx, "PRICE_BAND_PERCENT", None)

    skipped: list[Skipped] = []
    if existing_plan is not None:
        cash = float(existing_plan["cash"])
        equity = float(existing_plan["equity"])
        n_selected = int(existing_plan["n_selected"])
        selected, skipped = _remaining(existing_plan, rows, account, intents, today, ctx.user)
        log.info("completing today's entry plan of %s (%d entries; %d left)", existing_plan.get("created_at"),
                 n_selected, len(selected))
    else:
        cash = available_cash(equity_margins)
        equity = round(cash + account.market_value(), 2)
        blocked_now = entry_blocked(account)
        # An open BUY (an earlier run's entry not filled yet) will become a position: it takes a
        # slot, or a second input the same day could fill MAX_CNC_POSITIONS twice over. A symbol
        # sold today is blocked but holds nothing: no slot.
        taken = sum(1 for why in blocked_now.values() if why != SOLD_TODAY)
        if has_score and args.from_file is None:
            selected, skipped = select_candidates(rows, blocked_now, min_score=min_score,
                                                  max_positions=max_positions, held_count=taken)
        else:
            selected, skipped = select_candidates(rows, blocked_now, min_score=min_score if has_score else None,
                                                  max_positions=max_positions, held_count=taken, manual=True)
        reasons = set(blocked_now.values())
        skipped = [s for s in skipped if s.reason in reasons] + [s for s in skipped if s.reason not in reasons]
        n_selected = len(selected)

    entries = [Entry(r, make_tag(ctx.user, JOB, today, r.symbol, PURPOSE)) for r in selected]
    for e in [e for e in entries if e.row.symbol in blocked]:
        skipped.append(Skipped(e.row.symbol, "blocked: an unresolved intent needs a person (see doctor)"))
    entries = [e for e in entries if e.row.symbol not in blocked]

    ltps = _ltps(kite, [e.row.symbol for e in entries])
    for e in entries:
        tick = md.tick_size(e.row.symbol)
        e.plan = size_entry(cash, percent, n_selected, ltps[e.row.symbol], tick, e.row.stop_loss, equity,
                            risk_percent, symbol=e.row.symbol)
        # Shown in the plan; checked again against a fresh LTP right before each order.
        e.refusals = check_pre_trade(e.plan, ltps[e.row.symbol], max_value, band, paused)

    usable = round(cash * percent / 100, 2)
    header = (f"{ctx.user}: {len(entries)} entr{'y' if len(entries) == 1 else 'ies'} from {source}; cash "
              f"{cash:,.2f}, usable {usable:,.2f} ({percent:g} %), equity {equity:,.2f}"
              + (f"; PAUSED: {pause_note}" if paused else ""))
    if ctx.dry_run:
        _print_plan(entries, skipped, header + " [dry run: nothing is sent]")
        if args.json:
            print(json.dumps(_summary(entries, skipped, None)))
        return ExitCode.OK
    if args.confirm:
        _print_plan(entries, skipped, header)
        sendable = [e for e in entries if not e.refusals]
        if not sendable:
            print("nothing to send")
        else:
            print(f"Place {len(sendable)} order(s)? (y/n) ", end="", flush=True)
            try:
                answer = sys.stdin.readline().strip().lower()
            except (OSError, ValueError):
                answer = ""
            if answer != "y":
                print("cancelled: nothing sent")
                log.info("cancelled at the confirmation prompt")
                return ExitCode.OK

    if existing_plan is None and entries:
        with store.transaction() as st:
            st.setdefault("entry_plans", {})[key] = {
                "session": today.isoformat(), "source": source, "created_at": now.isoformat(),
                "cash": cash, "equity": equity, "n_selected": n_selected, "percent": percent,
                "entries": {e.row.symbol: {"tag": e.tag, "entry": e.row.entry, "stop_loss": e.row.stop_loss,
                                           "target_price": e.row.target_1,
                                           "risk_reward_ratio": e.row.risk_reward} for e in entries},
            }

    stopped: str | None = None
    exit_code = ExitCode.OK
    try:
        for e in entries:
            e.at = clock.now()
            assert e.plan is not None
            fresh = _ltps(kite, [e.row.symbol])[e.row.symbol]
            e.fresh_ltp = fresh
            e.refusals = check_pre_trade(e.plan, fresh, max_value, band, pause.is_paused(ctx.home, ctx.user))
            if e.refusals:
                e.error = "refused: " + "; ".join(e.refusals)
                log.warning("%s: %s", e.row.symbol, e.error)
                continue
            try:
                result = send_order_once(kite, intents, e.tag, order_params(e.plan), purpose=PURPOSE, job=JOB,
                                         session=today)
            except SymbolBlocked as exc:
                e.error = str(exc)
            except BrokerRejected as exc:
                e.error = exc.kite_message or str(exc)
                log.warning("%s: broker refused the entry: %s", e.row.symbol, e.error)
            except WriteOutcomeUnknown as exc:
                e.error = str(exc)
                stopped = f"{e.row.symbol}: {exc}"
                exit_code = ExitCode.BROKER_TEMPORARY
                log.error("%s; stopping: no more orders until the next run has reconciled it", stopped)
                break
            else:
                e.order_id, e.sent_now = result.broker_id, result.sent_now
                e.order_status = result.order_status
                log.info("%s: BUY %d @ %.2f LIMIT CNC -> order %s%s", e.row.symbol, e.plan.quantity,
                         e.plan.limit_price, e.order_id, "" if e.sent_now else " (already at the broker)")
    except KitefleetError as exc:
        # Token, broker or reconciliation trouble mid-run: the record still says what happened.
        stopped = str(exc)
        raise
    finally:
        _finish(ctx, kite, store, entries, skipped, stopped, now, today, source, cash, percent, equity, paused,
                n_selected)
    return exit_code


def _remaining(plan: dict[str, Any], rows: list[ScanResult], account: AccountSnapshot, intents: IntentLog,
               today: date, user: str) -> tuple[list[ScanResult], list[Skipped]]:
    """The planned entries still to do: not sent yet, and not held or pending meanwhile."""
    by_symbol = {r.symbol: r for r in rows}
    blocked_now = entry_blocked(account)
    selected: list[ScanResult] = []
    skipped: list[Skipped] = []
    for sym, meta in (plan.get("entries") or {}).items():
        tag = str(meta.get("tag") or make_tag(user, JOB, today, sym, PURPOSE))
        intent = intents.get(tag)
        if intent is not None and intent.get("status") in (SENT, "resolved"):
            status = intent.get("order_status") or "sent"
            skipped.append(Skipped(sym, f"already placed today: order {intent.get('broker_id')} ({status})"))
            continue
        if sym in blocked_now:
            skipped.append(Skipped(sym, blocked_now[sym]))
            continue
        row = by_symbol.get(sym) or ScanResult(sym, 0, entry=meta.get("entry"), stop_loss=meta.get("stop_loss"),
                                               target_1=meta.get("target_price"),
                                               risk_reward=meta.get("risk_reward_ratio") or 0.0)
        selected.append(row)
    return selected, skipped


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


def _finish(ctx: JobContext, kite: Any, store: StateStore, entries: list[Entry], skipped: list[Skipped],
            stopped: str | None, started: datetime, today: date, source: str, cash: float, percent: float,
            equity: float, paused: bool, n_selected: int) -> None:
    log = ctx.log
    try:
        orders = list(kite.orders()) if any(e.order_id for e in entries) else []
    except KitefleetError as exc:
        log.warning("order book not read after sending (%s); fills are recorded by the next run", exc)
        orders = []
    by_id = {str(o.get("order_id")): o for o in orders}
    for e in entries:
        if e.order_id and e.order_id in by_id:
            e.order_status = by_id[e.order_id].get("status")
            if e.order_status == "REJECTED":
                e.error = f"order rejected: {by_id[e.order_id].get('status_message') or 'no reason given'}"
    if orders:
        with store.transaction() as state:
            record_entry_fills(state, orders, today, clock.now())
    successes = [e for e in entries if e.success]
    record = {
        "user_profile": ctx.user,
        "timestamp": started.isoformat(),
        "session": today.isoformat(),
        "mode": ctx.settings.mode,
        "brooks_file_used": source,
        "scan_file_used": source,
        "available_capital": cash,
        "usable_capital": round(cash * percent / 100, 2),
        "capital_utilization_percent": percent,
        "equity": equity,
        "n_selected": n_selected,
        "paused": paused,
        "total_orders_attempted": sum(1 for e in entries if e.at is not None),
        "successful_orders": len(successes),
        "total_investment": round(sum(e.plan.order_value for e in successes if e.plan), 2),
        "skipped_existing_positions": [s.symbol for s in skipped if s.reason in (HELD, HELD_ELSEWHERE, SOLD_TODAY)],
        "skipped": [{"ticker": s.symbol, "reason": s.reason} for s in skipped],
        "stopped": stopped,
        "orders": [e.record() for e in entries],
    }
    path = write_record(ctx, record, started)
    _print_plan(entries, skipped, f"{ctx.user}: {len(successes)} of {len(entries)} entr"
                                  f"{'y' if len(entries) == 1 else 'ies'} at the broker; record {path}")
    log.info("run record %s: %d attempted, %d at the broker", path, record["total_orders_attempted"], len(successes))
    if ctx.args.json:
        print(json.dumps(_summary(entries, skipped, path)))

