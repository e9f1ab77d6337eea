"""What the dashboard reads from disk, one user at a time: plain data for the templates.

Every reader is defensive: a file that is missing, torn or of an unexpected shape gives an empty
value (or an ``error`` line), never an exception, because one user's damaged file must not blank
the page of the whole fleet. Nothing here opens ``env/`` (beyond listing its names) or
``data/<User>/session.json``, and every path is built from a validated user name and a fixed file
name, never from a request.

Files read (their writers own the contracts):

    data/<User>/heartbeat.json           kitefleet.heartbeat (scheduler)
    data/<User>/paused                   kitefleet.pause
    data/<User>/halted                   kitefleet.halt, when that module exists (see ``halt_state``)
    data/<User>/outbox.jsonl             kitefleet.outbox (warning-level events of the last 24 h)
    data/trading_state_<User>.json       kitefleet.state (positions, ledger, stops, watchdog levels,
                                         equity_history)
    data/<User>/scans/pattern_daily_<YYYYMMDD>.csv   workers.scans (read as CSV: the fleet side
                                         never imports workers)
    data/<User>/reports/daily_*.html, backtest_*.html   the reports offered as downloads
    logs/<User>/<job>.log                the worker's redacted job logs (never ``*.out.log``)
"""

from __future__ import annotations

import contextlib
import csv
import importlib
import importlib.util
import json
import os
import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from kitefleet import clock
from kitefleet import pause as pause_flag
from kitefleet.heartbeat import heartbeat_age, is_stale, process_state, read_heartbeat
from kitefleet.home import Home
from kitefleet.jobs import SCHEDULED_JOBS
from kitefleet.users import RESERVED_NAMES, USER_NAME_RE, list_users

#: a log tail or an outbox is read from its last bytes only: a big file costs no more than a small one
TAIL_BYTES = 64 * 1024
OUTBOX_TAIL_BYTES = 256 * 1024
LOG_LINES = 40
SCAN_ROWS = 10
SCAN_SHOWN = ("symbol", "score", "entry", "stop_loss", "target_1", "risk_reward", "trend", "reason")
#: the logs offered on the user page: the scheduler's and each scheduled job's (fixed names)
LOG_JOBS = ("daemon", *SCHEDULED_JOBS, "daily_report", "notify")
#: report kind -> file name pattern under data/<User>/reports/ (newest by name wins)
REPORTS = {"daily": re.compile(r"daily_\d{4}-\d{2}-\d{2}\.html"),
           "backtest": re.compile(r"backtest_[A-Za-z0-9_.-]+\.(html|csv|json|md|txt)")}
WARNING_WINDOW = timedelta(hours=24)


def valid_user(name: str) -> bool:
    return bool(USER_NAME_RE.fullmatch(name)) and name.lower() not in RESERVED_NAMES


def users(home: Home) -> list[str]:
    """The users the dashboard shows: env file stems that are valid names (names only, never opened)."""
    return [u for u in list_users(home) if valid_user(u)]


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def tail_text(path: Path, limit: int = TAIL_BYTES) -> str:
    """The last ``limit`` bytes of a file, starting at a whole line; '' when unreadable."""
    try:
        with path.open("rb") as fh:
            size = fh.seek(0, os.SEEK_END)
            fh.seek(max(0, size - limit))
            data = fh.read(limit)
    except OSError:
        return ""
    if len(data) == limit and b"\n" in data:
        data = data.split(b"\n", 1)[1]
    return data.decode("utf-8", "replace")


# --- flags -----------------------------------------------------------------------------------------
def halt_state(home: Home, user: str) -> dict[str, Any] | None:
    """``{"halted": bool, "info": ...}`` from kitefleet.halt when that module exists, else None (the
    dashboard then shows the pause flag only). The hook for the halt flag: the module is expected
    to offer ``is_halted(home, user)`` and, optionally, ``halt_info(home, user)``."""
    import kitefleet

    spec = importlib.util.find_spec("kitefleet.halt")
    # Only this tree's module: an editable install can resolve a submodule from another checkout.
    if spec is None or spec.origin is None or Path(spec.origin).parent != Path(kitefleet.__file__).parent:
        return None
    try:
        module = importlib.import_module("kitefleet.halt")
    except ImportError:
        return None
    is_halted = getattr(module, "is_halted", None)
    if not callable(is_halted):
        return None
    try:
        halted = bool(is_halted(home, user))
        info_fn = getattr(module, "halt_info", None)
        info = info_fn(home, user) if halted and callable(info_fn) else None
    except Exception as exc:  # a damaged flag: shown as halted, as the module itself would count it
        return {"halted": True, "info": {"reason": f"unreadable halt flag ({exc})"}}
    return {"halted": halted, "info": info if isinstance(info, dict) else None}


