"""``halt USER|--all [--reason TEXT]`` / ``unhalt USER|--all``.

``halt`` writes the per-user halt flag ``data/<User>/halted`` (kitefleet.halt): place_orders_daily
sends no new entry (checked before each order), and the open bot entry orders are cancelled: at
once by the ``cancel_entries`` job run here in a process of that user (fleet.probe, as doctor
does: so a user whose worker is not running is covered), and by a running watchdog within one
poll. Stops, stop updates and exits go on. ``unhalt`` removes the flag (a loss-limit halt also
ends by itself at the next session's open). ``resume`` lifts only a pause.
"""

from __future__ import annotations

import argparse
from typing import Any

from fleet.output import print_json, warning
from fleet.probe import BROKER_TIMEOUT_S, ask
from fleet.validate import misnamed_env_warnings, require_user, select_users
from kitefleet import halt as flag
from kitefleet.errors import UsageError
from kitefleet.exitcodes import ExitCode
from kitefleet.home import Home
from kitefleet.pause import clean_reason


def add_parser(sub: Any) -> None:
    p = sub.add_parser("halt", help="stop new entries and cancel open bot entries of a user (or --all)",
                       usage="orchestrator.py halt (USER | --all) [--reason TEXT]")
    p.add_argument("user", nargs="?", help="the user to halt")
    p.add_argument("--all", action="store_true", help="halt every user")
    p.add_argument("--reason", default="", help="why (one line)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run_halt)

    u = sub.add_parser("unhalt", help="lift a halt of a user (or --all)", usage="orchestrator.py unhalt (USER | --all)")
    u.add_argument("user", nargs="?", help="the user to unhalt")
    u.add_argument("--all", action="store_true", help="unhalt every user")
    u.add_argument("--json", action="store_true", help="machine-readable output")
    u.set_defaults(func=run_unhalt)


def _targets(home: Home, args: argparse.Namespace, verb: str) -> list[str]:
    if args.all and args.user:
        raise UsageError(f"{verb}: give a user or --all, not both")
    if args.all:
        for text in misnamed_env_warnings(home):
            warning(text)
        return select_users(home, None)
    if not args.user:
        raise UsageError(f"{verb}: give a user or --all")
    return [require_user(home, args.user)]


def run_halt(args: argparse.Namespace) -> int:
    home = Home.resolve()
    targets = _targets(home, args, "halt")
    reason, changes = clean_reason(args.reason)
    if changes:
        warning(f"--reason: {'; '.join(changes)}")
    rows = []
    for user in targets:
        info = flag.halt(home, user, reason=reason)  # the flag first: no entry is sent from here on
        answer = ask(home, user, "cancel_entries", ["--json"], timeout=BROKER_TIMEOUT_S)
        rows.append({"user": user, "halted": True, "info": info,
                     "cancelled": (answer.data or {}).get("cancelled", []), "error": answer.error})
    if args.json:
        print_json(rows)
    else:
        for row in rows:
            print(f"{row['user']}: halted ({flag.describe(row['info'])}); undo with: orchestrator.py unhalt "
                  f"{row['user']}")
            for c in row["cancelled"]:
                print(f"  {c['symbol']} entry {c['order_id']}: "
                      + (f"not cancelled yet ({c['error']})" if c.get("error")
                         else f"{c['status']}, {c['filled']} filled"))
            if row["error"]:
                warning(f"{row['user']}: open entries not cancelled now ({row['error']}); the watchdog cancels "
                        "them within one poll when it runs")
    failed = any(r["error"] or any(c.get("error") for c in r["cancelled"]) for r in rows)
    return ExitCode.BROKER_TEMPORARY if failed else ExitCode.OK


def run_unhalt(args: argparse.Namespace) -> int:
    home = Home.resolve()
    done = [{"user": u, "was_halted": flag.unhalt(home, u)} for u in _targets(home, args, "unhalt")]
    if args.json:
        print_json(done)
    else:
        for row in done:
            print(f"{row['user']}: halt lifted" + ("" if row["was_halted"] else " (was not halted)"))
    return ExitCode.OK
