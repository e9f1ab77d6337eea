"""``status [--json] [--no-live] [--timeout S]``: one row per user, exit 0 only when all are healthy.

Per user: supervisord's state of ``trader:<User>`` (over its socket, when it runs); the pid holding
the user's instance lock, whoever started it (supervisord, ``run-all``, an orphan of a SIGKILLed
supervisord); the heartbeat's age (wall seconds) and a stale flag; mode; paused or not; the last
run and result of each job (from the heartbeat); open positions, holdings and today's P&L. Those
live figures come from a ``summary`` process per user, run in parallel with a timeout, so even
status keeps one user per process. A user whose env file is broken is a row with its error.

Healthy: valid settings, the instance lock held, a fresh heartbeat, supervisord's state RUNNING
when supervisord manages the user, and no job waiting for a new login. Live figures that cannot be
fetched are shown (``live`` column) but do not by themselves make a user unhealthy.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from fleet import supervisor
from fleet.argtypes import seconds
from fleet.output import print_json, table
from kitefleet.exitcodes import ExitCode
from kitefleet.home import Home
from kitefleet.locks import lock_holder
from kitefleet.users import list_users, validate_user_name
from workers.heartbeat import heartbeat_age, is_stale, read_heartbeat

#: The per-user wait for live figures is capped: an hour-long status is a mistake, not a wish.
MAX_TIMEOUT_S = 600.0


def add_parser(sub: Any) -> None:
    p = sub.add_parser("status", help="one row per user: supervision, lock holder, heartbeat, jobs, P&L",
                       usage="orchestrator.py status [--json] [--no-live] [--timeout SECONDS]")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--no-live", action="store_true", help="skip the per-user broker figures")
    p.add_argument("--timeout", type=seconds(0, MAX_TIMEOUT_S, lo_open=True), default=20.0,
                   help="per-user timeout of the live figures")
    p.set_defaults(func=run)


def _instance_holder(home: Home, user: str) -> int | None:
    try:
        validate_user_name(user)
    except Exception:
        return None
    return lock_holder(home.locks_dir(user) / "instance.lock")


def user_row(home: Home, user: str, probe: supervisor.UserProbe, infos: dict[str, dict[str, Any]] | None,
             wall_now: float) -> dict[str, Any]:
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
        "day_pnl": details.get("day_pnl"),
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
            parts.append(f"{job}: running")
        elif rec.get("last_result"):
            when = (rec.get("last_end") or rec.get("last_start") or "")[5:16].replace("T", " ")
            parts.append(f"{job}: {rec['last_result']}" + (f" @{when}" if when else ""))
    return "; ".join(parts) or "-"


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
    rows = [user_row(home, u, probes[u], infos, wall_now) for u in users]
    for row in rows:
        row["live_error"] = live_errors.get(row["user"])
    if args.json:
        print_json({"supervisord": infos is not None, "users": rows})
    else:
        if infos is None:
            print("supervisord: not running (no answer on run/supervisor.sock)")
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
                else f"{r['open_positions']} (+{r['holdings']} held)",
                "-" if r["day_pnl"] is None else f"{r['day_pnl']:.2f}",
                _short_jobs(r),
            ) for r in rows],
        )
        unhealthy = [f"{r['user']} ({', '.join(r['problems'])})" for r in rows if not r["healthy"]]
        if unhealthy:
            print("unhealthy: " + "; ".join(unhealthy))
    return ExitCode.OK if rows and all(r["healthy"] for r in rows) else ExitCode.JOB_FAILED