def pause_state(home: Home, user: str) -> dict[str, Any]:
    info = pause_flag.pause_info(home, user)
    return {"paused": info is not None, "text": pause_flag.describe(info) if info is not None else ""}


# --- heartbeat and jobs ----------------------------------------------------------------------------
def heartbeat_view(home: Home, user: str, wall_now: float) -> dict[str, Any]:
    """The scheduler's heartbeat as the dashboard shows it. Whether its writer lives is judged from
    /proc, not by probing the instance lock as ``status`` does: a page polled every few seconds
    must never hold a user's lock at the instant supervisord restarts that user's scheduler."""
    beat = read_heartbeat(home, user)
    pid = (beat or {}).get("pid")
    holder = pid if isinstance(pid, int) and process_state(pid) not in (None, "Z") else None
    age = heartbeat_age(beat, wall_now)
    jobs = []
    for job, rec in sorted(((beat or {}).get("jobs") or {}).items()):
        if not isinstance(rec, dict):
            continue
        running = job in ((beat or {}).get("current_jobs") or {})
        jobs.append({"job": str(job), "schedule": rec.get("schedule"), "result": rec.get("last_result"),
                     "exit": rec.get("last_exit"), "at": rec.get("last_end") or rec.get("last_start"),
                     "running": running})
    return {"pid": holder, "age": None if age is None else round(age, 1),
            "stale": beat is None or is_stale(beat, wall_now), "state": (beat or {}).get("state"),
            "mode": (beat or {}).get("mode"), "jobs": jobs}


# --- outbox ----------------------------------------------------------------------------------------
def _parse_time(text: Any) -> datetime | None:
    try:
        when = datetime.fromisoformat(str(text))
    except ValueError:
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=clock.IST)


def warnings_of(home: Home, user: str, now: datetime, limit: int = 20) -> list[dict[str, Any]]:
    """Warning-level outbox events of the last 24 hours (shared clock), newest first. Read from the
    JSONL itself (kitefleet.outbox's contract): a torn last line is skipped, as every reader does."""
    text = tail_text(home.user_data_dir(user) / "outbox.jsonl", OUTBOX_TAIL_BYTES)
    out = []
    for line in text.splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if not isinstance(event, dict) or event.get("level") != "warning":
            continue
        when = _parse_time(event.get("time"))
        if when is None or not (now - WARNING_WINDOW <= when <= now + timedelta(minutes=5)):
            continue
        out.append({"time": when.isoformat(timespec="seconds"), "kind": str(event.get("kind") or ""),
                    "text": str(event.get("text") or ""), "act": str(event.get("act") or "")})
    return list(reversed(out))[:limit]


# --- state -----------------------------------------------------------------------------------------
def read_state(home: Home, user: str) -> dict[str, Any]:
    """The state document (written atomically, so read without the lock), {} when unreadable."""
    data = read_json(home.state_file(user))
    return data if isinstance(data, dict) and data.get("user") == user else {}


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    with contextlib.suppress(TypeError, ValueError):
        return float(value)
    return None


