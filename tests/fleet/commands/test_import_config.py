"""import-config on a legacy-style config.ini with three users, one incomplete."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleet.cli import main
from kitefleet.exitcodes import ExitCode
from kitefleet.home import Home
from kitefleet.settings import load_settings
from tests.support import DATA
from tests.support.homes import make_home

FIXTURES = DATA


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Home:
    h = make_home(tmp_path / "home")
    monkeypatch.setenv("KITEFLEET_HOME", str(h.root))
    return h


def test_existing_file_kept_without_force(home: Home, capsys: pytest.CaptureFixture[str]) -> None:
    home.env_dir.mkdir(exist_ok=True)
    mine = "TRADER_MODE=paper\nKITE_API_KEY=mine\nKITE_API_SECRET=mine\n"
    home.env_file("Sai").write_text(mine)
    home.env_file("Sai").chmod(0o600)
    assert main(["import-config", str(FIXTURES / "config.ini")]) == ExitCode.CONFIG
    assert "use --force" in capsys.readouterr().out
    assert home.env_file("Sai").read_text() == mine
    assert main(["import-config", str(FIXTURES / "config.ini"), "--force"]) == ExitCode.CONFIG
    assert "overwritten" in capsys.readouterr().out
    assert load_settings(home, "Sai").mode == "live"


def test_all_complete_is_exit_zero(home: Home, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ini = tmp_path / "config.ini"
    ini.write_text("[DEFAULT]\nmax_cnc_positions = abc\n[API_CREDENTIALS_Tinks]\napi_key = k1\napi_secret = s1\n")
    assert main(["import-config", str(ini)]) == ExitCode.OK
    out = capsys.readouterr().out
    assert "must be an integer" in out  # the bad default is reported, not imported
    assert "MAX_NEW_ENTRIES_PER_DAY" not in load_settings(home, "Tinks").file_keys


@pytest.mark.parametrize("text", ["not an ini at all\n", "[API_CREDENTIALS_A]\napi_key=1\napi_key=2\n",
                                  "[Other]\nx=1\n"])
def test_unusable_ini_is_a_config_error(home: Home, tmp_path: Path, text: str) -> None:
    ini = tmp_path / "config.ini"
    ini.write_text(text)
    assert main(["import-config", str(ini)]) == ExitCode.CONFIG
    assert not home.env_dir.exists() or not list(home.env_dir.iterdir())


def test_invalid_section_user_name_is_skipped(home: Home, tmp_path: Path) -> None:
    ini = tmp_path / "config.ini"
    ini.write_text("[API_CREDENTIALS_../evil]\napi_key = k\napi_secret = s\n[API_CREDENTIALS_Ok]\n"
                   "api_key = k2\napi_secret = s2\n")
    assert main(["import-config", str(ini)]) == ExitCode.CONFIG
    assert sorted(p.name for p in home.env_dir.iterdir()) == ["Ok.env"]
