"""The atomic-write recipe: content, modes, temp files, failure cleanup."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from kitefleet.atomic import (
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    remove_stale_temps,
    temp_glob,
)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_write_replace_and_mode(tmp_path: Path) -> None:
    target = tmp_path / "a.json"
    atomic_write_json(target, {"x": 1, "name": "Sömé"})
    assert json.loads(target.read_text(encoding="utf-8")) == {"x": 1, "name": "Sömé"}
    assert _mode(target) == 0o600
    inode = target.stat().st_ino
    atomic_write_text(target, "hello\n", mode=0o640)
    assert target.read_text() == "hello\n"
    assert _mode(target) == 0o640
    assert target.stat().st_ino != inode  # replaced, never rewritten in place
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]


def test_creates_missing_parent_private(tmp_path: Path) -> None:
    target = tmp_path / "Som" / "heartbeat.json"
    atomic_write_json(target, {"ok": True})
    assert json.loads(target.read_text()) == {"ok": True}
    assert _mode(target.parent) == 0o700


def test_failure_leaves_old_file_and_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "s.json"
    atomic_write_json(target, {"v": 1})
    with pytest.raises(ValueError):
        atomic_write_json(target, {"v": float("nan")})  # strict JSON: refused before any write
    with pytest.raises(TypeError):
        atomic_write_bytes(target, "not bytes")  # type: ignore[arg-type]
    assert json.loads(target.read_text()) == {"v": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.json"]


def test_remove_stale_temps_only_touches_its_own(tmp_path: Path) -> None:
    target = tmp_path / "trading_state_Som.json"
    mine = [tmp_path / ".trading_state_Som.json.abc123.tmp", tmp_path / ".trading_state_Som.json.bak.tmp"]
    others = [
        tmp_path / ".trading_state_Som2.json.abc.tmp",
        tmp_path / ".trading_state_Sai.json.abc.tmp",
        tmp_path / "trading_state_Som.json.bak",
        tmp_path / ".trading_state_Som.json.abc.tmpx",
    ]
    for p in mine + others:
        p.write_text("x")
    assert sorted(remove_stale_temps(target)) == sorted(mine)
    assert all(p.exists() for p in others)
    assert temp_glob(target) == ".trading_state_Som.json.*.tmp"
    assert remove_stale_temps(tmp_path / "missing" / "x.json") == []


def test_temp_name_pattern_while_writing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The temp file sits beside the target and matches the documented pattern."""
    target = tmp_path / "trading_state_Som.json"
    seen: list[str] = []
    real_replace = os.replace

    def spy(src: str, dst: str) -> None:
        seen.append(Path(src).name)
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    atomic_write_text(target, "{}")
    assert len(seen) == 1
    assert seen[0].startswith(".trading_state_Som.json.") and seen[0].endswith(".tmp")
    assert Path(tmp_path / seen[0]).parent == target.parent
