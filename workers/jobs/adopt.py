"""``adopt``: hand shares of a holding to the bot and give them the bot's stop at once.

    python -m workers adopt --user Som SYMBOL [--quantity N] [--stop PRICE] [--json]
    (orchestrator.py adopt Som SYMBOL ... runs it in a process of that user)

At most what is held and not owned (workers.ledger.adoptable; default: all of it). The stop is
``--stop`` (floored to the tick; it must be below the LTP) or the stop job's rule (the previous
session's low, never below a recorded stop; a fallback below the LTP when that cannot be placed):
the bot's stop GTT of the symbol is extended to the owned quantity held (modified in place, its
trigger moved to the stop) or placed (workers.bot_stop.send_stop_gtt, an update_cnc_stoploss tag,
so the stop job and the watchdog own it from then on), under the user's GTT lock.

Order of writes, so a kill at any instant is completed by a rerun (docs/restart-behaviour.md):

1. one state transaction: the ``adopted`` lot and ``ledger.pending[SYMBOL] = {"op": "adopt",
   "quantity", "stop", "session", "started_at"}``;
2. the GTT write (intent protocol for a new GTT; a modification is a full replacement);
3. one state transaction: ``stops[SYMBOL]`` records the GTT, the pending marker is removed.

A rerun while the marker is there skips step 1 (the arguments of the rerun are not used) and
completes steps 2 and 3. A running watchdog sees the new lot within one poll (it re-reads the state
file when it changes). Prints the ledger row (``--json``: one JSON line ``{"user", "symbol",
"owned", "held", "lots", "stop", "gtt_id", "action"}``).

Bad input changes nothing: a symbol not held (or unknown), a quantity above what is held and not
owned, nothing left to adopt, a stop at or above the LTP: one line, exit 2. Exit 1: the GTT lock
was not free within 60 s; 5 session; 6/7 as update_cnc_stoploss.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

from kitefleet import clock
from kitefleet.errors import UsageError
from kitefleet.exitcodes import ExitCode
from kitefleet.locks import gtt_lock
from kitefleet.state import StateStore
from kitefleet.ticks import round_to_tick
from workers import ledger
from workers.context import JobContext
from workers.faults import fault_point
from workers.gtt import bot_stops, stop_ownership
from workers.intents import IntentLog
from workers.portfolio import AccountSnapshot, held_quantities, reconcile_ledger, snapshot
from workers.strategy.stops import EXCHANGE, fixed_band_percent, gtt_limit_price, gtt_params

LOG_TO_CONSOLE = False
GTT_LOCK_TIMEOUT_S = 60.0
ADOPT, RELEASE = "adopt", "release"
#: a stop record's source for a stop a person gave with --stop
SOURCE_GIVEN = "adopt"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("symbol", help="NSE symbol held in the account")
    parser.add_argument("--quantity", type=int, default=None, help="shares to hand over (default: all not owned)")
    parser.add_argument("--stop", type=float, default=None, help="stop trigger (default: the stop job's rule)")
    parser.add_argument("--json", action="store_true", help="print one JSON line")


# --- shared with release ---------------------------------------------------------------------------
def read_account(ctx: JobContext, kite: Any, store: StateStore, today: date) -> tuple[AccountSnapshot, list[Any]]:
    """Reconcile open intents, read the account and the GTT list, bring the ledger up to today's
    book (inside the GTT lock, as the stop job does)."""
    report = IntentLog(store).reconcile(kite)
    if report.checked:
        ctx.log.info("%s", report.summary())
    account = snapshot(kite)
    gtts = list(kite.get_gtts())
    with store.transaction() as state:
        reconcile_ledger(state, account, gtts, today)
    return account, gtts


def symbol_stops(state: Mapping[str, Any], gtts: list[Any], symbol: str) -> list[Mapping[str, Any]]:
    """The bot's active stop GTTs of ``symbol``, lowest id first."""
    active = [g for g in gtts if str(g.get("status", "")).lower() == "active"]
    return bot_stops(active, stop_ownership(state), exchange=EXCHANGE).get(symbol, [])


def ltp_of(kite: Any, symbol: str) -> float:
    return float((kite.ltp(f"{EXCHANGE}:{symbol}").get(f"{EXCHANGE}:{symbol}") or {}).get("last_price") or 0.0)


