"""``run-all [JOB] [--users A,B] [--max-parallel N] [-- args]``: one process per user, concurrently.

Without JOB: every user's scheduler (``daemon``) in the foreground, one process each, the
no-supervisord way to run the fleet; Ctrl-C stops them all (each stops its own jobs first)."""

from __future__ import annotations

import argparse
from typing import Any

from fleet import accounts
from fleet.output import table, warning
from fleet.runner import run_all
from fleet.validate import misnamed_env_warnings, require_job, select_users
from kitefleet.errors import UsageError
from kitefleet.exitcodes import ExitCode
from kitefleet.home import Home

SCHEDULER_JOB = "daemon"
#: more than the scheduler's default --stop-grace (20 s)
SCHEDULER_STOP_WAIT = 30.0


def add_parser(sub: Any) -> None:
    p = sub.add_parser("run-all", help="run one job (default: the scheduler) for every user, one process each",
                       usage="orchestrator.py run-all [JOB] [--users A,B] [--max-parallel N] [-- JOB_ARGS...]")
    p.add_argument("job", nargs="?", default=None,
                   help="the job to run (default: every user's scheduler, in the foreground)")
    p.add_argument("--users", help="comma-separated subset of users (default: every env file)")
    p.add_argument("--max-parallel", type=int, default=None, help="at most N users at once")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    home = Home.resolve()
    users = select_users(home, args.users)
    job = require_job(args.job or SCHEDULER_JOB)
    if args.max_parallel is not None and args.max_parallel < 1:
        raise UsageError(f"--max-parallel {args.max_parallel}: give 1 or more")
    if args.users is None:
        for text in misnamed_env_warnings(home):
            warning(text)
    accounts.refuse_clashes(home, users)
    # A scheduler stops its own jobs on SIGTERM (up to its stop grace): give it time before SIGKILL.
    grace = SCHEDULER_STOP_WAIT if job == SCHEDULER_JOB else 5.0
    children, stopped = run_all(home, users, job, args.passthrough, max_parallel=args.max_parallel, grace=grace)
    print()
    rows = []
    for c in children:
        rc: object = "not started" if c.returncode is None else c.returncode
        if c.killed_by is not None:
            rc = f"{c.returncode} ({c.killed_by})"
        log = home.user_logs_dir(c.user) / f"{job}.log"
        # A worker that stopped before its logging started (a bad env file) wrote no log.
        rows.append((c.user, rc, f"{c.duration:.1f}s", log if log.exists() else "- (none written)"))
    table(("user", "exit", "duration", "log"), rows)
    if stopped:
        print(f"stopped by {stopped}: every child was stopped by process group")
    failed = [c for c in children if c.returncode != 0]
    return ExitCode.JOB_FAILED if failed or stopped else ExitCode.OK
