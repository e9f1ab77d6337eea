"""``backtest USER --from DATE --to DATE [--rule hourly_low|atr_trailing|all] [--source paper|live]
[--seed N] [--scenario FILE] [--out DIR] [--json]``: replay the rules over a range of NSE sessions
with that user's settings (issue 21).

The orchestrator holds no secret and trades nothing: it checks what it can without the user's
files (dates, rule, paths), then runs the ``backtest`` job (workers/jobs/backtest.py) in a process
of that user through the launcher, in the foreground, and passes on its exit code. That process
reads the user's settings and session through a client that cannot write, and writes only the
output folder (default ``data/<User>/backtests/<timestamp>/``).
"""

from __future__ import annotations

import argparse
from datetime import date
from pathlib import Path
from typing import Any

from fleet.commands.run import run_in_foreground
from fleet.validate import require_user
from kitefleet.errors import UsageError
from kitefleet.home import Home

RULE_CHOICES = ("hourly_low", "atr_trailing", "all")  # workers.backtest.model.RULES + all
SOURCE_CHOICES = ("paper", "live")


def add_parser(sub: Any) -> None:
    p = sub.add_parser("backtest", help="replay the rules over past sessions with a user's settings (never trades)",
                       usage="orchestrator.py backtest USER --from DATE --to DATE [--rule hourly_low|atr_trailing|all] "
                             "[--source paper|live] [--seed N] [--scenario FILE] [--out DIR] [--json]")
    p.add_argument("user", help="a user with an env file (env/USER.env)")
    p.add_argument("--from", dest="start", required=True, metavar="DATE", help="first session, YYYY-MM-DD")
    p.add_argument("--to", dest="end", required=True, metavar="DATE", help="last session, YYYY-MM-DD")
    p.add_argument("--rule", default=None, help="hourly_low, atr_trailing or all (default: the user's WATCHDOG_RULE)")
    p.add_argument("--source", default="paper", help="paper (the simulated market) or live (Kite history)")
    p.add_argument("--seed", type=int, default=None, help="paper market seed")
    p.add_argument("--scenario", default=None, metavar="FILE", help="paper market scenario file")
    p.add_argument("--out", default=None, metavar="DIR", help="output folder (must not exist)")
    p.add_argument("--json", action="store_true", help="print the summary JSON instead of the table")
    p.set_defaults(func=run)


def _day(flag: str, text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise UsageError(f"{flag} {text!r}: give a date as YYYY-MM-DD") from None


def job_arguments(args: argparse.Namespace) -> list[str]:
    """The job's command line, after the checks that need no file of the user's (UsageError)."""
    start, end = _day("--from", args.start), _day("--to", args.end)
    if start > end:
        raise UsageError(f"--from {start} is after --to {end}: give the earlier date first")
    if args.rule is not None and args.rule not in RULE_CHOICES:
        raise UsageError(f"--rule {args.rule!r}: give one of {', '.join(RULE_CHOICES)}")
    if args.source not in SOURCE_CHOICES:
        raise UsageError(f"--source {args.source!r}: give paper or live")
    if args.source == "live" and (args.seed is not None or args.scenario is not None):
        raise UsageError("--seed and --scenario choose the paper market: they do not apply to --source live")
    argv = ["--from", start.isoformat(), "--to", end.isoformat(), "--source", args.source]
    if args.rule is not None:
        argv += ["--rule", args.rule]
    if args.seed is not None:
        argv += ["--seed", str(args.seed)]
    if args.scenario is not None:
        scenario = Path(args.scenario).resolve()
        if not scenario.is_file():
            raise UsageError(f"--scenario {args.scenario}: no such file")
        argv += ["--scenario", str(scenario)]
    if args.out is not None:
        out = Path(args.out).resolve()  # the child's working folder is not ours
        if out.exists():
            raise UsageError(f"{out}: already exists; give another --out or move it away (nothing was written)")
        argv += ["--out", str(out)]
    if args.json:
        argv.append("--json")
    return argv


def run(args: argparse.Namespace) -> int:
    home = Home.resolve()
    user = require_user(home, args.user)
    argv = job_arguments(args)
    return run_in_foreground(home, user, "backtest", argv,
                             "; its {out}.partial folder is removed by the next run")
