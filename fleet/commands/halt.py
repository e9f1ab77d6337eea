"""``halt USER|--all [--reason TEXT]`` / ``unhalt USER|--all``.

``halt`` writes the per-user halt flag ``data/<User>/halted`` (kitefleet.halt): place_orders_daily
sends no new entry (checked before each order), and the open bot entry orders are cancelled: at
once by the ``cancel_entries`` job run here in a process of that user (fleet.probe, as doctor
does: so a user whose worker is not running is covered), and by a running watchdog within one
poll. Stops, stop updates and exits go on. ``unhalt`` removes the flag (a loss-limit halt also
ends by itself at the next session's open). ``resume`` lifts only a pause.

``halt USER|--all --flatten [--wait MINUTES] [--yes]``: the halt, then every position the bot
owns is sold by the ``flatten`` job in a process of that user (workers.flatten; all users at once
with ``--all``), which waits at most ``--wait`` minutes of market clock (default 10) and prints
its progress; then what was sold and what is still open, and why. A person's holdings are never
sold. Outside the session nothing is sold (no AMOs): "market closed", the halt stays.
``--all --flatten`` asks for the typed word FLATTEN on stdin, or ``--yes``. Exit 0 when every
owned share is sold, 7 when some are still open (or the market is closed): run it again later.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from fleet.output import print_json, warning
from fleet.probe import BROKER_TIMEOUT_S, ask, map_users
from fleet.validate import misnamed_env_warnings, require_user, select_users
from kitefleet import clock
from kitefleet import halt as flag
from kitefleet.errors import UsageError
from kitefleet.exitcodes import ExitCode
from kitefleet.home import Home
from kitefleet.pause import clean_reason

#: the market-clock minutes ``--flatten`` waits for the fills by default, and at most
DEFAULT_WAIT_MINUTES = 10.0
MAX_WAIT_MINUTES = 375.0
#: what ``--all --flatten`` asks to be typed
CONFIRM_WORD = "FLATTEN"


def add_parser(sub: Any) -> None:
    p = sub.add_parser("halt", help="stop new entries and cancel open bot entries of a user (or --all); "
                       "--flatten also sells every position the bot owns",
                       usage="orchestrator.py halt (USER | --all) [--reason TEXT] [--flatten [--wait MINUTES] "
                             "[--yes]]")
    p.add_argument("user", nargs="?", help="the user to halt")
    p.add_argument("--all", action="store_true", help="halt every user")
    p.add_argument("--reason", default="", help="why (one line)")
    p.add_argument("--flatten", action="store_true", help="then sell every position the bot owns (never a "
                   "person's holding)")
    p.add_argument("--wait", type=float, default=DEFAULT_WAIT_MINUTES, metavar="MINUTES",
                   help="with --flatten: wait at most this many minutes of market clock for the fills (default 10)")
    p.add_argument("--yes", action="store_true", help="with --all --flatten: no typed confirmation")
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


def _confirm_flatten(targets: list[str]) -> None:
    """--all --flatten sells for every user: a typed word on stdin, never a default."""
    sys.stderr.write(f"halt --all --flatten sells every position the bot owns for {len(targets)} user(s) "
                     f"({', '.join(targets)}). Type {CONFIRM_WORD} to go on: ")
    sys.stderr.flush()
    answer = sys.stdin.readline().strip()
    if answer != CONFIRM_WORD:
        raise UsageError(f"not confirmed (typed {answer!r}, not {CONFIRM_WORD}): nothing halted, nothing sold; "
                         "or pass --yes")


def _wall_timeout(minutes: float) -> float:
    """The flatten job's market-clock wait in wall seconds, plus its start and the last reads."""
    return minutes * 60.0 / clock.get_clock().speed + BROKER_TIMEOUT_S


def _flatten(home: Home, user: str, wait: float) -> dict[str, Any]:
    def progress(line: str) -> None:
        print(f"{user}: {line}", flush=True)

    answer = ask(home, user, "flatten", ["--json", "--wait", f"{wait:g}"], timeout=_wall_timeout(wait),
                 progress=progress)
    return {"report": answer.data, "error": answer.error}


def _print_flatten(user: str, row: dict[str, Any]) -> None:
    report = row.get("report") or {}
    if row.get("error"):
        warning(f"{user}: flatten did not finish ({row['error']}); still halted: run it again, it sells nothing "
                "twice")
        return
    if report.get("market_closed"):
        print(f"  market closed: nothing sold (no AMOs); {user} stays halted")
    symbols = report.get("symbols") or []
    if not symbols and not report.get("market_closed"):
        print("  nothing the bot owns is held")
    for s in symbols:
        line = f"  {s['symbol']}: sold {s['sold']} of {s['owned']}"
        if s.get("left"):
            line += f"; {s['left']} still open: {s['why']}"
        print(line)


def run_halt(args: argparse.Namespace) -> int:
    home = Home.resolve()
    targets = _targets(home, args, "halt")
    if not args.flatten and (args.yes or args.wait != DEFAULT_WAIT_MINUTES):
        raise UsageError("halt: --wait and --yes go with --flatten")
    if not 0 <= args.wait <= MAX_WAIT_MINUTES:
        raise UsageError(f"halt: --wait {args.wait:g}: between 0 and {MAX_WAIT_MINUTES} minutes")
    if args.flatten and args.all and not args.yes:
        _confirm_flatten(targets)
    reason, changes = clean_reason(args.reason)
    if changes:
        warning(f"--reason: {'; '.join(changes)}")
    rows = []
    for user in targets:
        info = flag.halt(home, user, reason=reason)  # the flag first: no entry is sent from here on
        answer = ask(home, user, "cancel_entries", ["--json"], timeout=BROKER_TIMEOUT_S)
        rows.append({"user": user, "halted": True, "info": info,
                     "cancelled": (answer.data or {}).get("cancelled", []), "error": answer.error})
    if args.flatten:
        # Each user's selling runs in a process of theirs; all at once (each waits on its own fills).
        for row, done in zip(rows, map_users(targets, lambda u: _flatten(home, u, args.wait)), strict=True):
            row["flatten"] = done
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
            if "flatten" in row:
                _print_flatten(row["user"], row["flatten"])
    failed = any(r["error"] or any(c.get("error") for c in r["cancelled"]) for r in rows)
    unsold = any("flatten" in r and (r["flatten"]["error"] or not (r["flatten"]["report"] or {}).get("done"))
                 for r in rows)
    return ExitCode.BROKER_TEMPORARY if failed or unsold else ExitCode.OK


def run_unhalt(args: argparse.Namespace) -> int:
    home = Home.resolve()
    done = [{"user": u, "was_halted": flag.unhalt(home, u)} for u in _targets(home, args, "unhalt")]
    if args.json:
        print_json(done)
    else:
        for row in done:
            print(f"{row['user']}: halt lifted" + ("" if row["was_halted"] else " (was not halted)"))
    return ExitCode.OK
