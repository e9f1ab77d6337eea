"""``flatten``: sell every position the bot owns of a halted user (workers.flatten).

    python -m workers flatten --user Som [--wait MINUTES] [--json]

``orchestrator.py halt USER --flatten`` runs it in the user's own process after writing the halt
flag and cancelling the open entries. It refuses to run for a user who is not halted (exit 2): a
flatten that new entries could follow is no flatten. It waits at most ``--wait`` minutes of market
clock (default 10) for the fills, printing one progress line per look; a running watchdog goes on
repricing the exits after it returns. Outside the session it sends nothing (no AMOs) and says
"market closed". Holds its job lock: two flattens of one user never run at once.

Prints one JSON line last with ``--json`` (workers.flatten.FlattenReport.as_dict): ``{"user",
"market_closed", "done", "started_at", "ended_at", "symbols": [{"symbol", "owned", "sold", "left",
"why", "orders"}], "errors"}``. Exit 0 (also when shares are still open: the report says why).
"""

from __future__ import annotations

import argparse
import json
from datetime import timedelta

from kitefleet import halt
from kitefleet.errors import UsageError
from kitefleet.exitcodes import ExitCode
from workers.context import JobContext

TAKES_JOB_LOCK = True
HANDLES_STOP = True
LOG_TO_CONSOLE = False


def _minutes(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--wait {text!r}: give minutes, e.g. 10") from None
    if not 0 <= value <= 375:
        raise argparse.ArgumentTypeError(f"--wait {text!r}: between 0 and 375 minutes (one session)")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--wait", type=_minutes, default=10.0, help="minutes of market clock to wait for fills")
    parser.add_argument("--json", action="store_true", help="print one JSON line last")


def run(ctx: JobContext) -> int:
    from workers.flatten import flatten_for
    from workers.kite_client import get_kite

    info = halt.halt_info(ctx.home, ctx.user)
    if info is None:
        raise UsageError(f"{ctx.user} is not halted: flatten sells only after a halt "
                         f"(orchestrator.py halt {ctx.user} --flatten)")
    if ctx.dry_run:
        raise UsageError("flatten has no --dry-run: run doctor or status to see what the bot owns")

    def progress(line: str) -> None:
        ctx.log.info("%s", line)
        print(line, flush=True)

    report = flatten_for(ctx, get_kite(ctx), wait=timedelta(minutes=float(ctx.args.wait)), progress=progress)
    for s in report.symbols:
        text = f"{s.symbol}: sold {s.sold} of {s.owned}" + (f"; {s.left} still open: {s.why}" if s.left else "")
        ctx.log.info("%s", text)
        if not ctx.args.json:
            print(text)
    if report.market_closed:
        print("market closed: nothing sold (no AMOs); the halt stays", flush=True)
    if ctx.args.json:
        print(json.dumps(report.as_dict(), default=str), flush=True)
    return ExitCode.OK
