"""User names, the list of users (the stems of ``env/*.env`` except ``example``), and the one way
an env file is opened.

An env file is refused (ConfigError, one line) before a byte of it is read when it is a symbolic
link (``env/Sai.env -> Som.env`` would let two users trade one account), not a regular file (a
FIFO would hang the reader, a directory cannot be read), not owned by the user running the fleet,
or larger than ``ENV_FILE_MAX_BYTES`` (64 KiB; a real one is under 2 KiB).
"""

from __future__ import annotations

import errno
import os
import re
import stat
from pathlib import Path

from kitefleet.errors import ConfigError, UsageError
from kitefleet.home import Home

# fullmatch (below) and \Z: "$" would also match before a trailing newline ("Som\n").
USER_NAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,31}\Z")
#: An env file larger than this is refused before it is read.
ENV_FILE_MAX_BYTES = 64 * 1024
RESERVED_NAMES = frozenset({"example", "shared", "paper", "migration"})


def validate_user_name(name: str) -> str:
    """Return ``name`` if it is a safe user name; raise UsageError before it touches a path."""
    if not isinstance(name, str) or not USER_NAME_RE.fullmatch(name) or name.lower() in RESERVED_NAMES:
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
    # Every entry, not only regular files: a FIFO, a folder or a dangling symlink named <U>.env is
    # still that user's (broken) env file and gets a row (and a FATAL program) saying why.
    return sorted(p.stem for p in home.env_dir.glob("*.env") if p.stem != "example")


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a regular file"


def env_file_problem(st: os.stat_result, shown: str) -> str | None:
    """Why a file with this (l)stat cannot be an env file, as one line; None when it can."""
    if stat.S_ISLNK(st.st_mode):
        return (f"{shown}: is a symbolic link; an env file must be a regular file of its own "
                "(two names for one file would let two users trade one account): replace the link "
                "with the user's own file")
    if not stat.S_ISREG(st.st_mode):
        return f"{shown}: is {_kind(st.st_mode)}, not a regular file; replace it with the user's env file"
    if st.st_uid != os.geteuid():
        return (f"{shown}: owned by uid {st.st_uid}, not by the user running the fleet (uid {os.geteuid()}); "
                f"chown it to that user")
    if st.st_size > ENV_FILE_MAX_BYTES:
        return (f"{shown}: {st.st_size} bytes, more than the {ENV_FILE_MAX_BYTES // 1024} KiB an env file "
                "may have; it is not an env file (see env/example.env)")
    return None


def read_env_file(path: Path, shown: str) -> tuple[os.stat_result, bytes]:
    """The env file's stat and bytes, or ConfigError (one line) naming the file and what to do."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        raise ConfigError(f"{shown}: no such env file; copy env/example.env to {shown} and fill it in") from None
    except OSError as exc:
        raise ConfigError(f"{shown}: cannot be read ({exc.strerror})") from None
    problem = env_file_problem(st, shown)
    if problem:
        raise ConfigError(problem)
    try:
        # O_NOFOLLOW/O_NONBLOCK: a file swapped for a link or a FIFO since the lstat never blocks us.
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ConfigError(env_file_problem(os.lstat(path), shown) or f"{shown}: is a symbolic link") from None
        raise ConfigError(f"{shown}: cannot be read ({exc.strerror})") from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        problem = env_file_problem(st, shown)
        if problem:
            raise ConfigError(problem)
        raw = f.read(ENV_FILE_MAX_BYTES + 1)
    if len(raw) > ENV_FILE_MAX_BYTES:
        raise ConfigError(f"{shown}: more than the {ENV_FILE_MAX_BYTES // 1024} KiB an env file may have; "
                          "it is not an env file (see env/example.env)")
    return st, raw
