"""``run USER JOB [-- args]``: one job for one user, in the foreground, through the launcher."""

from __future__ import annotations

import argparse
import signal
from typing import Any

from fleet import accounts
from fleet.output import error
from fleet.procs import signal_group
from fleet.validate import require_job, require_user
from kitefleet.exitcodes import ExitCode, from_returncode, signal_name
from kitefleet.home import Home
from kitefleet.launcher import spawn_worker


def add_parser(sub: Any) -> None:
    p = sub.add_parser("run", help="run one job for one user in the foreground (ad-hoc debugging)",
                       usage="orchestrator.py run USER JOB [-- JOB_ARGS...]")
    p.add_argument("user", help="a user with an env file (env/USER.env)")
    p.add_argument("job", help="a job of the worker (python -m workers lists them)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    home = Home.resolve()
    user = require_user(home, args.user)
    job = require_job(args.job)
    return run_in_foreground(home, user, job, args.passthrough)


def run_in_foreground(home: Home, user: str, job: str, argv: list[str], killed_note: str = "") -> int:
    """Run ``job`` for ``user`` through the launcher, forwarding Ctrl-C/SIGTERM to its process
    group; its exit code (a signal death maps to KILLED, with one line saying so)."""
    accounts.refuse_clashes(home, [user])
    proc = spawn_worker(user, job, argv, home=home)

    def forward(signum: int, _frame: object) -> None:
        signal_group(proc, signum)

    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGTERM, forward)
    returncode = proc.wait()
    killed_by = signal_name(returncode)
    if killed_by is not None:
        error(f"{user}'s {job} was killed by {killed_by}; see logs/{user}/{job}.log "
              f"(exit code {int(ExitCode.KILLED)}){killed_note}")
    return from_returncode(returncode)
