"""migrate-state refusals that stop before any worker process is asked for a user's mode."""

from __future__ import annotations

from pathlib import Path

import pytest

from kitefleet.exitcodes import ExitCode
from kitefleet.home import Home
from tests.support import DATA
from tests.support.homes import make_home, write_env
from tests.support.legacy import migrate, snapshot

FIXTURES = DATA


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Home:
    h = make_home(tmp_path / "home")
    write_env(h, "Sai", mode="live")
    write_env(h, "Som", mode="paper")
    write_env(h, "Ravi", mode="paper")  # a user with no legacy positions: must stay untouched
    monkeypatch.setenv("KITEFLEET_HOME", str(h.root))
    return h


def test_corrupt_legacy_file_is_a_config_error_and_writes_nothing(
        home: Home, legacy_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (legacy_copy / "trading_state.json").write_bytes((FIXTURES / "legacy" / "trading_state_corrupt.json").read_bytes())
    before = snapshot(home.root)
    rc, _, err = migrate(legacy_copy, capsys)
    assert rc == ExitCode.CONFIG
    assert "not valid JSON" in err and len(err.strip().splitlines()) == 1
    assert snapshot(home.root) == before


def test_corrupt_order_file_is_a_config_error(home: Home, legacy_copy: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    (legacy_copy / "Current_Orders" / "Som" / "orders_Som_20250529_145512.json").write_text('{"orders": [')
    before = snapshot(home.root)
    rc, _, err = migrate(legacy_copy, capsys)
    assert rc == ExitCode.CONFIG and "orders_Som_20250529_145512.json" in err
    assert snapshot(home.root) == before


def test_without_orders_dir_everything_is_unassigned_and_accounted(
        home: Home, legacy_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, report, _ = migrate(legacy_copy, capsys, orders=False)
    assert rc == ExitCode.OK and report["unassigned"] == 7 and report["conservation_ok"] is True
    assert not home.state_file("Sai").exists() and not home.state_file("Som").exists()
