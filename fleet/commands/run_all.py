"""``run-all JOB [--users A,B] [--max-parallel N] [-- args]``: one process per user, concurrently."""

from __future__ import annotations

import argparse
from typing import Any

from fleet.output import table
from fleet.runner import run_all
from kitefleet.errors import UsageError
from kitefleet.exitcodes import ExitCode
from kitefleet.home import Home
from kitefleet.users import list_users, validate_user_name


def add_parser(sub: Any) -> None:
    p = sub.add_parser("run-all", help="run one job for every user, one process each",
                       usage="orchestrator.py run-all JOB [--users A,B] [--max-parallel N] [-- JOB_ARGS...]")
    p.add_argument("job")
    p.add_argument("--users", help="comma-separated subset of users (default: every env file)")
    p.add_argument("--max-parallel", type=int, default=None, help="at most N users at once")
    p.set_defaults(func=run)


def select_users(home: Home, wanted: str | None) -> list[str]:
    known = list_users(home)
    if not wanted:
        if not known:
            raise UsageError(f"no users: {home.env_dir} has no <User>.env files")
        return known
    chosen = [validate_user_name(u.strip()) for u in wanted.split(",") if u.strip()]
    missing = [u for u in chosen if u not in known]
    if missing:
        raise UsageError(f"unknown user(s) {', '.join(missing)}: no env/<User>.env for them")
    return chosen


def run(args: argparse.Namespace) -> int:
    home = Home.resolve()
    users = select_users(home, args.users)
    children, stopped = run_all(home, users, args.job, args.passthrough, max_parallel=args.max_parallel)
    print()
    rows = []
    for c in children:
        rc = "not started" if c.returncode is None else c.returncode
        rows.append((c.user, rc, f"{c.duration:.1f}s", home.user_logs_dir(c.user) / f"{args.job}.log"))
    table(("user", "exit", "duration", "log"), rows)
    if stopped:
        print(f"stopped by {stopped}: every child was stopped by process group")
    failed = [c for c in children if c.returncode != 0]
    return ExitCode.JOB_FAILED if failed or stopped else ExitCode.OK
