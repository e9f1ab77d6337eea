"""The daily report against the real paper broker: its numbers equal the broker's for a small day."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kitefleet import outbox as ob
from tests.integration.jobs.test_place_orders_daily import DAY_A, last_json, open_desk
from tests.support.broker import RunningBroker, broker_factory  # noqa: F401 (fixture)


def contract_note_charges(kite: Any, orders: list[dict[str, Any]]) -> float:
    """The broker's charges for ``orders``' fills, from its contract note."""
    note = kite.get_virtual_contract_note([
        {"order_id": o["order_id"], "exchange": "NSE", "tradingsymbol": o["tradingsymbol"],
         "transaction_type": o["transaction_type"], "variety": "regular", "product": "CNC",
         "order_type": o["order_type"], "quantity": o["filled_quantity"], "average_price": o["average_price"]}
        for o in orders])
    return round(sum(row["charges"]["total"] for row in note), 2)


def test_daily_report_numbers_equal_the_brokers(tmp_path: Path,
                                                broker_factory: Callable[..., RunningBroker]) -> None:  # noqa: F811
    desk = open_desk(tmp_path, broker_factory, {"Som": {}}, DAY_A, ["INFY", "TCS"])
    kite = desk.kite("Som")
    for symbol, side, qty in (("INFY", "BUY", 10), ("TCS", "BUY", 5), ("INFY", "SELL", 4)):
        kite.place_order("regular", exchange="NSE", tradingsymbol=symbol, transaction_type=side, quantity=qty,
                         product="CNC", order_type="MARKET", market_protection=-1)
    proc = desk.run("Som", "daily_report")
    assert proc.returncode == 0, proc.stderr
    report = last_json(proc.stdout)
    trades = kite.trades()
    assert len(report["trades"]) == len(trades) == 3
    done = [o for o in kite.orders() if o["status"] == "COMPLETE"]
    charges = contract_note_charges(kite, done)
    assert charges > 0 and report["charges"] == charges
    buy = next(t for t in trades if t["tradingsymbol"] == "INFY" and t["transaction_type"] == "BUY")
    sell = next(t for t in trades if t["tradingsymbol"] == "INFY" and t["transaction_type"] == "SELL")
    assert report["realised"] == round(4 * (sell["average_price"] - buy["average_price"]), 2)
    assert report["realised_after_charges"] == round(report["realised"] - charges, 2)
    cash = kite.margins("equity")["available"]["live_balance"]
    assert report["cash"] == round(cash, 2)
    assert {p["symbol"]: p["quantity"] for p in report["positions"]} == {"INFY": 6, "TCS": 5}
    state = desk.state("Som")
    assert state["equity_history"][DAY_A.date().isoformat()]["equity"] == report["equity"]
    reports = desk.home.user_data_dir("Som") / "reports"
    assert (reports / f"daily_{DAY_A.date()}.html").read_text().count("<svg") == 1
    event = [e for e in ob.read_events(desk.home, "Som") if e["kind"] == "daily_report"]
    assert len(event) == 1 and event[0]["attach"].endswith(".svg")
    assert json.dumps(report["charges"]) in event[0]["text"].replace(",", "")


def test_daily_report_numbers_equal_the_brokers_with_a_cancelled_entry_and_a_gtt_triggered_sell(
        tmp_path: Path, broker_factory: Callable[..., RunningBroker]) -> None:  # noqa: F811
    """A day with an order cancelled unfilled and a sell the broker sent itself when a GTT fired:
    the report counts the GTT's sell (trades, charges, realised P&L) and nothing of the cancelled one."""
    desk = open_desk(tmp_path, broker_factory, {"Som": {}}, DAY_A, ["INFY", "TCS"])
    kite = desk.kite("Som")
    for symbol, qty in (("INFY", 10), ("TCS", 5)):
        kite.place_order("regular", exchange="NSE", tradingsymbol=symbol, transaction_type="BUY", quantity=qty,
                         product="CNC", order_type="MARKET", market_protection=-1)
    ltp = kite.ltp("NSE:INFY")["NSE:INFY"]["last_price"]
    resting = kite.place_order("regular", exchange="NSE", tradingsymbol="INFY", transaction_type="BUY", quantity=3,
                               product="CNC", order_type="LIMIT", price=float(int(ltp * 0.93)))
    kite.cancel_order("regular", resting)
    tcs = kite.ltp("NSE:TCS")["NSE:TCS"]["last_price"]
    # a single GTT whose trigger sits above its last_price fires on the next minute whose high reaches it
    trigger = float(int(tcs * 0.95))
    kite.place_gtt("single", "TCS", "NSE", [trigger], float(int(tcs * 0.9)),
                   [{"exchange": "NSE", "tradingsymbol": "TCS", "transaction_type": "SELL", "quantity": 5,
                     "order_type": "LIMIT", "product": "CNC", "price": float(int(tcs * 0.93))}])
    desk.at(DAY_A.replace(minute=DAY_A.minute + 3))
    kite = desk.kite("Som")

    def gtt_sold() -> bool:
        return any(o["tradingsymbol"] == "TCS" and o["transaction_type"] == "SELL" and o["status"] == "COMPLETE"
                   for o in kite.orders())

    deadline = time.monotonic() + 30
    while not gtt_sold():
        assert time.monotonic() < deadline, f"the GTT did not fire: {kite.get_gtts()}"
        time.sleep(0.1)
    orders = kite.orders()
    assert next(o for o in orders if o["order_id"] == resting)["status"] == "CANCELLED"

    proc = desk.run("Som", "daily_report")
    assert proc.returncode == 0, proc.stderr
    report = last_json(proc.stdout)
    trades = kite.trades()
    assert len(report["trades"]) == len(trades) == 3
    filled = [o for o in orders if o["filled_quantity"]]
    charges = contract_note_charges(kite, filled)
    assert len(filled) == 3 and report["charges"] == charges
    buy = next(t for t in trades if t["tradingsymbol"] == "TCS" and t["transaction_type"] == "BUY")
    sell = next(t for t in trades if t["tradingsymbol"] == "TCS" and t["transaction_type"] == "SELL")
    assert report["realised"] == round(5 * (sell["average_price"] - buy["average_price"]), 2)
    assert report["realised_after_charges"] == round(report["realised"] - charges, 2)
    assert {p["symbol"]: p["quantity"] for p in report["positions"]} == {"INFY": 10}
