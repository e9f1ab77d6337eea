"""migrate-state --ask-broker: a position in no order file is attributed by exactly one user's
broker holdings, fetched by a process of that user (real paper broker, real client)."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest

from fleet.cli import main
from kitefleet.clock import IST
from kitefleet.state import StateStore
from tests.support.broker import RunningBroker, broker_factory, clock_file  # noqa: F401 (fixture)
from tests.support.homes import make_home, write_env


def test_ask_broker_attributes_by_holdings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str],
                                           broker_factory: Callable[..., RunningBroker]) -> None:  # noqa: F811
    home = make_home(tmp_path / "home")
    clock = clock_file(tmp_path / "clock", datetime(2026, 11, 25, 10, 0, tzinfo=IST), 1e-6)
    broker = broker_factory(home, clock=clock, symbols=["INFY", "TCS"])
    write_env(home, "Som", KITE_ROOT=broker.url)
    write_env(home, "Sai", KITE_ROOT=broker.url)
    broker.reload_accounts()
    broker.kite("Som").place_order(variety="regular", exchange="NSE", tradingsymbol="INFY", transaction_type="BUY",
                                   quantity=3, product="CNC", order_type="MARKET", market_protection=-1)
    legacy = tmp_path / "trading_state.json"
    legacy.write_text(json.dumps({"meta": {}, "positions": {
        "INFY": {"type": "LONG", "quantity": 3, "product_type": "CNC"},
        "TCS": {"type": "LONG", "quantity": 1, "product_type": "CNC"}}}))
    monkeypatch.setenv("KITEFLEET_HOME", str(home.root))
    monkeypatch.setenv("TRADER_CLOCK", clock)
    rc = main(["migrate-state", "--legacy", str(legacy), "--ask-broker", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert rc == 0, report
    assert report["written"] == 1 and report["unassigned"] == 1 and report["conservation_ok"]
    som = StateStore(home, "Som", "paper").read()
    assert som["positions"]["INFY"]["legacy_migration"]["attributed_by"] == "broker"
    assert "no asked user's holdings" in report["unassigned_positions"]["TCS"]["reason"]
    assert not home.state_file("Sai").exists()
