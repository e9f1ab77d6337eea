"""The intent protocol with real worker processes killed at each point: one broker write per intent."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from kitefleet.home import Home
from kitefleet.state import StateStore
from kitefleet.ticks import nse_tick_size, round_to_tick
from tests.support.broker import RunningBroker, broker_factory, clock_file  # noqa: F401 (fixture)
from tests.support.jobs import MARKET_OPEN, last_json, paper_home, point_users_at, run_job
from workers.intents import SENT


def gtt(trigger_id: int, symbol: str, triggers: list[float], quantity: int) -> dict[str, Any]:
    return {"id": trigger_id, "status": "active", "type": "single",
            "condition": {"exchange": "NSE", "tradingsymbol": symbol, "trigger_values": triggers},
            "orders": [{"tradingsymbol": symbol, "quantity": quantity, "price": triggers[0]}]}


# --- the fault hook end to end: real worker processes, real paper broker ---------------------
@pytest.fixture
def market(tmp_path: Path, broker_factory: Callable[..., RunningBroker]  # noqa: F811
           ) -> tuple[Home, RunningBroker, str, dict[str, float]]:
    home = paper_home(tmp_path / "home")
    value = clock_file(tmp_path / "clock", MARKET_OPEN)
    broker = broker_factory(home, clock=value, symbols=["INFY", "TCS"])
    point_users_at(home, broker.url)
    ltp = {k.split(":")[1]: v["last_price"] for k, v in broker.kite("Som").ltp("NSE:INFY", "NSE:TCS").items()}
    return home, broker, value, ltp


def _place_args(ltp: dict[str, float]) -> list[str]:
    price = ltp["INFY"] * 0.97  # rests OPEN: nothing fills meanwhile
    price = round_to_tick(price, nse_tick_size(price), "floor")
    trigger = ltp["TCS"] * 1.2  # a BUY GTT far above the market
    trigger = round_to_tick(trigger, nse_tick_size(trigger), "ceil")
    return ["--symbol", "INFY", "--price", f"{price:.2f}", "--gtt-symbol", "TCS", "--gtt-trigger",
            f"{trigger:.2f}", "--gtt-last-price", f"{ltp['TCS']:.2f}"]


@pytest.mark.parametrize("fault", ["after_intent", "after_send", "after_intent:TCS", "after_send:TCS"])
def test_a_kill_at_any_point_leaves_exactly_one_broker_write_per_intent(market, fault: str) -> None:
    home, broker, value, ltp = market
    args = _place_args(ltp)
    killed = run_job(home, "Som", "place_one", *args, env={"TRADER_CLOCK": value, "KITEFLEET_FAULT": fault})
    assert killed.returncode == -9, killed.stderr  # SIGKILL: no cleanup ran
    assert "fault injection: SIGKILL at " + fault.split(":")[0] in (
        home.user_logs_dir("Som") / "place_one.log").read_text()

    rerun = run_job(home, "Som", "place_one", *args, env={"TRADER_CLOCK": value})
    assert rerun.returncode == 0, rerun.stderr
    out = last_json(rerun.stdout)
    killed_item = "gtt" if fault.endswith(":TCS") else "order"
    # Killed after the intent: nothing reached the broker, so the rerun sends. Killed after the
    # send: the rerun finds it (order by tag, GTT by symbol/trigger/quantity) and sends nothing.
    assert out[killed_item]["sent_now"] is fault.startswith("after_intent")
    if killed_item == "gtt":
        assert out["order"]["sent_now"] is False  # finished before the kill
    again = run_job(home, "Som", "place_one", *args, env={"TRADER_CLOCK": value})
    assert again.returncode == 0, again.stderr
    assert last_json(again.stdout)["order"]["id"] == out["order"]["id"]
    assert last_json(again.stdout)["gtt"]["id"] == out["gtt"]["id"]

    kite = broker.kite("Som")
    orders = [o for o in kite.orders() if o.get("tag") == out["order"]["tag"]]
    assert [o["order_id"] for o in orders] == [out["order"]["id"]]
    assert len(kite.orders()) == 1
    gtts = [g for g in kite.get_gtts() if g["condition"]["tradingsymbol"] == "TCS"]
    assert [str(g["id"]) for g in gtts] == [out["gtt"]["id"]]
    posts = [r for r in broker.audit() if r["method"] == "POST" and r["path"] in ("/orders/regular", "/gtt/triggers")]
    assert len(posts) == 2  # one order, one GTT, ever
    state = StateStore(home, "Som", "paper").read()
    assert {i["status"] for i in state["intents"].values()} == {SENT}