def record_stop(state: dict[str, Any], symbol: str, gtt_id: int | None, trigger: float | None, limit: float | None,
                quantity: int, now: datetime, source: str | None = None) -> None:
    stops = state.setdefault("stops", {})
    if gtt_id is None or quantity <= 0:
        stops.pop(symbol, None)
        return
    rec = dict(stops.get(symbol) or {})
    rec.update({"gtt_id": int(gtt_id), "trigger": trigger, "limit_price": limit, "quantity": quantity,
                "updated_at": now.isoformat()})
    if trigger is not None and (source is not None or rec.get("stop") is None):
        rec["stop"] = trigger
        rec["source"] = source or rec.get("source") or "prev_session_low"
    stops[symbol] = rec


def print_row(ctx: JobContext, row: dict[str, Any]) -> None:
    if ctx.args.json:
        print(json.dumps({"user": ctx.user, **row}), flush=True)
        return
    lots = ", ".join(f"{lot['quantity']} {lot['source']} {lot['date']} @ {lot['price']}" for lot in row["lots"])
    stop = "no bot stop" if row.get("gtt_id") is None else f"bot stop GTT {row['gtt_id']} at {row.get('stop')}"
    print(f"{ctx.user} {row['symbol']}: owned {row['owned']} of {row.get('held', 0)} held ({lots or 'no lots'}); "
          f"{stop}; {row.get('action')}", flush=True)


# --- adopt -------------------------------------------------------------------------------------------
def _rule_stop(ctx: JobContext, kite: Any, state: dict[str, Any], symbol: str, qty: int,
               managed: list[Mapping[str, Any]], now: datetime) -> tuple[float, float, str]:
    """(stop, tick, source) by the stop job's rule for ``symbol``."""
    from workers.jobs.update_cnc_stoploss import decide_stops
    from workers.marketdata import market_data_for

    md = market_data_for(ctx)
    buffer = ctx.settings.number("GTT_LIMIT_BUFFER_PERCENT")
    min_gap = ctx.settings.number("STOP_MIN_GAP_PERCENT")
    decisions, ticks, _ltps, _fb, _quotes = decide_stops(md, kite, {symbol: qty}, state, {symbol: list(managed)},
                                                         now, buffer, min_gap)
    d = decisions[symbol]
    if d.place and d.stop is not None:
        return float(d.stop), ticks[symbol], str(d.source)
    if managed:  # the rule keeps the GTT's trigger (a stop above the LTP is never placed)
        return float(managed[0]["condition"]["trigger_values"][0]), ticks[symbol], "kept"
    raise UsageError(f"{symbol}: no stop can be placed by the rule ({d.reason or 'no level'}); give --stop PRICE "
                     "below the LTP")


def _tick(ctx: JobContext, symbol: str) -> float:
    from workers.marketdata import market_data_for

    return float(market_data_for(ctx).tick_size(symbol))


def run(ctx: JobContext) -> int:
    from workers.kite_client import get_kite

    symbol = str(ctx.args.symbol).strip().upper()
    kite = get_kite(ctx)
    store = StateStore(ctx.home, ctx.user, ctx.settings.mode)
    with gtt_lock(ctx.home, ctx.user, timeout=GTT_LOCK_TIMEOUT_S):
        return _adopt(ctx, kite, store, symbol)


