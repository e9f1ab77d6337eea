"""migrate-state's refusals of hostile legacy files that need no worker process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kitefleet.exitcodes import ExitCode
from kitefleet.home import Home
from tests.support.homes import make_home, write_env
from tests.support.legacy import migrate, snapshot

POSITION = {"type": "LONG", "entry_price": 100.0, "quantity": 5, "product_type": "CNC"}


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Home:
    h = make_home(tmp_path / "home")
    write_env(h, "Som", api_key="somkey00001")
    write_env(h, "Sai", api_key="saikey00002")
    monkeypatch.setenv("KITEFLEET_HOME", str(h.root))
    return h


def _legacy_tree(root: Path, state_text: str) -> Path:
    """A legacy tree: trading_state.json as given; Som's orders name INFY and TCS, Sai's WIPRO."""
    (root / "Current_Orders" / "Som").mkdir(parents=True)
    (root / "Current_Orders" / "Sai").mkdir(parents=True)
    (root / "Current_Orders" / "Som" / "orders_Som_1.json").write_text(
        json.dumps({"orders": [{"ticker": "INFY"}, {"ticker": "TCS"}]}))
    (root / "Current_Orders" / "Sai" / "orders_Sai_1.json").write_text(json.dumps({"orders": [{"ticker": "WIPRO"}]}))
    (root / "trading_state.json").write_text(state_text)
    return root


def test_ticker_twice_in_one_json_object_is_refused_not_silently_dropped(
        home: Home, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """README, migrate-state: positions are split "never guessed", and the conservation check
    promises every legacy position appears exactly once. JSON's last-key-wins dropped the first
    INFY before the check could count it, and the check said OK."""
    first = json.dumps(dict(POSITION, quantity=10))
    second = json.dumps(dict(POSITION, quantity=3))
    legacy = _legacy_tree(tmp_path / "legacy", f'{{"positions": {{"INFY": {first}, "INFY": {second}}}}}')
    before = snapshot(home.root)
    rc, report, err = migrate(legacy, capsys)
    assert rc == ExitCode.CONFIG, report
    assert "key 'INFY' appears twice in one JSON object" in err and len(err.strip().splitlines()) == 1
    assert snapshot(home.root) == before


@pytest.mark.parametrize("ticker", ["../../../etc/x", "INFY\n", "infy", "NSE:INFY", "\x1b[2JX", "A" * 21, ""])
def test_ticker_not_in_nse_symbol_form_is_refused_before_anything_is_written(
        home: Home, tmp_path: Path, capsys: pytest.CaptureFixture[str], ticker: str) -> None:
    legacy = _legacy_tree(tmp_path / "legacy", json.dumps({"positions": {ticker: POSITION, "INFY": POSITION}}))
    before = snapshot(home.root)
    rc, _, err = migrate(legacy, capsys)
    assert rc == ExitCode.CONFIG
    assert "are not NSE trading symbols" in err and len(err.strip().splitlines()) == 1
    assert "\x1b" not in err
    assert snapshot(home.root) == before
