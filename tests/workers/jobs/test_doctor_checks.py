"""workers/jobs/doctor_checks.py on plain data: the disk check, coverage and drift rules."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.support.homes import make_home
from workers.gtt import coverage_gaps as gtt_coverage
from workers.jobs.doctor_checks import position_drift
from workers.portfolio import AccountSnapshot, held_quantities


def test_disk_check(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil
    from collections import namedtuple

    from fleet.commands.doctor import check_disk

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda _p: usage(100 << 30, 99 << 30, 1 << 26))
    r = check_disk(make_home(tmp_path / "h"))
    assert r["status"] == "fail" and r["fix"]


def test_pure_coverage_and_drift_rules() -> None:
    holdings: list[dict[str, Any]] = [{"tradingsymbol": "A", "quantity": 5, "t1_quantity": 5},
                                      {"tradingsymbol": "B", "quantity": 3, "t1_quantity": 0}]
    positions = {"net": [{"tradingsymbol": "C", "product": "CNC", "quantity": 2},
                         {"tradingsymbol": "A", "product": "CNC", "quantity": -10},
                         {"tradingsymbol": "D", "product": "MIS", "quantity": 7}]}
    held = held_quantities(AccountSnapshot(holdings, positions["net"]))
    assert held == {"B": 3, "C": 2}  # A was sold out of holdings today; MIS is not a holding
    stop = {"trigger_values": [90.0], "last_price": 100.0, "exchange": "NSE"}
    gtts = [{"status": "active", "type": "single", "condition": {"tradingsymbol": "B", **stop},
             "orders": [{"transaction_type": "SELL", "quantity": 2}]},
            {"status": "triggered", "type": "single", "condition": {"tradingsymbol": "C", **stop},
             "orders": [{"transaction_type": "SELL", "quantity": 2}]}]
    gaps = gtt_coverage(held, gtts)
    assert set(gaps) == {"B", "C"} and "covers only 2" in gaps["B"]
    # a take-profit (trigger above the price) is no stop; an OCO of SELL legs is
    take_profit = {"status": "active", "type": "single",
                   "condition": {"tradingsymbol": "C", "trigger_values": [120.0], "last_price": 100.0},
                   "orders": [{"transaction_type": "SELL", "quantity": 2}]}
    assert "C" in gtt_coverage(held, [take_profit])
    oco = {"status": "active", "type": "two-leg",
           "condition": {"tradingsymbol": "C", "trigger_values": [90.0, 120.0], "last_price": 100.0},
           "orders": [{"transaction_type": "SELL", "quantity": 2}, {"transaction_type": "SELL", "quantity": 2}]}
    assert "C" not in gtt_coverage(held, [oco])
    state = {"B": {"quantity": 3}, "C": {"quantity": 2, "exit_price": 10.0}, "E": {"quantity": 1}}
    assert position_drift(state, held) == ["C: state 0, broker 2", "E: state 1, broker 0"]


def test_doctor_lists_a_bot_stop_on_an_unowned_holding_and_what_the_bot_leaves_alone() -> None:
    from workers.jobs.doctor_checks import ownership_check
    from workers.portfolio import manage_scope

    account = AccountSnapshot([{"tradingsymbol": "INFY", "exchange": "NSE", "quantity": 10, "last_price": 100.0},
                               {"tradingsymbol": "SBIN", "exchange": "NSE", "quantity": 40, "last_price": 50.0}], [])
    state = {"ledger": {"lots": {"INFY": [{"quantity": 10, "source": "entry"}]}},
             "stops": {"INFY": {"gtt_id": 1}, "SBIN": {"gtt_id": 2, "stop": 45.0}}}
    held = held_quantities(account)
    row = ownership_check(state, manage_scope(state, held, "own"), account)
    assert row["status"] == "warn"
    assert "1 owned position(s) worth 1,000.00" in row["detail"]
    assert "1 holding(s) the bot does not manage worth 2,000.00" in row["detail"]
    assert "SBIN: bot stop on an unowned holding: run adopt or release (GTT 2 left as it is)" in row["detail"]
    assert "adopt" in row["fix"] and "release" in row["fix"]
    state["stops"].pop("SBIN")
    assert ownership_check(state, manage_scope(state, held, "own"), account)["status"] == "ok"
    assert ownership_check(state, manage_scope(state, held, "all"), account)["status"] == "warn"
