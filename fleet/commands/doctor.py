"""``doctor [--users A,B] [--json]``: check what usually goes wrong, before the trader finds out.

One table over all users. The per-user checks run in a process of that user (the
``doctor_checks`` job, workers/jobs/doctor_checks.py): env file, clock, session, broker, state
file, unresolved intents, GTT coverage of CNC holdings, drift between state and holdings,
instance lock and heartbeat. When that process cannot start (bad env file, wrong permissions, a
simulated clock with a live user), the row says why and the remaining checks show ``n/a``.
Whole-fleet checks run here: the generated supervisord config in sync with env/, free disk space
(fails below ``--min-free-mb``, default 200, as in ``status``).
This command reads no env file itself and holds no secret.

Every failing row carries a fix. Exit 0 when nothing failed (warnings allowed), 1 otherwise.
"""

from __future__ import annotations

import argparse
import math
import shutil
from typing import Any

from fleet import accounts, probe
from fleet.output import print_json, table
from fleet.validate import select_users
from kitefleet import clock, outbox
from kitefleet.exitcodes import ExitCode
from kitefleet.home import Home
from kitefleet.users import list_users, validate_user_name

USER_CHECKS = ("env", "clock", "session", "broker", "state", "intents", "gtt", "drift", "instance")
#: Less free space than this fails (``--min-free-mb``; the same default as ``status``).
MIN_FREE_MB = 200.0
#: Below this much (or this fraction of the disk) but above the minimum: a warning.
LOW_FREE_BYTES = 1 << 30
LOW_FREE_FRACTION = 0.05
TIMEOUT_S = probe.BROKER_TIMEOUT_S


def add_parser(sub: Any) -> None:
    p = sub.add_parser("doctor", help="check every user's setup, session, broker, state and stops",
                       usage="orchestrator.py doctor [--users A,B] [--json] [--min-free-mb MB]")
    p.add_argument("--users", help="comma-separated subset of users (default: every env file)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--min-free-mb", type=_megabytes, default=MIN_FREE_MB, metavar="MB",
                   help=f"less free space than this in the home fails the disk check (default {MIN_FREE_MB:g})")
    p.set_defaults(func=run)


def _megabytes(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of megabytes (0 or more)")
    return value


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
    return _user_checks(home, user, timeout) + _notify_check(home, user)


def _notify_check(home: Home, user: str) -> list[dict[str, str]]:
    cannot = outbox.notify_problem(home, user)
    if cannot is None:
        return []
    return [row(user, "notify", "fail", cannot, f"fix NOTIFY_URLS in env/{user}.env (chmod 600), then "
                f"orchestrator.py notify-test {user}")]


def _user_checks(home: Home, user: str, timeout: float) -> list[dict[str, str]]:
    answer = probe.ask(home, user, "doctor_checks", timeout=timeout)
    if answer.timed_out:
        return [row(user, "broker", "fail", answer.error or "no answer",
                    "is the broker hanging? try again; see logs/" + user + "/doctor_checks.log")]
    if answer.ok:
        try:
            data = answer.data or {}
            rows = [row(user, c["check"], c["status"], c["detail"],
                        c.get("fix") or ("see the detail" if c["status"] == "fail" else ""))
                    for c in data["checks"]]
            order = {name: n for n, name in enumerate(USER_CHECKS)}
            return sorted(rows, key=lambda r: order.get(r["check"], len(order)))
        except (KeyError, TypeError):
            pass
    message = answer.error or "doctor_checks gave an unreadable answer"
    failed, fix = _fix_for_start_failure(user, message)
    rows = [row(user, failed, "fail", message, fix)]
    rows += [row(user, c, "n/a", f"skipped: the {failed} check failed") for c in USER_CHECKS if c != failed]
    return rows


def check_disk(home: Home, min_free_mb: float = MIN_FREE_MB) -> dict[str, str]:
    usage = shutil.disk_usage(home.root if home.root.exists() else home.root.parent)
    free_gib = usage.free / (1 << 30)
    detail = f"{free_gib:.1f} GiB free ({usage.free / usage.total:.0%}) at {home.root}"
    fix = "free some space: old logs/ and data/migration/ backups are safe to archive; a full disk stops state writes"
    if usage.free < min_free_mb * 1e6:
        return row("*", "disk", "fail", f"{detail}, less than --min-free-mb {min_free_mb:g}", fix)
    if usage.free < LOW_FREE_BYTES or usage.free < usage.total * LOW_FREE_FRACTION:
        return row("*", "disk", "warn", detail + ", running low", fix)
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
    for checks in probe.map_users(users, lambda u: user_checks(home, u), max_parallel=4):
        rows.extend(checks)
    shared = accounts.fleet_clashes(home)
    for user in users:
        if user in shared:
            rows.append(row(user, "account", "fail", shared[user],
                            "one env file per Kite account: remove the extra file (or link), or give each "
                            "user its own API key"))
    rows.append(check_supervisor_conf(home, list_users(home)))
    rows.append(check_disk(home, args.min_free_mb))
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
