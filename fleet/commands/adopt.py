"""``adopt USER SYMBOL [--quantity N] [--stop PRICE]``: hand shares of a holding to the bot.

Thin: the ``adopt`` job does the work in a process of that user (workers/jobs/adopt.py: ledger
first, then the bot's stop GTT, idempotent after a kill); its output and exit code are this
command's. An unknown user is refused here, before any process starts."""

from __future__ import annotations

import argparse
from typing import Any

from fleet.validate import require_user
from kitefleet.exitcodes import from_returncode
from kitefleet.home import Home
from kitefleet.launcher import spawn_worker


def add_parser(sub: Any) -> None:
    p = sub.add_parser("adopt", help="hand shares of a holding to the bot (it manages and protects them)",
                       usage="orchestrator.py adopt USER SYMBOL [--quantity N] [--stop PRICE] [--json]")
    p.add_argument("user")
    p.add_argument("symbol")
    p.add_argument("--quantity", type=int, help="shares to hand over (default: all held and not owned)")
    p.add_argument("--stop", type=float, help="stop trigger below the LTP (default: the stop job's rule)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    home = Home.resolve()
    user = require_user(home, args.user)
    job_args = [args.symbol]
    if args.quantity is not None:
        job_args += ["--quantity", str(args.quantity)]
    if args.stop is not None:
        job_args += ["--stop", repr(args.stop)]
    if args.json:
        job_args.append("--json")
    return from_returncode(spawn_worker(user, "adopt", job_args, home=home, new_session=False).wait())
