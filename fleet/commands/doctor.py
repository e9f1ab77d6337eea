"""``doctor [--users A,B] [--json]``: check what usually goes wrong, before the trader finds out.

One table over all users. The per-user checks run in a process of that user (the
``doctor_checks`` job, workers/jobs/doctor_checks.py): env file, clock, session, broker, state
file, unresolved intents, GTT coverage of CNC holdings, drift between state and holdings,
instance lock and heartbeat. When that process cannot start (bad env file, wrong permissions, a
simulated clock with a live user), the row says why and the remaining checks show ``n/a``.
Whole-fleet checks run here: the generated supervisord config in sync with env/, free disk space.
This command reads no env file itself and holds no secret.

Every failing row carries a fix. Exit 0 when nothing failed (warnings allowed), 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from fleet.output import print_json, table
from fleet.validate import select_users
from kitefleet import clock
from kitefleet.exitcodes import ExitCode
from kitefleet.home import Home
from kitefleet.launcher import spawn_worker
from kitefleet.users import list_users, validate_user_name

USER_CHECKS = ("env", "clock", "session", "broker", "state", "intents", "gtt", "drift", "instance")
MIN_FREE_BYTES = 1 << 30
MIN_FREE_FRACTION = 0.05
TIMEOUT_S = 90.0


def add_parser(sub: Any) -> None:
    p = sub.add_parser("doctor", help="check every user's setup, session, broker, state and stops",
                       usage="orchestrator.py doctor [--users A,B] [--json]")
    p.add_argument("--users", help="comma-separated subset of users (default: every env file)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def row(user: str, check: str, status: str, detail: str, fix: str = "") -> dict[str, str]:
    return {"user": user, "check": check, "status": status, "detail": detail, "fix": fix}


def _fix_for_start_failure(user: str, message: str) -> tuple[str, str]:
    """(check, fix) for a checks process that refused to start."""
    if "simulated clock" in message:
        return "clock", "unset TRADER_CLOCK for live trading (in the shell and in supervisord's environment)"
    if "chmod" in message or "readable by group" in message:
        return "env", f"chmod 600 env/{user}.env"
    if "cannot be written" in message:  # a read-only home: nothing in the env file would help
        return "home", "make that folder writable by the user running the fleet (remount read-write, chown or chmod)"
    if "no such env file" in message:
        return "env", f"copy env/example.env to env/{user}.env (or orchestrator.py import-config) and chmod 600"
    return "env", f"edit env/{user}.env (keys and formats: env/example.env)"


def user_checks(home: Home, user: str, timeout: float = TIMEOUT_S) -> list[dict[str, str]]:
    try:
        validate_user_name(user)
    except Exception as exc:
        return [row(user, "env", "fail", str(exc), "rename the env file to a valid user name")]
    try:
        proc = spawn_worker(user, "doctor_checks", home=home, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return [row(user, "broker", "fail", f"checks did not finish within {timeout:.0f}s",
                    "is the broker hanging? try again; see logs/" + user + "/doctor_checks.log")]
    lines = out.decode("utf-8", "replace").strip().splitlines()
    if proc.returncode == 0 and lines:
        try:
            data = json.loads(lines[-1])
            rows = [row(user, c["check"], c["status"], c["detail"],
                        c.get("fix") or ("see the detail" if c["status"] == "fail" else ""))
                    for c in data["checks"]]
            order = {name: n for n, name in enumerate(USER_CHECKS)}
            return sorted(rows, key=lambda r: order.get(r["check"], len(order)))
        except (ValueError, KeyError, TypeError):
            pass
    messages = err.decode("utf-8", "replace").strip().splitlines()
    message = (messages[-1] if messages else f"exit code {proc.returncode}").split("error: ", 1)[-1]
    failed, fix = _fix_for_start_failure(user, message)
    rows = [row(user, failed, "fail", message, fix)]
    rows += [row(user, c, "n/a", f"skipped: the {failed} check failed") for c in USER_CHECKS if c != failed]
    return rows


def check_disk(home: Home) -> dict[str, str]:
    usage = shutil.disk_usage(home.root if home.root.exists() else home.root.parent)
    free_gib = usage.free / (1 << 30)
    detail = f"{free_gib:.1f} GiB free ({usage.free / usage.total:.0%}) at {home.root}"
    if usage.free < MIN_FREE_BYTES or usage.free < usage.total * MIN_FREE_FRACTION:
        return row("*", "disk", "fail", detail, "free some space: old logs/ and data/migration/ backups are safe "
                   "to archive; a full disk stops state writes")
    return row("*", "disk", "ok", detail)


def check_supervisor_conf(home: Home, users: list[str]) -> dict[str, str]:
    try:
        from fleet import supervisor
    except ImportError:
        return row("*", "supervisord", "n/a", "supervisord config generation not available in this version")
    target = supervisor.generated_path(home)
    if not target.exists():
        return row("*", "supervisord", "warn", f"{target} not generated yet (fine if you do not use supervisord)",
                   "orchestrator.py supervisor-conf")
    current = target.read_text(encoding="utf-8")
    try:
        # Compare like with like: the timings and broker choice the file was written with.
        text, _warnings = supervisor.render(home, supervisor.probe_all(home, users),
                                            supervisor.timings_of(current),
                                            external_broker=bool(supervisor.external_broker_of(current)))
    except Exception as exc:
        return row("*", "supervisord", "fail", f"cannot render the expected config: {exc}",
                   "orchestrator.py supervisor-conf --check")
    if current != text:
        return row("*", "supervisord", "fail", f"{target} is out of date with env/",
                   f"orchestrator.py supervisor-conf, then supervisorctl -c {home.supervisord_conf} update "
                   "(after the close: it restarts group trader)")
    return row("*", "supervisord", "ok", f"{target.name} in sync with env/ ({supervisor.count_text(users)})")


def check_clock_env() -> dict[str, str] | None:
    c = clock.get_clock()
    if c.simulated:
        return row("*", "clock", "warn", f"this shell sets TRADER_CLOCK ({c.describe()}): only paper users may "
                   "run with it", "unset TRADER_CLOCK before running live users")
    return None


def run(args: argparse.Namespace) -> int:
    home = Home.resolve()
    # Every env file by default, a misnamed one too (its row says to rename it); named users must exist.
    users = list_users(home) if args.users is None else select_users(home, args.users)
    rows: list[dict[str, str]] = []
    if not users:
        rows.append(row("*", "users", "fail", f"no env/<User>.env files in {home.env_dir}",
                        "orchestrator.py import-config LEGACY_CONFIG_INI, or copy env/example.env"))
    with ThreadPoolExecutor(max_workers=4) as pool:
        for checks in pool.map(lambda u: user_checks(home, u), users):
            rows.extend(checks)
    rows.append(check_supervisor_conf(home, list_users(home)))
    rows.append(check_disk(home))
    clock_row = check_clock_env()
    if clock_row is not None:
        rows.append(clock_row)
    failed = [r for r in rows if r["status"] == "fail"]
    if args.json:
        print_json({"ok": not failed, "rows": rows})
    else:
        table(("user", "check", "result", "detail"),
              [(r["user"], r["check"], r["status"].upper() if r["status"] == "fail" else r["status"],
                r["detail"] + (f"  -> fix: {r['fix']}" if r["status"] in ("fail", "warn") and r["fix"] else ""))
               for r in rows])
        print(f"\n{len(failed)} failure(s)" if failed else "\nall checks passed")
    return ExitCode.JOB_FAILED if failed else ExitCode.OK
