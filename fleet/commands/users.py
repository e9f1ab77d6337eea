"""``users [--json]``: one row per user: mode, settings valid or the error, API key fingerprint.

Each user's file is read by a short process of that user's own (the ``whoami`` job), so the
orchestrator never holds any user's secret."""

from __future__ import annotations

import argparse
import json
import subprocess
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from fleet.output import print_json, table
from kitefleet.exitcodes import ExitCode
from kitefleet.home import Home
from kitefleet.launcher import spawn_worker
from kitefleet.users import list_users


def add_parser(sub: Any) -> None:
    p = sub.add_parser("users", help="list users, their mode, settings validity and key fingerprint")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def probe_user(home: Home, user: str, timeout: float = 30.0) -> dict[str, Any]:
    row: dict[str, Any] = {"user": user, "mode": None, "valid": False, "error": None, "fingerprint": None}
    try:
        proc = spawn_worker(user, "whoami", home=home, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        row["error"] = f"no answer within {timeout:.0f}s"
        return row
    except Exception as exc:  # an invalid user name, for instance
        row["error"] = str(exc)
        return row
    if proc.returncode == 0:
        info = json.loads(out.decode().strip().splitlines()[-1])
        row.update(mode=info["mode"], valid=True, fingerprint=info["api_key_fingerprint"])
    else:
        lines = err.decode("utf-8", "replace").strip().splitlines()
        message = lines[-1] if lines else f"exit code {proc.returncode}"
        row["error"] = message.split("error: ", 1)[-1]
        row["exit_code"] = proc.returncode
    return row


def run(args: argparse.Namespace) -> int:
    home = Home.resolve()
    users = list_users(home)
    with ThreadPoolExecutor(max_workers=8) as pool:
        rows = list(pool.map(lambda u: probe_user(home, u), users))
    if args.json:
        print_json(rows)
    else:
        table(("user", "mode", "settings", "api key"),
              [(r["user"], r["mode"] or "-", "ok" if r["valid"] else r["error"], r["fingerprint"] or "-")
               for r in rows])
    return ExitCode.OK if all(r["valid"] for r in rows) else ExitCode.CONFIG
