"""Crash-safe file writes: a reader sees the old file or the new one, never a mix.

On-disk contract: ``atomic_write_*(path, ...)`` writes a temp file ``.<name>.<random>.tmp`` in the
same folder as ``path`` (same filesystem, so the rename is atomic), flushes and fsyncs it,
``os.replace``-s it over ``path`` and fsyncs the folder so the rename itself survives a power cut.
A process killed before the rename leaves the old file intact plus one stale temp file; callers
that own a file remove such leftovers with ``remove_stale_temps(path)`` while no writer can be
active (e.g. under the file's lock). The parent folder is created (mode 0700) when missing.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any


def temp_prefix(path: Path) -> str:
    return f".{path.name}."


def temp_glob(path: Path) -> str:
    """Glob (relative to ``path.parent``) matching the temp files of ``path``, and only those:
    the name is followed by a dot, so ``trading_state_Som.json`` never matches ``..._Som2.json``."""
    return f"{temp_prefix(path)}*.tmp"


def fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _mkstemp(path: Path) -> tuple[int, str]:
    try:
        return tempfile.mkstemp(dir=path.parent, prefix=temp_prefix(path), suffix=".tmp")
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        return tempfile.mkstemp(dir=path.parent, prefix=temp_prefix(path), suffix=".tmp")


def write_temp(path: Path, data: bytes, mode: int = 0o600) -> Path:
    """The first half of ``atomic_write_bytes``: ``data`` in a fsynced temp file beside ``path``,
    ready for ``replace_with_temp``. Nothing is left behind when this raises (a full disk, say),
    so a caller can do what must happen only once the new version is safely on disk (rotate a
    backup) between the two halves."""
    path = Path(path)
    fd, tmp = _mkstemp(path)
    try:
        try:
            if mode != 0o600:  # mkstemp already created it 0600
                os.fchmod(fd, mode)
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            # Without the fsync a power cut after the rename can leave an empty or partial file.
            os.fsync(fd)
        finally:
            os.close(fd)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return Path(tmp)


def replace_with_temp(tmp: Path, path: Path) -> None:
    """The second half: rename ``tmp`` (from ``write_temp``) over ``path``, durably."""
    path = Path(path)
    try:
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    # The rename lives in the folder's metadata: without this a power cut can bring the old file back.
    fsync_dir(path.parent)


def discard_temp(tmp: Path) -> None:
    """Remove a temp file from ``write_temp`` that will not be used."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)


def atomic_write_bytes(path: Path, data: bytes, mode: int = 0o600) -> None:
    replace_with_temp(write_temp(path, data, mode), path)


def atomic_write_text(path: Path, text: str, mode: int = 0o600, *, encoding: str = "utf-8") -> None:
    atomic_write_bytes(path, text.encode(encoding), mode)


def atomic_write_json(path: Path, obj: Any, *, mode: int = 0o600, indent: int | None = 2) -> None:
    """Strict JSON (NaN/Infinity refused, so every JSON reader can load the file), UTF-8."""
    text = json.dumps(obj, indent=indent, ensure_ascii=False, allow_nan=False) + "\n"
    atomic_write_text(path, text, mode)


def remove_stale_temps(path: Path) -> list[Path]:
    """Delete leftover temp files of ``path``. Only safe when no writer of ``path`` is active."""
    path = Path(path)
    removed: list[Path] = []
    if not path.parent.is_dir():
        return removed
    prefix = temp_prefix(path)
    # startswith/endswith rather than glob: a path may hold glob metacharacters such as '['.
    for name in os.listdir(path.parent):
        if name.startswith(prefix) and name.endswith(".tmp"):
            stale = path.parent / name
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()
                removed.append(stale)
    return removed
