"""The key-fingerprint record, ``data/<User>/key_fingerprint.json``: lets the fleet's "two env
files, one Kite account" check (fleet/accounts.py) skip the ``whoami`` probe of every user whose
env file has not changed since that user's own process last read it.

On-disk contract:

- Written by the user's own worker process, every time it loads its settings (``load_and_record``
  in workers/__main__.py), and only when the content changes: mode 0600, atomically
  (kitefleet.atomic). Content: ``{"version": 1, "user", "api_key_fingerprint", "env_file":
  {"dev", "ino", "size", "mtime_ns", "ctime_ns"}}``, the env file's ``lstat`` taken BEFORE it was
  read and found unchanged after.
- Read by the orchestrator (``recorded_fingerprint``), which uses the fingerprint only while the
  env file's current ``lstat`` equals the recorded identity; anything else (no record, unreadable,
  malformed, another user's, a link or a different file now) means: probe that user, and the probe
  process writes a fresh record. Any edit of an env file (content, mode, owner, a rename or copy
  over it) changes its ctime, which no user call can set back, so it is always seen at the next
  check.

Racy timestamps: an edit in the same filesystem-timestamp tick as the read, leaving the size
alone, would keep the identity while changing the key. So a record is written only when the file's
mtime and ctime are older than the read by more than a tick (``RACY_MARGIN_NS``; whole-second
filesystems get ``COARSE_MARGIN_NS``): any later edit then gets a newer timestamp. A file edited
just now is simply probed once more. This compares filesystem timestamps with the real wall clock
(time.time_ns), deliberately not with the trading clock, which may be simulated.

Not a secret: the fingerprint (the key's first 4 characters and 48 bits of its SHA-256,
kitefleet.settings.api_key_fingerprint) is what ``users`` already shows. It is short and cannot be
reversed: a Kite API key has 12 more characters from [a-z0-9] (about 62 bits), so each fingerprint
has thousands of preimages; and the API key is not the app's secret anyway (it is in every login
URL), the API secret is, and it never enters the record.

Trust: a record tampered to a wrong fingerprint while the stat still matches is believed. It lives
in the user's data folder (0700), which only the OS user running the fleet can write, and that user
can edit the env files themselves: the record guards against accidents (a copied or linked env
file, an edited key), not against the fleet's own user.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import stat
import time
from typing import Any

from kitefleet.atomic import atomic_write_json
from kitefleet.home import Home
from kitefleet.settings import Settings, load_settings

VERSION = 1
#: Larger than a kernel tick (1-10 ms) on filesystems with nanosecond timestamps.
RACY_MARGIN_NS = 100_000_000
#: Filesystems that keep whole seconds (FAT keeps mtime in 2 s steps).
COARSE_MARGIN_NS = 3_000_000_000
#: A record is a few hundred bytes; anything bigger is not one.
_MAX_BYTES = 4096
_FINGERPRINT = re.compile(r"[^\x00-\x1f\x7f]{0,4}:[0-9a-f]{12}")


def identity(st: os.stat_result) -> dict[str, int]:
    """What must stay equal for the env file to be the one that was read."""
    return {"dev": st.st_dev, "ino": st.st_ino, "size": st.st_size, "mtime_ns": st.st_mtime_ns,
            "ctime_ns": st.st_ctime_ns}


def _settled(st: os.stat_result, read_at_ns: int) -> bool:
    """True when an edit after ``read_at_ns`` must give the file a newer timestamp than ``st`` has."""
    coarse = st.st_mtime_ns % 1_000_000_000 == 0 and st.st_ctime_ns % 1_000_000_000 == 0
    margin = COARSE_MARGIN_NS if coarse else RACY_MARGIN_NS
    return max(st.st_mtime_ns, st.st_ctime_ns) < read_at_ns - margin


def load_and_record(home: Home, user: str) -> Settings:
    """``load_settings`` and, when the env file stood still while it was read, the user's record.
    A record that cannot be written (read-only or full home) is skipped: the fleet then probes."""
    path = home.env_file(user)
    read_at = time.time_ns()
    try:
        before: os.stat_result | None = os.lstat(path)
    except OSError:
        before = None  # load_settings says why, in one line
    settings = load_settings(home, user)
    if before is not None:
        with contextlib.suppress(OSError):
            write_record(home, user, settings.fingerprint, before, read_at)
    return settings


def write_record(home: Home, user: str, fingerprint: str, before: os.stat_result, read_at_ns: int) -> bool:
    """Record ``fingerprint`` for the env file as ``before`` saw it; False when that is not safe
    (the file changed during the read, or is too fresh) or nothing new would be written."""
    after = os.lstat(home.env_file(user))
    if (not stat.S_ISREG(before.st_mode) or identity(before) != identity(after)
            or not _settled(before, read_at_ns)):
        return False
    doc = {"version": VERSION, "user": user, "api_key_fingerprint": fingerprint, "env_file": identity(before)}
    target = home.key_fingerprint_file(user)
    if _read(target) == doc:
        return False  # every job start loads settings: no fsync when nothing changed
    atomic_write_json(target, doc)
    return True


def _read(path: os.PathLike[str]) -> Any:
    try:
        with open(path, "rb") as f:
            raw = f.read(_MAX_BYTES + 1)
    except OSError:
        return None
    if len(raw) > _MAX_BYTES:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return None


def recorded_fingerprint(home: Home, user: str) -> str | None:
    """The fingerprint ``user``'s own process recorded, while ``env/<user>.env`` is still the file it
    read (same lstat identity); None means "ask the user's process"."""
    try:
        st = os.lstat(home.env_file(user))
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode):
        return None
    doc = _read(home.key_fingerprint_file(user))
    if not isinstance(doc, dict) or doc.get("version") != VERSION or doc.get("user") != user:
        return None
    fingerprint = doc.get("api_key_fingerprint")
    if not isinstance(fingerprint, str) or not _FINGERPRINT.fullmatch(fingerprint):
        return None
    if doc.get("env_file") != identity(st):
        return None
    return fingerprint
