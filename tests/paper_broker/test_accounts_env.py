"""Accounts come from paper env files only: a live user's file is skipped on its TRADER_MODE line
alone, before the settings loader could parse its secret or log anything about it."""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path

import pytest

from kitefleet.clock import IST
from kitefleet.home import Home
from kitefleet.settings import Settings
from paper_broker import auth
from paper_broker.auth import Accounts, env_file_mode
from paper_broker.db import Database
from tests.support.homes import make_home, write_env

NOW = datetime(2026, 11, 25, 10, 0, tzinfo=IST)


def _write(home: Home, user: str, data: str | bytes) -> Path:
    path = home.env_file(user)
    if isinstance(data, bytes):
        path.write_bytes(data)
    else:
        path.write_text(data, encoding="utf-8")
    path.chmod(0o600)
    return path


@pytest.mark.parametrize(("text", "mode"), [
    ("TRADER_MODE=paper\nKITE_API_KEY=k\n", "paper"),
    ("# comment\nexport TRADER_MODE = 'live'\nKITE_API_SECRET=s\n", "live"),
    ('KITE_API_KEY=k\nTRADER_MODE="paper"\nTRADER_MODE=live\n', "live"),  # the last wins, as with dotenv
    ("TRADER_MODE= paper \n", "paper"),
    ("TRADER_MODE=papr\n", "papr"),
    ("KITE_API_KEY=k\nKITE_API_SECRET=s\n", None),
    ("", None),
    (b"TRADER_MODE=live\n\xff\xfe\n", None),  # undecodable: the loader would refuse it too
])
def test_env_file_mode(tmp_path: Path, text: str | bytes, mode: str | None) -> None:
    home = make_home(tmp_path / "home")
    assert env_file_mode(_write(home, "Som", text)) == mode


def test_env_file_mode_of_a_missing_file_is_none(tmp_path: Path) -> None:
    assert env_file_mode(tmp_path / "gone.env") is None


def test_live_and_unreadable_files_are_skipped_before_validation(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    home = make_home(tmp_path / "home")
    write_env(home, "Som")
    _write(home, "Exp", "export TRADER_MODE=paper\nKITE_API_KEY=keyexp0001\nKITE_API_SECRET=secret-exp\n")
    write_env(home, "Liz", mode="live", api_secret="LIVE-SECRET-liz")
    # A live file full of problems the settings loader would spell out (with values it shows).
    write_env(home, "Max", mode="live", api_key="live key with spaces", api_secret="LIVE-SECRET-max",
              KITE_API_SECRETT="LIVE-SECRET-typo", PAPER_STARTING_CASH=5, file_mode=0o644)
    _write(home, "Nomode", "KITE_API_KEY=keynomode\nKITE_API_SECRET=LIVE-SECRET-nomode\n")
    _write(home, "Junk", b"TRADER_MODE=paper\n\xff\xfe\xfd\n")

    loaded: list[str] = []
    real = auth.load_settings

    def spy(home_: Home, user: str) -> Settings:
        loaded.append(user)
        return real(home_, user)

    monkeypatch.setattr(auth, "load_settings", spy)
    accounts = Accounts(Database(tmp_path / "paper.db"), home)
    with caplog.at_level(logging.DEBUG, logger="paper_broker"):
        result = accounts.reload(NOW)

    assert sorted(loaded) == ["Exp", "Som"], "only paper files reach the settings loader"
    assert sorted(result.added) == ["Exp", "Som"] and result.active == 2
    assert set(result.skipped) == {"Liz", "Max", "Nomode", "Junk"}
    lines = {r.getMessage() for r in caplog.records}
    assert "env file of Liz skipped (live mode)" in lines
    assert "env file of Max skipped (live mode)" in lines
    assert "env file of Nomode skipped (unreadable, or no TRADER_MODE line)" in lines
    assert "env file of Junk skipped (unreadable, or no TRADER_MODE line)" in lines
    about_max = [line for line in lines if "Max" in line]
    assert about_max == ["env file of Max skipped (live mode)"]
    text = "\n".join(lines)
    for leaked in ("LIVE-SECRET", "live key with spaces", "KITE_API_SECRETT", "PAPER_STARTING_CASH",
                   "readable by group"):
        assert leaked not in text


def test_a_paper_file_that_does_not_validate_is_still_reported(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    home = make_home(tmp_path / "home")
    _write(home, "Typo", "TRADER_MODE=paper\nKITE_API_KEYY=x\nKITE_API_SECRET=secret-typo\n")
    accounts = Accounts(Database(tmp_path / "paper.db"), home)
    with caplog.at_level(logging.DEBUG, logger="paper_broker"):
        result = accounts.reload(NOW)
    assert result.skipped == ["Typo"] and result.active == 0
    (line,) = [r.getMessage() for r in caplog.records if "Typo" in r.getMessage()]
    assert line.startswith("skipping env file of Typo:") and "KITE_API_KEYY" in line
    assert "secret-typo" not in line
