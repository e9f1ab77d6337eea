"""``run USER JOB [-- args]``: one job for one user, in the foreground, through the launcher."""

from __future__ import annotations

import argparse
import signal
from typing import Any

from fleet.procs import signal_group
from kitefleet.home import Home
from kitefleet.launcher import spawn_worker
from kitefleet.users import validate_user_name


def add_parser(sub: Any) -> None:
    p = sub.add_parser("run", help="run one job for one user in the foreground (ad-hoc debugging)",
                       usage="orchestrator.py run USER JOB [-- JOB_ARGS...]")
    p.add_argument("user")
    p.add_argument("job")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    user = validate_user_name(args.user)
    proc = spawn_worker(user, args.job, args.passthrough, home=Home.resolve())

    def forward(signum: int, _frame: object) -> None:
        signal_group(proc, signum)

    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGTERM, forward)
    return proc.wait()
