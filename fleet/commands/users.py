"""``users [--json]``: one row per user: mode, settings valid or the error, API key fingerprint.

Each user's file is read by a short process of that user's own (the ``whoami`` job), so the
orchestrator never holds any user's secret."""

from __future__ import annotations

import argparse
from typing import Any

from fleet import accounts, probe
from fleet.output import print_json, table
from kitefleet.errors import UsageError
from kitefleet.exitcodes import ExitCode
from kitefleet.home import Home
from kitefleet.users import list_users, validate_user_name


def add_parser(sub: Any) -> None:
    p = sub.add_parser("users", help="list users, their mode, settings validity and key fingerprint")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def probe_user(home: Home, user: str, timeout: float = probe.LOCAL_TIMEOUT_S) -> dict[str, Any]:
    row: dict[str, Any] = {"user": user, "mode": None, "valid": False, "error": None, "fingerprint": None}
    answer = probe.ask(home, user, "whoami", timeout=timeout)
    if answer.ok:
        assert answer.data is not None
        row.update(mode=answer.data.get("mode"), valid=True, fingerprint=answer.data.get("api_key_fingerprint"))
    else:
        row["error"] = answer.error
        if answer.exit_code is not None:
            row["exit_code"] = answer.exit_code
    return row


def _named_ok(user: str) -> bool:
    try:
        validate_user_name(user)
    except UsageError:
        return False
    return True


def run(args: argparse.Namespace) -> int:
    home = Home.resolve()
    users = list_users(home)
    rows = probe.map_users(users, lambda u: probe_user(home, u))
    # Two env files, one Kite account: every user of the group fails with the one line naming them.
    shared = accounts.clashes(home, {r["user"]: r["fingerprint"] for r in rows if _named_ok(r["user"])})
    for r in rows:
        if r["user"] in shared:
            r.update(valid=False, error=shared[r["user"]], exit_code=int(ExitCode.CONFIG))
    if args.json:
        print_json(rows)
    else:
        table(("user", "mode", "settings", "api key"),
              [(r["user"], r["mode"] or "-", "ok" if r["valid"] else r["error"], r["fingerprint"] or "-")
               for r in rows])
    return ExitCode.OK if all(r["valid"] for r in rows) else ExitCode.CONFIG
