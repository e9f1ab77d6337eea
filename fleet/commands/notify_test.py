"""``notify-test USER|--all [--json]``: send a test message through each of the user's NOTIFY_URLS.

Each user's test runs in a process of that user (``notify --test``, through the launcher), which
reads that user's env file; this side never sees a URL. Printed per URL: its position in
NOTIFY_URLS, the service's name (JSON, Telegram, ...) and whether the service took the message.
Exit 0 when every URL of every user worked, 1 otherwise (a user without NOTIFY_URLS counts as failed).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from fleet import probe
from fleet.output import table
from fleet.validate import select_users
from kitefleet.errors import UsageError
from kitefleet.exitcodes import ExitCode
from kitefleet.home import Home

#: a service that does not answer is given up by Apprise after its own timeouts; leave room for a few
TIMEOUT_S = 120.0


def add_parser(sub: Any) -> None:
    p = sub.add_parser("notify-test", help="send a test message through each of a user's NOTIFY_URLS",
                       usage="orchestrator.py notify-test USER|--all [--json]")
    p.add_argument("user", nargs="?")
    p.add_argument("--all", action="store_true", help="every user")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if bool(args.user) == bool(args.all):
        raise UsageError("give one USER or --all")
    home = Home.resolve()
    users = select_users(home, None if args.all else args.user)
    answers = probe.ask_all(home, users, "notify", ["--test"], timeout=TIMEOUT_S)
    out: list[dict[str, Any]] = []
    for a in answers:
        results = (a.data or {}).get("results") if a.ok else None
        out.append({"user": a.user, "results": results or [], "error": None if a.ok else a.error})
    if args.json:
        print(json.dumps({"users": out}))
    else:
        rows = []
        for u in out:
            if u["error"]:
                rows.append((u["user"], "-", "-", f"failed: {u['error']}"))
            elif not u["results"]:
                rows.append((u["user"], "-", "-", "no NOTIFY_URLS"))
            for r in u["results"]:
                rows.append((u["user"], r["position"], r["service"], "worked" if r["ok"] else "FAILED"))
        table(("user", "url #", "service", "result"), rows)
    good = all(u["results"] and all(r["ok"] for r in u["results"]) and not u["error"] for u in out)
    return ExitCode.OK if good else ExitCode.JOB_FAILED
