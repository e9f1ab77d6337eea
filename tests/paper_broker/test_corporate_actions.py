"""Corporate actions on the paper broker: a scenario's split or bonus drops the price by its ratio
at the ex-date's open, disables the symbol's active GTTs then, and credits the holders' new shares
(same cost, lower average) on the credit day; a delisting cancels the GTTs; a bad ratio is a
scenario error."""

from __future__ import annotations

from pathlib import Path

import pytest

from kitefleet.sim.scenario import ScenarioError, ScenarioSet
from paper_broker.corporate import AdjustedMarket
from paper_broker.engine import OrderEngine
from tests.paper_broker.test_engine import FRI, INFY, MON, THU, TUE, Rig, at, gtt


@pytest.mark.parametrize(("action", "fragment"), [
    ({"kind": "split", "ratio": 0}, "greater than 0"),
    ({"kind": "split", "ratio": -2}, "greater than 0"),
    ({"kind": "bonus", "ratio": "2"}, "greater than 0"),
    ({"kind": "split", "ratio": 1}, "changes nothing"),
    ({"kind": "merger", "ratio": 2}, "kind"),
    ({"kind": "split", "ratio": 2, "ex_date": "tomorrow"}, "ex_date"),
    ({"kind": "split", "ratio": 2, "credit_sessions": -1}, "credit_sessions"),
])
def test_a_bad_action_is_a_scenario_error_naming_the_entry(action: dict[str, object], fragment: str) -> None:
    entry = {"symbol": "INFY", "ex_date": "2026-11-24", **action}
    with pytest.raises(ScenarioError, match=fragment) as info:
        ScenarioSet.from_json({"actions": [entry]}, source="scenario file s.json")
    assert "s.json: actions[0] (INFY)" in str(info.value)


def _split_rig(tmp_path: Path, **extra: object) -> tuple[Rig, AdjustedMarket]:
    rig = Rig(tmp_path, at(MON, "10:00:30"))
    actions = ScenarioSet.from_json({"actions": [{"symbol": "INFY", "ex_date": TUE.isoformat(), "kind": "split",
                                                  "ratio": 2, **extra}]}).actions
    market = AdjustedMarket(rig.market, actions, rig.calendar)
    rig.engine = OrderEngine(rig.db, market, rig.calendar, rig.clock)
    return rig, market


def test_a_split_while_held_disables_the_gtt_and_credits_the_shares_on_the_credit_day(tmp_path: Path) -> None:
    rig, market = _split_rig(tmp_path)
    assert market.ltp(INFY, at(MON, "10:00")) == 3000.0  # before the ex-date: the unadjusted level
    rig.place(order_type="MARKET", market_protection=-1, quantity=10)
    stop = rig.engine.place_gtt(rig.som, gtt("single", [2800], 3000, [("SELL", 2790)]))["trigger_id"]
    other = rig.engine.place_gtt(rig.som, gtt("single", [2800], 3000, [("SELL", 2790)], symbol="TCS"))["trigger_id"]
    rig.move(at(TUE, "00:00:01"))
    assert rig.engine.get_gtt(rig.som, stop)["status"] == "disabled"
    assert rig.engine.get_gtt(rig.som, other)["status"] == "active"  # another symbol
    rig.move(at(TUE, "10:00"))
    assert market.ltp(INFY, at(TUE, "10:00")) == 1500.0 and market.prev_close(INFY, TUE) == 1500.0
    assert (rig.holding()["t1_quantity"], rig.holding()["average_price"]) == (10, 3000.0)
    rig.move(at(THU, "10:00"))  # WED is a holiday: the credit day is two sessions on, FRI
    assert (rig.holding()["quantity"], rig.holding()["average_price"]) == (10, 3000.0)
    rig.move(at(FRI, "09:00"))
    h = rig.holding()
    assert (h["quantity"], h["average_price"]) == (20, 1500.0)
    rig.move(at(FRI, "10:00"))
    assert rig.engine.holdings(rig.som)[0]["quantity"] == 20  # credited once


def test_a_delisting_cancels_the_symbols_gtts(tmp_path: Path) -> None:
    rig = Rig(tmp_path, at(MON, "10:00:30"))
    actions = ScenarioSet.from_json({"actions": [{"symbol": "INFY", "ex_date": TUE.isoformat(),
                                                  "kind": "delist"}]}).actions
    rig.engine = OrderEngine(rig.db, AdjustedMarket(rig.market, actions, rig.calendar), rig.calendar, rig.clock)
    tid = rig.engine.place_gtt(rig.som, gtt("single", [1400], 1500, [("BUY", 1400)]))["trigger_id"]
    rig.move(at(TUE, "09:00"))
    assert rig.engine.get_gtt(rig.som, tid)["status"] == "cancelled"


def test_an_ex_date_that_is_not_a_trading_day_is_refused(tmp_path: Path) -> None:
    rig = Rig(tmp_path, at(MON, "10:00:30"))
    actions = ScenarioSet.from_json({"actions": [{"symbol": "INFY", "ex_date": "2026-11-28", "kind": "bonus",
                                                  "ratio": 1.5}]}).actions
    with pytest.raises(ScenarioError, match="not an NSE trading day"):
        AdjustedMarket(rig.market, actions, rig.calendar)
