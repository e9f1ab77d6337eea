"""The per-user pause flag: while it is set, place_orders_daily refuses every new entry.

On-disk contract: ``data/<User>/paused`` (JSON, written atomically, mode 0600)::

    {"user": "Som", "paused_at": ISO (trading clock), "by": "<login name>@<host>", "reason": "..."}

The file's existence is the flag; its content says who set it, when and why (shown in every
refusal). ``orchestrator.py pause USER [--reason ...]`` / ``pause --all`` write it,
``resume USER`` / ``resume --all`` remove it. A file that cannot be parsed still counts as paused:
a damaged flag must never let entries through. Stops (update_cnc_stoploss) and exits (the
watchdog) are not paused: pausing is for new risk, not for protecting what is held.
"""

from __future__ import annotations

import getpass
import json
import re
import socket
from pathlib import Path
from typing import Any

from kitefleet import clock
from kitefleet.atomic import atomic_write_json
from kitefleet.home import Home, ensure_dir
from kitefleet.users import validate_user_name

FLAG_NAME = "paused"
#: A reason is shown in every refusal, in tables and logs: one short line.
MAX_REASON_CHARS = 200
#: Control and format characters: newlines, terminal escapes (ESC [ ...), bidi overrides.
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069]+")


def clean_reason(reason: str) -> tuple[str, list[str]]:
    """The reason as stored and shown: control characters (terminal escapes, newlines) replaced by
    a space, at most MAX_REASON_CHARS characters. Returns it and what was changed, to be said."""
    changes: list[str] = []
    cleaned = _UNPRINTABLE.sub(" ", reason)
    if cleaned != reason:
        changes.append("control characters (newlines, terminal escapes) replaced by spaces")
    cleaned = " ".join(cleaned.split())
    if len(cleaned) > MAX_REASON_CHARS:
        cleaned = cleaned[:MAX_REASON_CHARS - 3].rstrip() + "..."
        changes.append(f"cut to {MAX_REASON_CHARS} characters")
    return cleaned, changes


def pause_file(home: Home, user: str) -> Path:
    return home.user_data_dir(validate_user_name(user)) / FLAG_NAME


def is_paused(home: Home, user: str) -> bool:
    return pause_file(home, user).exists()


def pause_info(home: Home, user: str) -> dict[str, Any] | None:
    """The flag's content, None when not paused; an unreadable flag gives a placeholder."""
    path = pause_file(home, user)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        return {"user": user, "paused_at": None, "by": None, "reason": f"unreadable pause flag ({exc})"}
    return data if isinstance(data, dict) else {"user": user, "reason": "pause flag is not a JSON object"}


def describe(info: dict[str, Any] | None) -> str:
    if info is None:
        return "not paused"
    parts = [f"paused since {info.get('paused_at') or '?'}"]
    if info.get("by"):
        parts.append(f"by {info['by']}")
    if info.get("reason"):
        # A flag written by hand (or by an older version) is cleaned for display as well.
        parts.append(f"({clean_reason(str(info['reason']))[0]})")
    return " ".join(parts)


def _who() -> str:
    try:
        name = getpass.getuser()
    except (KeyError, OSError):
        name = "unknown"
    return f"{name}@{socket.gethostname()}"


def pause(home: Home, user: str, reason: str = "", by: str | None = None) -> dict[str, Any]:
    """Set the flag (again: the newer who/when/why replaces the older)."""
    path = pause_file(home, user)
    ensure_dir(path.parent)
    info = {"user": user, "paused_at": clock.now().isoformat(), "by": by or _who(),
            "reason": clean_reason(reason)[0]}
    atomic_write_json(path, info, mode=0o600)
    return info


def resume(home: Home, user: str) -> bool:
    """Clear the flag; False when it was not set."""
    path = pause_file(home, user)
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True