def _adopt(ctx: JobContext, kite: Any, store: StateStore, symbol: str) -> int:
    now = clock.now()
    today = now.date()
    account, gtts = read_account(ctx, kite, store, today)
    held = held_quantities(account).get(symbol, 0)
    state = store.read()
    pending = (ledger.ledger_of(state).get("pending") or {}).get(symbol)
    managed = symbol_stops(state, gtts, symbol)
    if pending is not None and pending.get("op") == ADOPT:
        ctx.log.warning("%s: completing an adopt of %s shares cut short (started %s); this run's arguments are "
                        "not used", symbol, pending.get("quantity"), pending.get("started_at"))
        stop, source = pending.get("stop"), pending.get("source")
    elif pending is not None:
        raise UsageError(f"{symbol}: a release is not complete; run release {symbol} again first")
    else:
        owned = ledger.owned_quantities(state.get("ledger")).get(symbol, 0)
        if held <= 0:
            raise UsageError(f"{symbol}: not held in {ctx.user}'s account (NSE CNC); nothing adopted")
        free = ledger.adoptable(owned, held)
        qty = free if ctx.args.quantity is None else int(ctx.args.quantity)
        if free <= 0:
            raise UsageError(f"{symbol}: all {held} held shares are the bot's already; nothing adopted")
        if not 0 < qty <= free:
            raise UsageError(f"{symbol}: --quantity {qty} is not between 1 and {free} (held {held}, owned {owned}); "
                             "nothing adopted")
        ltp = ltp_of(kite, symbol)
        if ctx.args.stop is not None:
            stop = round_to_tick(float(ctx.args.stop), _tick(ctx, symbol), "floor")
            if not 0 < stop < ltp:
                raise UsageError(f"{symbol}: --stop {ctx.args.stop} is not below the LTP {ltp}; nothing adopted")
            source = SOURCE_GIVEN
        else:
            stop, _tick_size, source = _rule_stop(ctx, kite, state, symbol, owned + qty, managed, now)
        price = account.average_price(symbol) or ltp
        with store.transaction() as st:  # step 1: the ledger first, with the marker
            led = ledger.ledger_of(st)
            ledger.add_lot(led, symbol, ledger.lot(qty, price, today, ledger.ADOPTED))
            led.setdefault("pending", {})[symbol] = {"op": ADOPT, "quantity": qty, "stop": stop, "source": source,
                                                     "session": today.isoformat(), "started_at": now.isoformat()}
        ctx.log.info("%s: %d shares adopted (ledger written); the stop GTT next", symbol, qty)
        fault_point("after_ledger", symbol)
    return _finish_adopt(ctx, kite, store, symbol, held, stop, source, managed, now)


def _finish_adopt(ctx: JobContext, kite: Any, store: StateStore, symbol: str, held: int, stop: Any,
                  source: Any, managed: list[Mapping[str, Any]], now: datetime) -> int:
    """Steps 2 and 3: the bot stop covers the owned shares held, at ``stop``."""
    from workers.bot_stop import send_stop_gtt

    state = store.read()
    target = min(ledger.owned_quantities(state.get("ledger")).get(symbol, 0), held)
    # the quote row, not just the LTP: the limit is priced as the stop job prices it (the circuit
    # band and lower circuit), so its next run finds this GTT as it would have placed it
    quote = kite.quote(f"{EXCHANGE}:{symbol}").get(f"{EXCHANGE}:{symbol}") or {}
    ltp = float(quote.get("last_price") or 0.0)
    trigger = float(stop) if isinstance(stop, int | float) else float(managed[0]["condition"]["trigger_values"][0])
    buffer = ctx.settings.number("GTT_LIMIT_BUFFER_PERCENT")
    tick = _tick(ctx, symbol)
    lower = quote.get("lower_circuit_limit")
    limit = gtt_limit_price(trigger, buffer, tick, band_percent=fixed_band_percent(quote),
                            lower_circuit=float(lower) if lower else None)
    params = gtt_params(symbol, trigger, limit, target, ltp)
    action = "none"
    if managed:
        g = managed[0]
        gid = int(g["id"])
        same = (abs(float(g["condition"]["trigger_values"][0]) - trigger) < 1e-6
                and [int(o.get("quantity") or 0) for o in g.get("orders") or []] == [target])
        if not same:
            kite.modify_gtt(gid, params["trigger_type"], symbol, EXCHANGE, params["trigger_values"],
                            params["last_price"], params["orders"])
            fault_point("after_send", symbol)
            action = f"GTT {gid} extended to {target} shares at {trigger}"
        gtt_id: int | None = gid
    else:
        # The one create path of every bot stop (workers.bot_stop): the stop job's tags, an
        # active GTT or none (the marker stays, and a rerun completes the adopt).
        sent = send_stop_gtt(kite, IntentLog(store), ctx.user, now.date(), symbol, trigger, limit, target, ltp,
                             log=ctx.log)
        if sent.gtt_id is None:
            ctx.log.error("%s: %s; the shares are adopted, rerun adopt to place the stop", symbol, sent.error)
            return ExitCode.BROKER_TEMPORARY
        gtt_id = sent.gtt_id
        action = f"stop GTT {gtt_id} placed for {target} shares at {trigger}"
    with store.transaction() as st:  # step 3: the stop record, the marker gone
        record_stop(st, symbol, gtt_id, trigger, limit, target, now,
                    source=str(source) if source not in (None, "kept") else None)
        (ledger.ledger_of(st).get("pending") or {}).pop(symbol, None)
        row = ledger.row(st.get("ledger"), symbol, held)
    ctx.log.info("%s: %s", symbol, action)
    print_row(ctx, {**row, "stop": trigger, "gtt_id": gtt_id, "action": action})
    return ExitCode.OK
