"""``resolve_intent``: a person closes a parked (unresolved) intent after looking at Kite.

    python -m workers resolve_intent --user Som                      # list unresolved intents
    python -m workers resolve_intent --user Som TAG --note TEXT [--order-id ID]

An intent is parked (``unresolved``) when its outcome could not be read from the broker (an
earlier day's write that the order book no longer shows, a tag found on two orders): new entries
of its symbol stay blocked until a person compares it with Kite's order book, trades and holdings
and marks it resolved here (``orchestrator.py resolve-intent`` runs this job in the user's own
process). No broker call; the note and the person's order id (if any) are kept in the intent.
Exit 0 done (or nothing to resolve), 2 an unknown tag or one that is not unresolved.
"""

from __future__ import annotations

import argparse
import json

from kitefleet.errors import UsageError
from kitefleet.state import StateStore
from workers.context import JobContext
from workers.intents import UNRESOLVED, IntentLog

LOG_TO_CONSOLE = False


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("tag", nargs="?", help="the unresolved intent's tag (omit to list them)")
    parser.add_argument("--note", help="what you found (required with TAG)")
    parser.add_argument("--order-id", help="the Kite order or GTT id it turned out to be, if any")
    parser.add_argument("--json", action="store_true", help="print JSON")


def run(ctx: JobContext) -> int:
    intents = IntentLog(StateStore(ctx.home, ctx.user, ctx.settings.mode))
    parked = {t: i for t, i in intents.all().items() if i.get("status") == UNRESOLVED}
    if ctx.args.tag is None:
        rows = [{"tag": t, "symbol": i.get("symbol"), "purpose": i.get("purpose"), "job": i.get("job"),
                 "placed_on": i.get("placed_on"), "note": i.get("note")} for t, i in sorted(parked.items())]
        if ctx.args.json:
            print(json.dumps(rows))
        elif not rows:
            print(f"{ctx.user}: no unresolved intents")
        for r in rows if not ctx.args.json else []:
            print(f"{r['tag']}  {r['symbol']}  {r['purpose']}  {r['job']}  placed {r['placed_on']}: {r['note']}")
        return 0
    if not ctx.args.note:
        raise UsageError("--note is required: say what you found in Kite's order book, trades or holdings")
    if ctx.args.tag not in parked:
        known = intents.get(ctx.args.tag)
        status = "no such intent" if known is None else f"its status is {known.get('status')}"
        raise UsageError(f"{ctx.user}: {ctx.args.tag} cannot be resolved ({status}); "
                         "list the unresolved ones with no TAG")
    intent = intents.mark_resolved(ctx.args.tag, f"resolved by a person: {ctx.args.note}",
                                   broker_id=ctx.args.order_id)
    ctx.log.info("intent %s (%s %s) resolved: %s", ctx.args.tag, intent.get("symbol"), intent.get("purpose"),
                 ctx.args.note)
    symbol = str(intent.get("symbol"))
    still = symbol.upper() in intents.blocked_symbols()
    print(f"{ctx.user}: {ctx.args.tag} ({symbol}) resolved; "
          + (f"{symbol} has other unresolved intents" if still else f"new entries of {symbol} are allowed again"))
    return 0
