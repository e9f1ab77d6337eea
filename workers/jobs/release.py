"""``release``: take shares back from the bot; its stop GTT shrinks to what it still owns.

    python -m workers release --user Som SYMBOL [--quantity N] [--json]
    (orchestrator.py release Som SYMBOL ... runs it in a process of that user)

Default: every owned share. Refused while a bot SELL of the symbol is open (an exit in flight
would sell shares the person took back). Under the user's GTT lock, in this order, so a kill at
any instant is completed by a rerun (docs/restart-behaviour.md):

1. one state transaction: ``ledger.pending[SYMBOL] = {"op": "release", "quantity", "session",
   "started_at"}`` (the ledger itself unchanged);
2. the bot's stop GTT of the symbol is reduced to the owned shares left (held), or deleted when
   none are left (a modification is a full replacement, a deletion of a deleted GTT is a no-op:
   a rerun repeats nothing harmful);
3. one state transaction: the lots shrink (newest first), ``stops[SYMBOL]`` follows the GTT, the
   marker is removed.

The GTT is changed before the ledger: a kill in between leaves the bot protecting no more than
it will own, never selling a person's shares. A running watchdog sees the change within one poll.
Prints the ledger row as adopt does. Bad input changes nothing: a symbol the bot owns none of, a
quantity above what it owns: one line, exit 2; a bot SELL open: exit 2 as well, try again after it.
"""

from __future__ import annotations

import argparse
from typing import Any

from kitefleet import clock
from kitefleet.errors import UsageError
from kitefleet.exitcodes import ExitCode
from kitefleet.locks import gtt_lock
from kitefleet.state import StateStore
from workers import ledger
from workers.context import JobContext
from workers.faults import fault_point
from workers.gtt import stop_ownership
from workers.jobs.adopt import (
    ADOPT,
    GTT_LOCK_TIMEOUT_S,
    RELEASE,
    ltp_of,
    print_row,
    read_account,
    record_stop,
    symbol_stops,
)
from workers.portfolio import held_quantities
from workers.strategy.stops import EXCHANGE

LOG_TO_CONSOLE = False


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("symbol", help="NSE symbol the bot owns shares of")
    parser.add_argument("--quantity", type=int, default=None, help="shares to take back (default: all owned)")
    parser.add_argument("--json", action="store_true", help="print one JSON line")


def run(ctx: JobContext) -> int:
    from workers.kite_client import get_kite

    symbol = str(ctx.args.symbol).strip().upper()
    kite = get_kite(ctx)
    store = StateStore(ctx.home, ctx.user, ctx.settings.mode)
    with gtt_lock(ctx.home, ctx.user, timeout=GTT_LOCK_TIMEOUT_S):
        return _release(ctx, kite, store, symbol)


def _release(ctx: JobContext, kite: Any, store: StateStore, symbol: str) -> int:
    now = clock.now()
    today = now.date()
    account, gtts = read_account(ctx, kite, store, today)
    held = held_quantities(account).get(symbol, 0)
    state = store.read()
    owned = ledger.owned_quantities(state.get("ledger")).get(symbol, 0)
    pending = (ledger.ledger_of(state).get("pending") or {}).get(symbol)
    bot_ids = ledger.bot_sell_order_ids(state.get("intents") or {}, account.orders, gtts,
                                        stop_ownership(state).owned_ids)
    bot_open, _every = ledger.open_sell_quantities(account.orders, bot_ids)
    if bot_open.get(symbol):
        raise UsageError(f"{symbol}: refused: a SELL of the bot ({bot_open[symbol]} shares) is open; release "
                         "after it is done or cancelled")
    if pending is not None and pending.get("op") == RELEASE:
        qty = int(pending["quantity"])
        ctx.log.warning("%s: completing a release of %d shares cut short (started %s); this run's arguments are "
                        "not used", symbol, qty, pending.get("started_at"))
    elif pending is not None and pending.get("op") == ADOPT:
        raise UsageError(f"{symbol}: an adopt is not complete; run adopt {symbol} again first")
    else:
        if owned <= 0:
            raise UsageError(f"{symbol}: the bot owns no {symbol} shares of {ctx.user}'s; nothing released")
        qty = owned if ctx.args.quantity is None else int(ctx.args.quantity)
        if not 0 < qty <= owned:
            raise UsageError(f"{symbol}: --quantity {qty} is not between 1 and {owned} (owned); nothing released")
        with store.transaction() as st:  # step 1: only the marker
            ledger.ledger_of(st).setdefault("pending", {})[symbol] = {
                "op": RELEASE, "quantity": qty, "session": today.isoformat(), "started_at": now.isoformat()}
        fault_point("after_ledger", symbol)
    left = max(0, min(owned - qty, held))
    managed = symbol_stops(state, gtts, symbol)
    action = "no bot stop GTT to change"
    gtt_id: int | None = None
    trigger: float | None = None
    limit: float | None = None
    for n, g in enumerate(managed):  # step 2: the GTT before the ledger
        gid = int(g["id"])
        if n == 0 and left > 0:
            leg = dict((g.get("orders") or [{}])[0])
            trigger, limit = float(g["condition"]["trigger_values"][0]), float(leg.get("price") or 0.0)
            gtt_id = gid
            if int(leg.get("quantity") or 0) != left:
                leg.update({"quantity": left})
                kite.modify_gtt(gid, "single", symbol, EXCHANGE, [trigger], ltp_of(kite, symbol),
                                [{k: leg[k] for k in ("exchange", "tradingsymbol", "transaction_type", "quantity",
                                                      "order_type", "product", "price") if k in leg}])
            action = f"GTT {gid} reduced to {left} shares"
        else:
            kite.delete_gtt(gid)
            action = f"GTT {gid} deleted"
        fault_point("after_send", symbol)
    with store.transaction() as st:  # step 3: the ledger, the stop record, the marker gone
        led = ledger.ledger_of(st)
        ledger.remove(led, symbol, qty, newest_first=True)
        record_stop(st, symbol, gtt_id, trigger, limit, left, now)
        (led.get("pending") or {}).pop(symbol, None)
        row = ledger.row(st.get("ledger"), symbol, held)
    ctx.log.info("%s: %d shares released; %s", symbol, qty, action)
    print_row(ctx, {**row, "stop": trigger, "gtt_id": gtt_id, "action": f"{qty} released; {action}"})
    return ExitCode.OK
