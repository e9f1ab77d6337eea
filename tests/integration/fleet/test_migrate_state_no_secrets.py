"""Issue 13 bug 3: ``migrate-state`` read every user's env file in the orchestrator (``_user_mode``,
``conservation`` and ``_askable`` called ``load_settings``), against the rule that a process holds
at most one user's secrets. It now learns each user's mode from a process of that user (whoami).

The check is real, not mocked: a Python audit hook sees every ``open`` this (orchestrator) process
makes while the real command runs, and none may name a file under ``env/``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from fleet.cli import main
from kitefleet.exitcodes import ExitCode
from kitefleet.home import Home
from kitefleet.state import StateStore
from tests.support.homes import make_home, write_env

#: Paths opened by this process while ``_WATCH`` is set (an audit hook cannot be removed, so it is
#: installed once and switched on and off).
_OPENED: list[str] = []
_WATCH: list[bool] = []


def _hook(event: str, args: tuple[Any, ...]) -> None:
    if _WATCH and event == "open" and args and isinstance(args[0], (str, bytes, Path)):
        _OPENED.append(str(args[0]))


_INSTALLED: list[bool] = []


def _watch_opens() -> None:
    if not _INSTALLED:
        sys.addaudithook(_hook)
        _INSTALLED.append(True)
    _OPENED.clear()
    _WATCH.append(True)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Home:
    h = make_home(tmp_path / "home")
    write_env(h, "Sai", mode="live")
    write_env(h, "Som", mode="paper")
    write_env(h, "Ravi", mode="paper")
    monkeypatch.setenv("KITEFLEET_HOME", str(h.root))
    return h


def test_migrate_state_loads_no_settings_in_the_orchestrator(home: Home, legacy_copy: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    # Ravi already has a state file: conservation must learn his mode too (it used load_settings).
    with StateStore(home, "Ravi", "paper").transaction() as state:
        state.setdefault("positions", {})
    argv = ["migrate-state", "--legacy", str(legacy_copy / "trading_state.json"),
            "--orders-dir", str(legacy_copy / "Current_Orders"), "--json"]
    _watch_opens()
    try:
        rc = main(argv)
    finally:
        _WATCH.clear()
    report = json.loads(capsys.readouterr().out)
    assert rc == ExitCode.OK, report
    env_dir = str(home.env_dir)
    opened_env = sorted({p for p in _OPENED if p.startswith(env_dir)})
    assert opened_env == [], f"the orchestrator opened env files: {opened_env}"
    assert _OPENED, "the audit hook saw no open at all (the test would prove nothing)"
    # The modes still come out right: told by each user's own process.
    assert {u["user"]: u["mode"] for u in report["users"]} == {"Sai": "live", "Som": "paper"}
    assert StateStore(home, "Sai", "live").read()["mode"] == "live"
    assert report["conservation_ok"] is True


def test_migrate_state_with_a_broken_env_file_leaves_its_positions_unassigned(
        home: Home, legacy_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    home.env_file("Sai").write_text("TRADER_MODE=paper\n", encoding="utf-8")  # no key: Sai's process refuses
    rc = main(["migrate-state", "--legacy", str(legacy_copy / "trading_state.json"),
               "--orders-dir", str(legacy_copy / "Current_Orders"), "--json"])
    report = json.loads(capsys.readouterr().out)
    assert rc == ExitCode.OK, report
    reasons = {t: i["reason"] for t, i in report["unassigned_positions"].items()}
    assert "Sai has no valid env file: env/Sai.env: missing required key" in reasons["ABCLTD"]
    assert not home.state_file("Sai").exists()
