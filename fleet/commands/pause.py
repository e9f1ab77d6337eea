"""``pause USER [--reason TEXT]`` / ``pause --all`` and ``resume USER`` / ``resume --all``.

Sets or clears the per-user pause flag ``data/<User>/paused`` (kitefleet.pause): while it is set,
place_orders_daily refuses every new entry of that user and reports the refusal. Stops and exits
keep working. ``--all`` acts on every user that has an env file now (a user added later is not
paused). ``pause`` with neither a user nor ``--all`` lists who is paused.
"""

from __future__ import annotations

import argparse
from typing import Any

from fleet.output import print_json, table, warning
from fleet.validate import misnamed_env_warnings, require_user, select_users, valid_users
from kitefleet import halt
from kitefleet import pause as flag
from kitefleet.errors import UsageError
from kitefleet.exitcodes import ExitCode
from kitefleet.home import Home


def add_parser(sub: Any) -> None:
    p = sub.add_parser("pause", help="stop new entries of a user (or --all) until resumed",
                       usage="orchestrator.py pause [USER | --all] [--reason TEXT]")
    p.add_argument("user", nargs="?", help="the user to pause (none: list the pause flags)")
    p.add_argument("--all", action="store_true", help="pause every user")
    p.add_argument("--reason", default="", help="why (shown in every refused entry; one line, at most "
                                                  f"{flag.MAX_REASON_CHARS} characters)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run_pause)

    r = sub.add_parser("resume", help="allow new entries again for a user (or --all)",
                       usage="orchestrator.py resume (USER | --all)")
    r.add_argument("user", nargs="?", help="the user to resume")
    r.add_argument("--all", action="store_true", help="resume every user")
    r.add_argument("--json", action="store_true", help="machine-readable output")
    r.set_defaults(func=run_resume)


def _targets(home: Home, args: argparse.Namespace, verb: str) -> list[str]:
    if args.all and args.user:
        raise UsageError(f"{verb}: give a user or --all, not both")
    if args.all:
        users = select_users(home, None)
        for text in misnamed_env_warnings(home):
            warning(text)
        return users
    if not args.user:
        raise UsageError(f"{verb}: give a user or --all")
    return [require_user(home, args.user)]


def _list(home: Home, as_json: bool) -> int:
    for text in misnamed_env_warnings(home):
        warning(text)
    rows: list[dict[str, Any]] = [{"user": u, "paused": flag.is_paused(home, u), "info": flag.pause_info(home, u)}
            for u in valid_users(home)]
    if as_json:
        print_json(rows)
    else:
        table(("user", "entries"), [(r["user"], flag.describe(r["info"]) if r["paused"] else "allowed")
                                    for r in rows])
    return ExitCode.OK


def run_pause(args: argparse.Namespace) -> int:
    home = Home.resolve()
    if not args.user and not args.all:
        return _list(home, args.json)
    targets = _targets(home, args, "pause")
    reason, changes = flag.clean_reason(args.reason)
    if changes:
        warning(f"--reason: {'; '.join(changes)}")
    done: list[dict[str, Any]] = []
    for user in targets:
        info = flag.pause(home, user, reason=reason)
        done.append({"user": user, "paused": True, "info": info})
    if args.json:
        print_json(done)
    else:
        for row in done:
            print(f"{row['user']}: new entries paused ({flag.describe(row['info'])}); "
                  f"undo with: orchestrator.py resume {row['user']}")
    return ExitCode.OK


def run_resume(args: argparse.Namespace) -> int:
    home = Home.resolve()
    done: list[dict[str, Any]] = []
    for user in _targets(home, args, "resume"):
        done.append({"user": user, "was_paused": flag.resume(home, user),
                     "halted": halt.halt_info(home, user) is not None})
    if args.json:
        print_json(done)
    else:
        for row in done:
            halted = halt.halt_info(home, row["user"])
            if halted is not None:  # resume lifts only a pause
                print(f"{row['user']}: pause lifted" + ("" if row["was_paused"] else " (was not paused)")
                      + f"; still halted ({halt.describe(halted)}): orchestrator.py unhalt {row['user']}")
                continue
            print(f"{row['user']}: entries allowed" + ("" if row["was_paused"] else " (was not paused)"))
    return ExitCode.OK
