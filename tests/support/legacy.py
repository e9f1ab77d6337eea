"""Legacy (pre-kitefleet) files for the migration tests: the composed fixture tree and the
``migrate-state`` helpers; ``legacy_copy`` is made a fixture for every test by tests/conftest.py."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from fleet.cli import main

FIXTURES = Path(__file__).parent / "data"


@pytest.fixture
def legacy_copy(tmp_path: Path) -> Path:
    """A private copy of the composed legacy tree (trading_state.json, Current_Orders/...)."""
    dest = tmp_path / "legacy"
    shutil.copytree(FIXTURES / "legacy", dest)
    return dest


def migrate(legacy: Path, capsys: pytest.CaptureFixture[str], *extra: str,
            orders: bool = True) -> tuple[int, dict[str, Any], str]:
    argv = ["migrate-state", "--legacy", str(legacy / "trading_state.json"), "--json", *extra]
    if orders:
        argv += ["--orders-dir", str(legacy / "Current_Orders")]
    rc = main(argv)
    captured = capsys.readouterr()
    out = captured.out
    return rc, (json.loads(out) if out.strip().startswith("{") else {}), captured.err


def snapshot(root: Path) -> dict[str, bytes]:
    # Each user's mode is told by a process of that user (whoami), which logs that it ran and
    # records its key's fingerprint (kitefleet.key_fingerprint).
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and "locks" not in p.parts and p.name not in ("whoami.log", "key_fingerprint.json")}
