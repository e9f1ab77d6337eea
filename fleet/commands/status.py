"""``status [--json] [--no-live] [--timeout S]``: one row per user, exit 0 only when all are healthy.

Per user: supervisord's state of ``trader:<User>`` (over its socket, when it runs); the pid holding
the user's instance lock, whoever started it (supervisord, ``run-all``, an orphan of a SIGKILLed
supervisord); the heartbeat's age (wall seconds) and a stale flag; mode; paused or not; the last
run and result of each job (from the heartbeat); open positions, holdings and today's P&L. Those
live figures come from a ``summary`` process per user, run in parallel with a timeout, so even
status keeps one user per process. A user whose env file is broken is a row with its error.

Healthy: valid settings, the instance lock held, a fresh heartbeat, supervisord's state RUNNING
when supervisord manages the user, no job waiting for a new login, no job process stopped (SIGSTOP:
it holds its lock and does nothing), and at least ``--min-free-mb`` (default 200) free on the
home's file system. During a session (NSE calendar export, the shared clock), a user holding
shares is unhealthy when no watchdog runs (its schedule not ``off``) or a held symbol has no
active GTT stop covering it (the summary's ``unprotected``). Live figures that cannot be fetched
are shown (``live`` column) but do not by themselves make a user unhealthy.
"""

from __future__ import annotations

import argparse
import math
import shutil
import time
from typing import Any

from fleet import supervisor
from fleet.argtypes import seconds
from fleet.output import print_json, table
from kitefleet import clock, outbox
from kitefleet.calendar import read_calendar
from kitefleet.errors import ConfigError
from kitefleet.exitcodes import ExitCode
from kitefleet.heartbeat import heartbeat_age, is_stale, is_stopped, read_heartbeat
from kitefleet.home import Home
from kitefleet.locks import job_lock, lock_holder
from kitefleet.users import list_users, validate_user_name

WATCHDOG = "hourly_candle_watchdog"
DEFAULT_MIN_FREE_MB = 200.0

#: The per-user wait for live figures is capped: an hour-long status is a mistake, not a wish.
MAX_TIMEOUT_S = 600.0


def add_parser(sub: Any) -> None:
    p = sub.add_parser("status", help="one row per user: supervision, lock holder, heartbeat, jobs, P&L",
                       usage="orchestrator.py status [--json] [--no-live] [--timeout SECONDS] [--min-free-mb MB]")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--no-live", action="store_true", help="skip the per-user broker figures")
    p.add_argument("--timeout", type=seconds(0, MAX_TIMEOUT_S, lo_open=True), default=20.0,
                   help="per-user timeout of the live figures")
    p.add_argument("--min-free-mb", type=_megabytes, default=DEFAULT_MIN_FREE_MB, metavar="MB",
                   help="less free space than this on the home's file system is unhealthy "
                        f"(default {DEFAULT_MIN_FREE_MB:g})")
    p.set_defaults(func=run)


