"""Two env files, one Kite account (issue 15): refused everywhere a user is started or listed.

Two users are one account when their env files are the same file (a symlink or a hard link:
compared by device and inode, with ``stat``, which reads no content) or hold the same API key
(compared by the fingerprint each user's own process reports: the orchestrator holds no secret).
Both processes would otherwise trade the one account, each with its own limits.

``users``/``doctor`` fail every user of such a group with one line naming all its files,
``supervisor-conf`` leaves them all out with that line, ``run``/``run-all``/``exec`` refuse them
(exit 4).

Cost: a user's fingerprint comes from the record its own process wrote when it last loaded its
settings (kitefleet.key_fingerprint), as long as the env file is still the file that process read
(same lstat: inode, size, mtime, ctime); only the other users are probed, and each probe refreshes
its user's record. So ``exec`` (N of them when supervisord starts the fleet) and ``run`` start no
probe at all once every user's process has run since its env file last changed (``supervisor-conf``
alone does that for everyone), while an edited env file is probed at the very next check.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

from fleet import probe
from kitefleet.errors import ConfigError, UsageError
from kitefleet.home import Home
from kitefleet.key_fingerprint import recorded_fingerprint
from kitefleet.users import list_users, validate_user_name


def _valid(name: str) -> bool:
    try:
        validate_user_name(name)
    except UsageError:
        return False
    return True


def _file_identity(home: Home, user: str) -> tuple[int, int] | None:
    try:
        st = os.stat(home.env_file(user))  # follows a symlink to the file it names
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _files(users: Sequence[str]) -> str:
    names = [f"env/{u}.env" for u in sorted(users)]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def clashes(home: Home, fingerprints: Mapping[str, str | None]) -> dict[str, str]:
    """``{user: one-line reason}`` for every user (a key of ``fingerprints``) whose env file is the
    same file as, or holds the same API key as, another's. ``None`` = fingerprint unknown."""
    groups: dict[tuple[object, ...], set[str]] = {}
    for user, fp in fingerprints.items():
        if fp:
            groups.setdefault(("key", fp), set()).add(user)
        identity = _file_identity(home, user)
        if identity is not None:
            groups.setdefault(("file", *identity), set()).add(user)
    reasons: dict[str, str] = {}
    for key, members in sorted(groups.items(), key=lambda kv: str(kv[0])):
        if len(members) < 2:
            continue
        why = f"the same API key, fingerprint {key[1]}" if key[0] == "key" else "the same file"
        line = (f"{_files(sorted(members))} are one Kite account ({why}): both users would trade it; "
                "keep one of the files, or give each user its own account")
        for user in members:
            reasons.setdefault(user, line)
    return reasons


def fingerprints(home: Home, users: Sequence[str]) -> dict[str, str | None]:
    """Each user's API key fingerprint as its own process recorded it for the env file as it is
    now, else as its own ``whoami`` process reports it (None when the process refuses to start: a
    broken env file is that user's own error)."""
    out: dict[str, str | None] = {u: None for u in users}
    unknown: list[str] = []
    for user in users:
        if not _valid(user):
            continue
        out[user] = recorded_fingerprint(home, user)
        if out[user] is None:
            unknown.append(user)
    for answer in probe.ask_all(home, unknown, "whoami"):
        fp = (answer.data or {}).get("api_key_fingerprint")
        out[answer.user] = fp if answer.ok and isinstance(fp, str) else None
    return out


def fleet_clashes(home: Home) -> dict[str, str]:
    """``clashes`` over every user of the home, each asked by a process of its own."""
    users = [u for u in list_users(home) if _valid(u)]
    return clashes(home, fingerprints(home, users))


def refuse_clashes(home: Home, wanted: Sequence[str]) -> None:
    """ConfigError (exit 4, one line) when any of ``wanted`` shares its account with another user."""
    found = fleet_clashes(home)
    lines = sorted({found[u] for u in wanted if u in found})
    if lines:
        raise ConfigError("refused: " + "; ".join(lines))
