"""The user's Kite session on disk: where it lives, what is read and written, when it expires.

On-disk contract::

    data/<User>/session.json   mode 0600, replaced atomically (``save_session``)
        {"access_token": "...", "login_time": ISO, "expires_at": ISO,
         "mode": "paper"|"live", "root": "http://127.0.0.1:8765" (paper only)}
    data/<User>/session.lock   a file lock: serialises the paper logins of one user's processes

Writers: the paper auto-login of workers.kite_client (under ``session.lock``) and the ``login`` job
(``orchestrator.py login``, live; workers/jobs/login.py). Readers: every worker's Kite client,
doctor, summary (``expires_at`` only) and the scheduler (the file's mtime: a new login re-runs
jobs that failed for the token, workers/daemon.py).

Rules:

* Expiry: a token lives until the first 06:00 IST after the login (``session_expiry``); the
  file's ``expires_at`` is compared with the shared clock.
* Usable (``usable_session``): the file belongs to this process's mode (a file without ``mode``
  counts as live), in paper to the same broker address (``root``: another port, another test
  home), and has not expired.
* Adopting a newer session (``newer_token``): a process whose token was refused reads the file
  again and switches to a usable token other than the one it holds: in paper the renewal another
  process just wrote (under the lock, instead of logging in again), in live the token of an
  ``orchestrator.py login`` that ran while the process ran.
* A file that exists but does not read as a session (corrupt, truncated, unreadable, not
  UTF-8, no ``access_token``) is reported as unreadable, never as missing (``unreadable_session``),
  and its content is never shown: it holds a token.

Access tokens are registered with the log redaction as soon as they are written.
"""

from __future__ import annotations

import contextlib
import json
from datetime import datetime, timedelta
from datetime import time as dtime
from pathlib import Path
from typing import Any

from filelock import FileLock

from kitefleet.atomic import atomic_write_json
from kitefleet.clock import IST
from kitefleet.home import Home
from kitefleet.settings import Settings
from workers.logs import register_secret

SESSION_EXPIRY = dtime(6, 0)
SESSION_LOCK = "session.lock"
#: a paper login takes a second or two; a lock held this long means a login hung
SESSION_LOCK_TIMEOUT_S = 60


def session_expiry(login: datetime) -> datetime:
    """Kite's rule: a token lives until the first 06:00 IST after the login."""
    local = login.astimezone(IST)
    expiry = datetime.combine(local.date(), SESSION_EXPIRY, IST)
    return expiry if local < expiry else expiry + timedelta(days=1)


def _parse_time(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed.replace(tzinfo=IST) if parsed.tzinfo is None else parsed


def read_session(home: Home, user: str) -> dict[str, Any] | None:
    """The session file's content, or None when missing or unreadable."""
    try:
        data = json.loads(home.session_file(user).read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError, OSError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("access_token"), str) else None


def session_file_problem(home: Home, user: str) -> str | None:
    """Why ``data/<User>/session.json`` exists yet is no session (``read_session`` gives None for
    both); None when it is missing or well-formed. Never quotes the file: it holds a token."""
    path = home.session_file(user)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"cannot be read: {exc.strerror}"
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        return "not UTF-8"
    except json.JSONDecodeError as exc:
        return f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
    if not isinstance(data, dict):
        return "not a JSON object"
    if not isinstance(data.get("access_token"), str):
        return "no access_token"
    return None


def unreadable_session(home: Home, user: str) -> str | None:
    """``data/<User>/session.json is unreadable (why)`` when it exists but is no session."""
    problem = session_file_problem(home, user)
    if problem is None:
        return None
    path = home.session_file(user)
    with contextlib.suppress(ValueError):
        path = path.relative_to(home.root)
    return f"{path} is unreadable ({problem})"


def no_live_session(data: dict[str, Any] | None, unreadable: str | None) -> str:
    """Why the file gives a live worker no token (``data`` as ``read_session`` read it)."""
    if unreadable:
        return unreadable
    if data is None:
        return "no session file"
    if data.get("mode", "live") == "live":
        return f"session file expired at {data.get('expires_at')}"
    return "the session file is not a live session"


def save_session(home: Home, user: str, *, access_token: str, login_time: datetime,
                 expires_at: datetime, mode: str, root: str | None = None) -> Path:
    """Write ``data/<User>/session.json`` atomically with mode 0600 (also for the login command)."""
    register_secret(access_token)
    data: dict[str, Any] = {
        "access_token": access_token,
        "login_time": login_time.astimezone(IST).isoformat(),
        "expires_at": expires_at.astimezone(IST).isoformat(),
        "mode": mode,
    }
    if root is not None:
        data["root"] = root
    path = home.session_file(user)
    atomic_write_json(path, data, mode=0o600)
    return path


def usable_session(data: dict[str, Any] | None, settings: Settings, now: datetime) -> str | None:
    """The access token of ``data`` if it belongs to this mode (and broker) and has not expired."""
    if data is None:
        return None
    mode = data.get("mode", "live")
    if mode != settings.mode:
        return None
    if settings.is_paper and data.get("root") != settings.kite_root:
        return None  # a token of another paper broker (another port, another test home)
    expires = _parse_time(data.get("expires_at"))
    if expires is None or expires <= now:
        return None
    token = data.get("access_token")
    return token if isinstance(token, str) and token else None


def newer_token(home: Home, user: str, settings: Settings, now: datetime, other_than: str | None) -> str | None:
    """The file's usable token when it is not ``other_than`` (the token just refused, or held)."""
    token = usable_session(read_session(home, user), settings, now)
    return token if token is not None and token != other_than else None


def session_lock(home: Home, user: str) -> FileLock:
    """``data/<User>/session.lock`` (not taken yet): one login at a time among the user's processes."""
    home.user_data_dir(user).mkdir(parents=True, exist_ok=True, mode=0o700)
    return FileLock(home.user_data_dir(user) / SESSION_LOCK, timeout=SESSION_LOCK_TIMEOUT_S, poll_interval=0.01)
