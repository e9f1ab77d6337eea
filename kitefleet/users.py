"""User names and the list of users (the stems of ``env/*.env`` except ``example``)."""

from __future__ import annotations

import re

from kitefleet.errors import UsageError
from kitefleet.home import Home

USER_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,31}$")
RESERVED_NAMES = frozenset({"example", "shared", "paper", "migration"})


def validate_user_name(name: str) -> str:
    """Return ``name`` if it is a safe user name; raise UsageError before it touches a path."""
    if not USER_NAME_RE.match(name or "") or name.lower() in RESERVED_NAMES:
        raise UsageError(
            f"invalid user name {name!r}: use 1-32 letters, digits, '_' or '-', starting with a letter "
            f"(not one of {', '.join(sorted(RESERVED_NAMES))})"
        )
    return name


def list_users(home: Home) -> list[str]:
    """Every env file's stem except ``example``, sorted. Invalid stems are included so that
    callers can report them (``users``, the generated supervisord config) instead of hiding them."""
    if not home.env_dir.is_dir():
        return []
    return sorted(
        p.stem for p in home.env_dir.glob("*.env") if p.is_file() and p.stem != "example"
    )