def _megabytes(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of megabytes (0 or more)")
    return value


def _instance_holder(home: Home, user: str) -> int | None:
    try:
        validate_user_name(user)
    except Exception:
        return None
    return lock_holder(home.locks_dir(user) / "instance.lock")


def in_session_now(home: Home) -> bool:
    """Is the NSE session open now (the shared clock)? False when the calendar export is missing
    or unreadable: then the scheduler does not run either, which status already reports."""
    try:
        calendar = read_calendar(home.calendar_file)
    except ConfigError:
        return False
    now = clock.now()
    if not calendar.covers(now.date()) or not calendar.is_trading_day(now.date()):
        return False
    opening, closing = calendar.session_bounds(now.date())
    return opening <= now < closing


def free_mb(home: Home) -> float | None:
    try:
        return shutil.disk_usage(home.root).free / 1e6
    except OSError:
        return None


def _watchdog_pid(home: Home, user: str) -> int | None:
    try:
        return lock_holder(job_lock(home, user, WATCHDOG).path)
    except Exception:  # an invalid user name: no lock to look at
        return None


def user_row(home: Home, user: str, probe: supervisor.UserProbe, infos: dict[str, dict[str, Any]] | None,
             wall_now: float, *, in_session: bool = False) -> dict[str, Any]:
    info = (infos or {}).get(supervisor.namespec(user))
    holder = _instance_holder(home, user)
    beat = read_heartbeat(home, user) if supervisor.program_name_ok(user) else None
    age = heartbeat_age(beat, wall_now)
    stale = holder is not None and is_stale(beat, wall_now)
    jobs = {}
    for job, rec in ((beat or {}).get("jobs") or {}).items():
        jobs[job] = {"schedule": rec.get("schedule"), "last_start": rec.get("last_start"),
                     "last_end": rec.get("last_end"), "last_exit": rec.get("last_exit"),
                     "last_result": rec.get("last_result")}
    details = probe.details or {}
    row: dict[str, Any] = {
        "user": user,
        "valid": probe.valid,
        "error": None if probe.valid else probe.error,
        "mode": probe.mode,
        "supervisor": None if info is None else info["statename"],
        "supervisor_pid": None if info is None else (info.get("pid") or None),
        "supervisor_detail": None if info is None else (info.get("spawnerr") or info.get("description")),
        "pid": holder,
        "orphan": bool(holder and info is not None and info.get("pid") != holder),
        "heartbeat_age": None if age is None else round(age, 1),
        "stale": stale,
        "state": None if holder is None else (beat or {}).get("state"),
        "paused": (home.user_data_dir(user) / "paused").exists() if supervisor.program_name_ok(user) else False,
        "current_jobs": (beat or {}).get("current_jobs") or {} if holder else {},
        "jobs": jobs,
        "open_positions": details.get("open_positions"),
        "holdings": details.get("holdings"),
        "owned": details.get("owned"),
        "owned_value": details.get("owned_value"),
        "not_managed": details.get("not_managed"),
        "not_managed_value": details.get("not_managed_value"),
        "day_pnl": details.get("day_pnl"),
        "charges": details.get("charges"),
        "net_pnl": details.get("net_pnl"),
        "session_expires_at": details.get("session_expires_at"),
        "session_expired": details.get("session_expired"),
        "live_error": None,
    }
    problems = []
    if not probe.valid:
        problems.append("settings")
    if holder is None:
        problems.append("not running")
    elif stale:
        problems.append("heartbeat stale")
    if info is not None and info["statename"] != "RUNNING":
        problems.append(f"supervisord {info['statename']}")
    if row["orphan"]:
        problems.append("orphan (not supervisord's)")
    if row["state"] == "waiting for login":
        problems.append("waiting for login")
    for job, cur in row["current_jobs"].items():
        if isinstance(cur, dict) and isinstance(cur.get("pid"), int) and is_stopped(cur["pid"]):
            cur["stopped"] = True
            problems.append(f"{job} stopped (pid {cur['pid']})")
    held = details.get("held") or {}
    row["held"] = held
    row["unprotected"] = details.get("unprotected") or {}
    watchdog_pid = _watchdog_pid(home, user) if supervisor.program_name_ok(user) else None
    row["watchdog_pid"] = watchdog_pid
    if in_session and held:
        schedule = (details.get("schedules") or {}).get(WATCHDOG) or jobs.get(WATCHDOG, {}).get("schedule")
        if schedule != "off" and (watchdog_pid is None or is_stopped(watchdog_pid)):
            problems.append("shares held in the session, no watchdog running")
        if row["unprotected"]:
            problems.append("no active GTT stop: " + ", ".join(sorted(row["unprotected"])))
    if supervisor.program_name_ok(user) and (cannot := outbox.notify_problem(home, user)):
        problems.append("cannot notify")
        row["notify"] = cannot
    row["problems"] = problems
    row["healthy"] = not problems
    return row


def _session_text(row: dict[str, Any]) -> str:
    expires = row.get("session_expires_at")
    if not expires:
        return "-"
    text = f"until {expires[5:16].replace('T', ' ')}"
    return text + " EXPIRED" if row.get("session_expired") else text


def _short_jobs(row: dict[str, Any]) -> str:
    parts = []
    for job, rec in sorted(row["jobs"].items()):
        if job in row["current_jobs"]:
            parts.append(f"{job}: STOPPED (SIGSTOP)" if row["current_jobs"][job].get("stopped") else f"{job}: running")
        elif rec.get("last_result"):
            when = (rec.get("last_end") or rec.get("last_start") or "")[5:16].replace("T", " ")
            parts.append(f"{job}: {rec['last_result']}" + (f" @{when}" if when else ""))
    return "; ".join(parts) or "-"


def _owned_text(r: dict[str, Any]) -> str:
    """The bot's positions and, apart, the holdings it leaves alone (count and value)."""
    if r.get("owned") is None:
        return ""
    text = f"; bot {len(r['owned'])} ({r.get('owned_value') or 0:,.0f})"
    if r.get("not_managed"):
        text += f"; not managed {r['not_managed']} ({r.get('not_managed_value') or 0:,.0f})"
    return text


def run(args: argparse.Namespace) -> int:
    home = Home.resolve()
    users = list_users(home)
    infos = supervisor.process_infos(home)
    probes = {p.user: p for p in supervisor.probe_all(home, users, live=not args.no_live, timeout=args.timeout)}
    live_errors: dict[str, str] = {}
    if not args.no_live:
        # A live failure (broker down, token) still tells us the settings are valid or not.
        retry = [u for u, p in probes.items() if not p.valid and (p.details or {}).get("exit_code") != 4]
        for p in supervisor.probe_all(home, retry, live=False, timeout=args.timeout):
            if p.valid:
                live_errors[p.user] = probes[p.user].error or "failed"
            probes[p.user] = p
    wall_now = time.time()
    in_session = in_session_now(home)
    rows = [user_row(home, u, probes[u], infos, wall_now, in_session=in_session) for u in users]
    for row in rows:
        row["live_error"] = live_errors.get(row["user"])
    free = free_mb(home)
    disk_ok = free is not None and free >= args.min_free_mb
    disk = {"path": str(home.root), "free_mb": None if free is None else round(free, 1),
            "min_free_mb": args.min_free_mb, "healthy": disk_ok}
    if args.json:
        print_json({"supervisord": infos is not None, "disk": disk, "users": rows})
    else:
        if infos is None:
            print("supervisord: not running (no answer on run/supervisor.sock)")
        if not disk_ok:
            shown = "unknown" if free is None else f"{free:.0f} MB"
            print(f"unhealthy: {home.root} has {shown} free, less than --min-free-mb {args.min_free_mb:g}; "
                  "free some space (heartbeats and state need it)")
        table(
            ("user", "mode", "supervisord", "pid", "heartbeat", "state", "paused", "session", "positions",
             "day P&L", "jobs"),
            [(
                r["user"],
                r["mode"] or "-",
                r["supervisor"] or "-",
                (f"{r['pid']} (orphan)" if r["orphan"] else r["pid"]) or "-",
                "-" if r["heartbeat_age"] is None else f"{r['heartbeat_age']:.0f}s" + (" STALE" if r["stale"] else ""),
                r["error"] if not r["valid"] else (r["state"] or "-"),
                "yes" if r["paused"] else "no",
                _session_text(r),
                (f"n/a: {r['live_error']}" if r["live_error"] else "-") if r["open_positions"] is None
                else f"{r['open_positions']} (+{r['holdings']} held)" + _owned_text(r),
                "-" if r["day_pnl"] is None else f"{r['day_pnl']:.2f}"
                + ("" if r.get("net_pnl") is None else f" (net {r['net_pnl']:.2f})"),
                _short_jobs(r),
            ) for r in rows],
        )
        unhealthy = [f"{r['user']} ({', '.join(r['problems'])})" for r in rows if not r["healthy"]]
        if unhealthy:
            print("unhealthy: " + "; ".join(unhealthy))
    return ExitCode.OK if disk_ok and rows and all(r["healthy"] for r in rows) else ExitCode.JOB_FAILED
