"""The per-user halt flag: entries stop at once and open bot entries are cancelled; stops, stop
updates and exits go on.

On-disk contract: ``data/<User>/halted`` (JSON, written atomically, mode 0600), beside the pause
flag (kitefleet.pause, same shape)::

    {"user": "Som", "halted_at": ISO (trading clock), "by": "<login name>@<host>" | "loss limit",
     "reason": "...", "until": ISO | null}

The file's existence is the flag; ``until`` (set by the daily loss limit: the next session's
open) ends it by itself, ``orchestrator.py unhalt`` ends it at once. A file that cannot be parsed
still counts as halted: a damaged flag must never let entries through. Who reads it:
place_orders_daily (before each order), the watchdog (each poll: it cancels any open bot entry
order, workers.entry_cancel), the ``cancel_entries`` job that ``halt`` runs in the user's own
process. ``resume`` lifts only a pause and says "still halted (...)".
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from kitefleet import clock
from kitefleet.atomic import atomic_write_json
from kitefleet.home import Home, ensure_dir
from kitefleet.pause import _who, clean_reason
from kitefleet.users import validate_user_name

FLAG_NAME = "halted"
#: ``by`` of a halt the daily loss limit set
BY_LOSS_LIMIT = "loss limit"


def halt_file(home: Home, user: str) -> Path:
    return home.user_data_dir(validate_user_name(user)) / FLAG_NAME


def halt_info(home: Home, user: str, now: datetime | None = None) -> dict[str, Any] | None:
    """The flag's content while it holds (None when not halted, or its ``until`` has passed); an
    unreadable flag gives a placeholder (still halted)."""
    path = halt_file(home, user)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        return {"user": user, "halted_at": None, "by": None, "reason": f"unreadable halt flag ({exc})"}
    if not isinstance(data, dict):
        return {"user": user, "reason": "halt flag is not a JSON object"}
    until = data.get("until")
    if until:
        try:
            ends = datetime.fromisoformat(str(until))
        except ValueError:
            return data  # an unreadable end is no end
        if (now or clock.now()) >= ends:
            return None
    return data


def is_halted(home: Home, user: str, now: datetime | None = None) -> bool:
    return halt_info(home, user, now) is not None


def describe(info: dict[str, Any] | None) -> str:
    if info is None:
        return "not halted"
    parts = [f"halted since {info.get('halted_at') or '?'}"]
    if info.get("by"):
        parts.append(f"by {info['by']}")
    if info.get("reason"):
        parts.append(f"({clean_reason(str(info['reason']))[0]})")
    if info.get("until"):
        parts.append(f"until {info['until']}")
    return " ".join(parts)


def halt(home: Home, user: str, reason: str = "", by: str | None = None,
         until: datetime | None = None) -> dict[str, Any]:
    """Set the flag (again: the newer who/when/why replaces the older)."""
    path = halt_file(home, user)
    ensure_dir(path.parent)
    info = {"user": user, "halted_at": clock.now().isoformat(), "by": by or _who(),
            "reason": clean_reason(reason)[0], "until": until.isoformat() if until is not None else None}
    atomic_write_json(path, info, mode=0o600)
    return info


def unhalt(home: Home, user: str) -> bool:
    """Clear the flag; False when it was not set (an expired one is removed too)."""
    path = halt_file(home, user)
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True
