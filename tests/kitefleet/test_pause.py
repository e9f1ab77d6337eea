"""kitefleet/pause.py: a hand-written pause flag is shown without its terminal escapes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kitefleet import pause as flag
from kitefleet.home import Home
from tests.support.homes import make_home, write_env


@pytest.fixture
def home(tmp_path: Path) -> Home:
    home = make_home(tmp_path / "home")
    write_env(home, "Som", api_key="somkey00001")
    write_env(home, "Sai", api_key="saikey00002")
    return home


def test_a_hand_written_pause_flag_is_shown_without_its_escapes(home: Home) -> None:
    flag.pause_file(home, "Som").parent.mkdir(parents=True, exist_ok=True)
    flag.pause_file(home, "Som").write_text(json.dumps({"user": "Som", "reason": "a\x1b[31mred\nline"}))
    assert flag.describe(flag.pause_info(home, "Som")) == "paused since ? (a [31mred line)"
