"""``resolve-intent USER [TAG --note TEXT [--order-id ID]]``: list or close a user's parked intents.

Runs the ``resolve_intent`` job in a process of that user (the orchestrator never opens a user's
state with that user's settings itself)."""

from __future__ import annotations

import argparse
from typing import Any

from fleet.validate import require_user
from kitefleet.home import Home
from kitefleet.launcher import spawn_worker


def add_parser(sub: Any) -> None:
    p = sub.add_parser("resolve-intent", help="list a user's unresolved order intents, or mark one resolved",
                       usage="orchestrator.py resolve-intent USER [TAG --note TEXT [--order-id ID]] [--json]")
    p.add_argument("user")
    p.add_argument("tag", nargs="?")
    p.add_argument("--note")
    p.add_argument("--order-id")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    home = Home.resolve()
    user = require_user(home, args.user)
    job_args = [args.tag] if args.tag else []
    if args.note is not None:
        job_args += ["--note", args.note]
    if args.order_id is not None:
        job_args += ["--order-id", args.order_id]
    if args.json:
        job_args.append("--json")
    return spawn_worker(user, "resolve_intent", job_args, home=home, new_session=False).wait()
