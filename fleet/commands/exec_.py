"""``exec USER [--stop-grace S]``: replace this process with USER's scheduler (what supervisord runs).

Checks ``SUPERVISOR_PROCESS_NAME`` (when set) against USER, exports the NSE calendar to
``data/shared/nse_calendar.json`` when it is missing or too short (the scheduler itself never
imports the calendar library), then ``os.execve``-s ``python -m workers daemon --user USER``
through the launcher, whose environment is built from nothing: supervisord's own environment
(and whatever the shell that started it exported) never reaches the worker.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from fleet import accounts
from fleet.argtypes import seconds
from fleet.output import error
from fleet.validate import require_user
from kitefleet import clock
from kitefleet.errors import ConfigError, UsageError
from kitefleet.home import Home
from kitefleet.launcher import exec_worker
from kitefleet.users import validate_user_name

#: The scheduler's wait for its jobs on SIGTERM; supervisord's stopwaitsecs must stay above it.
MAX_STOP_GRACE_S = 3600.0


def add_parser(sub: Any) -> None:
    p = sub.add_parser("exec", help="replace this process with USER's scheduler (supervisord's command)",
                       usage="orchestrator.py exec USER [--stop-grace SECONDS]")
    p.add_argument("user")
    p.add_argument("--stop-grace", type=seconds(0, MAX_STOP_GRACE_S), default=None,
                   help="passed to the scheduler: how long its jobs get to stop on SIGTERM")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    supervised_as = os.environ.get("SUPERVISOR_PROCESS_NAME")
    if supervised_as is not None and supervised_as != args.user:
        raise ConfigError(f"user mismatch: exec {args.user} but supervisord runs this program as "
                          f"{supervised_as!r}; regenerate with 'orchestrator.py supervisor-conf'")
    user = validate_user_name(args.user)
    home = Home.resolve()
    try:
        # Only a missing env file is refused here: a broken one is the worker's to report (exit 4),
        # so a supervised program still goes FATAL with that error in its log.
        require_user(home, user)
    except UsageError as exc:
        raise UsageError(f"{exc}; if supervisord runs it, its config is older than env/: "
                         "run 'orchestrator.py supervisor-conf', then 'supervisorctl update'") from None
    # Two env files, one Kite account: exit 4, which supervisord takes as "do not restart".
    accounts.refuse_clashes(home, [user])
    try:
        from kitefleet.calendar import load_calendar

        load_calendar(home.calendar_file, clock.now().date())
    except Exception as exc:  # the scheduler then stops with a clear message of its own
        error(f"could not export the NSE calendar to {home.calendar_file}: {exc}")
    extra = [] if args.stop_grace is None else ["--stop-grace", f"{args.stop_grace:g}"]
    exec_worker(user, "daemon", [*extra, *args.passthrough], home=home)
