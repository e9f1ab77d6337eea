"""``login USER | --all [--request-token TOKEN_OR_URL|-] [--manual]``: the morning login.

For each user a ``login`` job (workers/jobs/login.py) runs in a process of that user's own, so the
API secret never enters the orchestrator. Live users: the job prints the Kite login URL, this
command shows it and reads the redirect URL or bare request_token (from stdin, on a terminal
not echoed; or ``--request-token``, whose value is visible in ``ps`` and the shell history, so the
paste is preferred; ``--request-token -`` reads stdin too) and hands it to the job on its
stdin, never on a command line. Paper users log in automatically against the paper broker
(``--manual`` or ``--request-token`` rehearse the live routine against it). The job writes
``data/<User>/session.json`` (0600) with access_token, login_time and expires_at (06:00 IST the
next day); nothing here prints a token.

Exit code: 0 when every user logged in, else the first failing user's code (2 no token given,
4 bad env file, 5 token refused, 7 broker unreachable).
"""

from __future__ import annotations

import argparse
import getpass
import json
import subprocess
import sys
from typing import Any

from fleet.output import error, print_json, table, warning
from fleet.validate import misnamed_env_warnings, require_user, select_users
from kitefleet.errors import UsageError
from kitefleet.exitcodes import ExitCode
from kitefleet.home import Home
from kitefleet.launcher import spawn_worker

#: ``--request-token -``: read the token from stdin (the way that keeps it out of ps and history).
FROM_STDIN = "-"


def add_parser(sub: Any) -> None:
    p = sub.add_parser("login", help="create today's Kite session for a user (or --all)",
                       usage="orchestrator.py login (USER | --all) [--request-token TOKEN_OR_URL|-] [--manual] "
                             "[--json]")
    p.add_argument("user", nargs="?", help="the user to log in")
    p.add_argument("--all", action="store_true", help="every user, one after the other")
    p.add_argument("--request-token", metavar="TOKEN_OR_URL",
                   help="the redirect URL or request_token; '-' reads it from stdin (as live users do without "
                        "this flag), which is preferred: a value given here is visible in ps and the "
                        "shell history")
    p.add_argument("--manual", action="store_true",
                   help="paper users too: show the login URL and read the token (rehearse the live routine)")
    p.add_argument("--json", action="store_true", help="machine-readable result")
    p.set_defaults(func=run)


def _read_token(user: str, url: str) -> str:
    print(f"\n{user}: open this URL, log in to Kite as {user}, and copy the address you are redirected to:\n"
          f"  {url}", file=sys.stderr, flush=True)
    prompt = f"{user}: paste the redirect URL or request_token: "
    if sys.stdin.isatty():
        return getpass.getpass(prompt, stream=sys.stderr)  # not echoed: the token stays off the screen
    print(prompt, end="", file=sys.stderr, flush=True)
    line = sys.stdin.readline()
    print(file=sys.stderr)
    return line


def login_one(home: Home, user: str, *, request_token: str | None, manual: bool) -> dict[str, Any]:
    row: dict[str, Any] = {"user": user, "ok": False, "mode": None, "expires_at": None, "error": None,
                           "exit_code": None}
    job_args = ["--manual"] if (manual or request_token is not None) else []
    proc = spawn_worker(user, "login", job_args, home=home, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE)
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    try:
        for raw in iter(proc.stdout.readline, b""):
            try:
                event = json.loads(raw.decode("utf-8", "replace"))
            except ValueError:
                continue
            if event.get("event") == "login_url":
                row["mode"] = event.get("mode")
                text = request_token if request_token is not None else _read_token(user, str(event["url"]))
                try:
                    proc.stdin.write(text.strip().encode() + b"\n")
                    proc.stdin.flush()
                except BrokenPipeError:
                    pass
                proc.stdin.close()
            elif event.get("event") == "session":
                row.update(ok=True, mode=event.get("mode"), expires_at=event.get("expires_at"),
                           broker_user_id=event.get("broker_user_id"))
    finally:
        if not proc.stdin.closed:
            proc.stdin.close()
        rc = proc.wait()
        err = proc.stderr.read().decode("utf-8", "replace").strip().splitlines()
        proc.stdout.close()
        proc.stderr.close()
    row["exit_code"] = rc
    if rc != 0:
        row["ok"] = False
        message = err[-1] if err else f"exit code {rc}"
        row["error"] = message.split("error: ", 1)[-1]
    return row


def run(args: argparse.Namespace) -> int:
    home = Home.resolve()
    if args.all == bool(args.user):
        raise UsageError("give one USER or --all")
    from_stdin = args.request_token == FROM_STDIN
    token = None if from_stdin else args.request_token
    if args.all and token is not None:
        raise UsageError("--request-token belongs to one user; log in users one at a time "
                         "(or use --request-token - to paste each user's on stdin)")
    if token is not None and not token.strip():
        raise UsageError("--request-token is empty: give the redirect URL or request_token, "
                         "or '-' to paste it on stdin")
    if args.all:
        users = select_users(home, None)
        for text in misnamed_env_warnings(home):
            warning(text)
    else:
        users = [require_user(home, args.user)]
    # Asking for a token (even on stdin) means the manual routine, for paper users too.
    manual = args.manual or from_stdin
    rows = [login_one(home, u, request_token=token, manual=manual) for u in users]
    if args.json:
        print_json(rows)
    else:
        table(("user", "mode", "result", "session valid until"),
              [(r["user"], r["mode"] or "-", "logged in" if r["ok"] else f"FAILED: {r['error']}",
                r["expires_at"] or "-") for r in rows])
        for r in rows:
            if not r["ok"]:
                error(f"login of {r['user']} failed: {r['error']}")
    failed = [r for r in rows if not r["ok"]]
    return int(failed[0]["exit_code"] or ExitCode.JOB_FAILED) if failed else ExitCode.OK
