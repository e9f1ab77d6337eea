"""``cancel_entries``: cancel every open bot entry order of a halted user (workers.entry_cancel).

    python -m workers cancel_entries --user Som [--json]

``orchestrator.py halt`` runs it in the user's own process after writing the halt flag, so the
open entries of a user whose worker is not running are cancelled too (a running watchdog does the
same within one poll; one cancel tag per order, so they never cancel one order twice). It
refuses to run for a user who is not halted (exit 2). Prints one JSON line with ``--json``:
``{"user", "halted", "cancelled": [{"symbol", "order_id", "status", "filled", "error"}]}``.
Exit 0 (also when a cancel could not be confirmed: its row has ``error``, and the watchdog or a
rerun looks again), 2 not halted.
"""

from __future__ import annotations

import argparse
import json

from kitefleet import clock, halt
from kitefleet.errors import UsageError
from kitefleet.exitcodes import ExitCode
from kitefleet.state import StateStore
from workers.context import JobContext

LOG_TO_CONSOLE = False


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON line")


def run(ctx: JobContext) -> int:
    from workers.entry_cancel import as_rows, cancel_open_entries
    from workers.intents import IntentLog
    from workers.kite_client import get_kite

    info = halt.halt_info(ctx.home, ctx.user)
    if info is None:
        raise UsageError(f"{ctx.user} is not halted: nothing to cancel (orchestrator.py halt {ctx.user})")
    kite = get_kite(ctx)
    intents = IntentLog(StateStore(ctx.home, ctx.user, ctx.settings.mode))
    report = intents.reconcile(kite)
    if report.checked:
        ctx.log.info("%s", report.summary())
    done = cancel_open_entries(kite, intents, ctx.user, clock.now().date(), ctx.log)
    rows = as_rows(done)
    if ctx.args.json:
        print(json.dumps({"user": ctx.user, "halted": halt.describe(info), "cancelled": rows}))
    else:
        for r in rows:
            print(f"{ctx.user}: {r['symbol']} entry {r['order_id']}: "
                  + (f"not cancelled yet ({r['error']})" if r["error"] else f"{r['status']}, {r['filled']} filled"))
    return ExitCode.OK
