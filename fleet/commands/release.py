"""``release USER SYMBOL [--quantity N]``: take shares back from the bot.

Thin: the ``release`` job does the work in a process of that user (workers/jobs/release.py: the
bot's stop GTT reduced or deleted first, then the ledger, idempotent after a kill; refused while a
bot SELL of the symbol is open); its output and exit code are this command's."""

from __future__ import annotations

import argparse
from typing import Any

from fleet.validate import require_user
from kitefleet.exitcodes import from_returncode
from kitefleet.home import Home
from kitefleet.launcher import spawn_worker


def add_parser(sub: Any) -> None:
    p = sub.add_parser("release", help="take shares back from the bot (its stop shrinks to what it still owns)",
                       usage="orchestrator.py release USER SYMBOL [--quantity N] [--json]")
    p.add_argument("user")
    p.add_argument("symbol")
    p.add_argument("--quantity", type=int, help="shares to take back (default: all the bot owns)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    home = Home.resolve()
    user = require_user(home, args.user)
    job_args = [args.symbol]
    if args.quantity is not None:
        job_args += ["--quantity", str(args.quantity)]
    if args.json:
        job_args.append("--json")
    return from_returncode(spawn_worker(user, "release", job_args, home=home, new_session=False).wait())
