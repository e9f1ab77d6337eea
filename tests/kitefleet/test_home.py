"""kitefleet/home.py: paths of a home, and a home that is missing or not a folder is refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from kitefleet.errors import ConfigError
from kitefleet.home import PROJECT_ROOT as HOME_PROJECT_ROOT
from kitefleet.home import Home


# --- 4. a KITEFLEET_HOME that is not a folder ------------------------------------------------------
def test_home_resolve_refuses_a_missing_or_non_folder_home(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(ConfigError, match=r"KITEFLEET_HOME=.*nope is not a folder; create it or unset"):
        Home.resolve({"KITEFLEET_HOME": str(missing)})
    a_file = tmp_path / "file"
    a_file.write_text("")
    with pytest.raises(ConfigError, match="is not a folder"):
        Home.resolve({"KITEFLEET_HOME": str(a_file)})
    assert not missing.exists()
    assert Home.resolve({"KITEFLEET_HOME": str(tmp_path)}).root == tmp_path.resolve()
    assert Home.resolve({}).root == HOME_PROJECT_ROOT == Home.resolve({"KITEFLEET_HOME": ""}).root


def test_unused_home_helpers() -> None:
    assert Home(Path("/x")).state_file("Som") == Path("/x/data/trading_state_Som.json")