def owned(state: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """What the bot owns, per symbol: ``{"quantity", "price"}`` (average of its lots). From the
    ownership ledger (``ledger.lots``) when the state has one, else from the open records of
    ``positions`` (the bot's entries and adopted holdings before the ledger existed)."""
    out: dict[str, dict[str, Any]] = {}
    lots = (state.get("ledger") or {}).get("lots") if isinstance(state.get("ledger"), dict) else None
    if isinstance(lots, dict):
        for sym, items in lots.items():
            qty, value = 0, 0.0
            for lot in items if isinstance(items, list) else []:
                q = _number((lot or {}).get("quantity")) or 0
                qty += int(q)
                value += q * (_number((lot or {}).get("price")) or 0.0)
            if qty > 0:
                out[str(sym)] = {"quantity": qty, "price": round(value / qty, 2)}
        return out
    for sym, rec in (state.get("positions") or {}).items():
        if not isinstance(rec, dict) or rec.get("closed_at"):
            continue
        qty = int(_number(rec.get("quantity")) or 0)
        if qty > 0:
            out[str(sym)] = {"quantity": qty, "price": _number(rec.get("entry_price"))}
    return out


def stop_of(state: dict[str, Any], symbol: str) -> float | None:
    rec = (state.get("stops") or {}).get(symbol)
    if not isinstance(rec, dict):
        return None
    return _number(rec.get("trigger")) or _number(rec.get("stop"))


def watchdog_session(state: dict[str, Any], day: str) -> dict[str, Any]:
    session = (state.get("watchdog") or {}).get(day)
    return session if isinstance(session, dict) else {}


def watchdog_level(state: dict[str, Any], day: str, symbol: str) -> float | None:
    """The level the watchdog exits at today: the hourly low's level, or the ATR trailing stop."""
    sym = (watchdog_session(state, day).get("symbols") or {}).get(symbol)
    if not isinstance(sym, dict):
        return None
    level = _number((sym.get("hourly") or {}).get("level")) if isinstance(sym.get("hourly"), dict) else None
    if level is None and isinstance(sym.get("atr"), dict):
        level = _number(sym["atr"].get("stop"))
    return level


def exits_today(state: dict[str, Any], day: str) -> list[dict[str, Any]]:
    out = []
    for sym, rec in (watchdog_session(state, day).get("symbols") or {}).items():
        for ex in (rec or {}).get("exits") or [] if isinstance(rec, dict) else []:
            if isinstance(ex, dict):
                out.append({"time": str(ex.get("decided_at") or ""), "symbol": str(sym), "what": "exit",
                            "side": "SELL", "quantity": ex.get("quantity"), "price": ex.get("price"),
                            "status": str(ex.get("status") or ""), "note": str(ex.get("rule") or "")})
    return out


def equity_points(state: dict[str, Any]) -> list[tuple[str, float]]:
    """Each session's closing equity (``equity_history``, written by the daily report), oldest first."""
    hist = state.get("equity_history")
    points = []
    for day, rec in sorted(hist.items()) if isinstance(hist, dict) else []:
        value = _number((rec or {}).get("equity")) if isinstance(rec, dict) else None
        if value is not None:
            points.append((str(day), value))
    return points


# --- scans, logs, reports ---------------------------------------------------------------------------
def newest_scan(home: Home, user: str) -> dict[str, Any] | None:
    """The newest scan's name and top rows (workers.scans' CSV format, read as plain CSV)."""
    folder = home.user_data_dir(user) / "scans"
    try:
        files = sorted(p for p in folder.glob("pattern_daily_[0-9]*.csv") if p.is_file())
    except OSError:
        return None
    if not files:
        return None
    rows = []
    try:
        with files[-1].open(encoding="utf-8", newline="") as fh:
            for n, row in enumerate(csv.DictReader(fh)):
                if n >= SCAN_ROWS:
                    break
                rows.append({k: (row.get(k) or "") for k in SCAN_SHOWN})
    except (OSError, csv.Error, UnicodeDecodeError) as exc:
        return {"name": files[-1].name, "rows": [], "error": f"unreadable ({exc})", "columns": SCAN_SHOWN}
    return {"name": files[-1].name, "rows": rows, "error": None, "columns": SCAN_SHOWN}


def log_tails(home: Home, user: str, lines: int = LOG_LINES) -> list[dict[str, Any]]:
    """The last lines of each ``logs/<User>/<job>.log`` (redacted by the worker as it wrote them).
    ``*.out.log`` (raw process output nobody redacted) is never read: the names are a fixed list."""
    out = []
    for job in LOG_JOBS:
        path = home.user_logs_dir(user) / f"{job}.log"
        if not path.is_file():
            continue
        text = tail_text(path)
        out.append({"job": job, "lines": text.splitlines()[-lines:]})
    return out


def report_file(home: Home, user: str, kind: str) -> Path | None:
    """The newest report of ``kind`` (a key of REPORTS) for ``user``; the name comes from the disk,
    matched against a fixed pattern, never from a request."""
    pattern = REPORTS.get(kind)
    if pattern is None:
        return None
    folder = home.user_data_dir(user) / "reports"
    try:
        names = sorted(p.name for p in folder.iterdir() if pattern.fullmatch(p.name) and p.is_file()
                       and not p.is_symlink())
    except OSError:
        return None
    return folder / names[-1] if names else None


def trading_day(now: datetime) -> str:
    return now.date().isoformat()


def all_users_exist(home: Home, user: str) -> bool:
    return valid_user(user) and user in users(home)
