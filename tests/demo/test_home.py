"""demo/home.py: where the demo refuses to make its home (live state files, the project's own folders)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from demo.home import DemoRefused, check_location, live_findings
from kitefleet.home import PROJECT_ROOT

pytestmark = pytest.mark.supervisord


def test_live_state_files_count_too(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "trading_state_Som.json").write_text(json.dumps({"mode": "live"}))
    (tmp_path / "data" / "trading_state_Sai.json").write_text(json.dumps({"mode": "paper"}))
    found = live_findings(tmp_path)
    assert len(found) == 1 and "trading_state_Som.json" in found[0]


def test_never_the_project_or_its_runtime_folders() -> None:
    for root in (PROJECT_ROOT, PROJECT_ROOT / "data" / "x", PROJECT_ROOT / "env", PROJECT_ROOT.parent):
        with pytest.raises(DemoRefused):
            check_location(root)
    check_location(PROJECT_ROOT / "demo-home")
