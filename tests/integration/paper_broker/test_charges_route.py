"""Charges on the wire: the unmodified kiteconnect client's ``get_virtual_contract_note`` and
``order_margins`` against one paper broker subprocess with a frozen clock. The figures are the
hand-worked ones of tests/kitefleet/test_charges.py; the shape is Kite's (the ``charges`` object of
its margins and virtual contract note samples)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
from kiteconnect import KiteConnect
from kiteconnect import exceptions as kex

from kitefleet.clock import IST
from tests.support.broker import RunningBroker, clock_file, start_broker
from tests.support.homes import make_home, write_env

NOW = datetime(2026, 11, 25, 11, 30, 0, tzinfo=IST)  # a Wednesday
FROZEN = 1e-6
CHARGE_KEYS = {"transaction_tax", "transaction_tax_type", "exchange_turnover_charge", "sebi_turnover_charge",
               "brokerage", "stamp_duty", "gst", "total"}


@pytest.fixture(scope="module")
def kite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KiteConnect]:
    root = tmp_path_factory.mktemp("charges")
    home = make_home(root / "home")
    write_env(home, "Som")
    broker: RunningBroker = start_broker(home, clock=clock_file(root / "clock", NOW, speed=FROZEN),
                                         symbols=["INFY", "SBIN"])
    yield broker.kite("Som")
    assert broker.stop() == 0


def _order(order_id: str, side: str, quantity: int, price: float, symbol: str = "SBIN") -> dict[str, Any]:
    return {"order_id": order_id, "exchange": "NSE", "tradingsymbol": symbol, "transaction_type": side,
            "variety": "regular", "product": "CNC", "order_type": "LIMIT", "quantity": quantity,
            "average_price": price}


def test_virtual_contract_note_nets_a_same_day_round_trip(kite: KiteConnect) -> None:
    # Buy 100 SBIN at 800, sell 100 at 810, both CNC, one day: intraday.
    #   buy:  brokerage min(20, 24.00) = 20; STT 0 (intraday buy); exchange 80,000 x 0.00297 % = 2.376;
    #         SEBI 0.08; stamp 80,000 x 0.003 % = 2.40; GST 18 % x (20 + 2.376 + 0.08) = 4.04208
    #   sell: brokerage 20; STT 81,000 x 0.025 % = 20.25; exchange 2.4057; SEBI 0.081; stamp 0;
    #         GST 18 % x (20 + 2.4057 + 0.081) = 18 % x 22.4867 = 4.047606
    note = kite.get_virtual_contract_note([_order("1", "BUY", 100, 800.0), _order("2", "SELL", 100, 810.0)])
    assert [(o["transaction_type"], o["tradingsymbol"], o["quantity"], o["price"], o["product"]) for o in note] == [
        ("BUY", "SBIN", 100, 800.0, "CNC"), ("SELL", "SBIN", 100, 810.0, "CNC")]
    buy, sell = (o["charges"] for o in note)
    assert set(buy) == set(sell) == CHARGE_KEYS and buy["transaction_tax_type"] == "stt"
    assert buy["brokerage"] == sell["brokerage"] == 20
    assert buy["transaction_tax"] == 0 and sell["transaction_tax"] == pytest.approx(20.25)
    assert buy["stamp_duty"] == pytest.approx(2.40) and sell["stamp_duty"] == 0
    assert buy["exchange_turnover_charge"] == pytest.approx(2.376)
    assert buy["gst"] == {"igst": pytest.approx(4.04208), "cgst": 0, "sgst": 0, "total": pytest.approx(4.04208)}
    assert sell["gst"]["total"] == pytest.approx(4.047606)
    assert buy["total"] == pytest.approx(20 + 2.376 + 0.08 + 2.40 + 4.04208)


def test_virtual_contract_note_prices_an_unmatched_order_as_delivery(kite: KiteConnect) -> None:
    # One delivery SELL of 10 INFY at 1550: STT 0.1 % = 15.50, no brokerage, no stamp.
    (only,) = kite.get_virtual_contract_note([_order("9", "SELL", 10, 1550.0, symbol="INFY")])
    assert only["charges"]["transaction_tax"] == pytest.approx(15.5)
    assert only["charges"]["brokerage"] == 0 and only["charges"]["stamp_duty"] == 0


def test_virtual_contract_note_refuses_what_is_not_simulated(kite: KiteConnect) -> None:
    with pytest.raises(kex.InputException, match="order 1: only NSE CNC equity is simulated"):
        kite.get_virtual_contract_note([{**_order("1", "BUY", 1, 800.0), "product": "MIS"}])
    with pytest.raises(kex.InputException, match="order 2: quantity 'ten'"):
        kite.get_virtual_contract_note([{**_order("2", "BUY", 1, 800.0), "quantity": "ten"}])


def test_order_margins_carries_the_charges(kite: KiteConnect) -> None:
    # CNC BUY of 1 INFY at 1498: STT 1.498; exchange 0.0444906; SEBI 0.001498; stamp 0.2247 -> 0.22;
    # GST 18 % x (0.0444906 + 0.001498) = 0.008277948; total 1.772266548.
    (margin,) = kite.order_margins([{"exchange": "NSE", "tradingsymbol": "INFY", "transaction_type": "BUY",
                                     "variety": "regular", "product": "CNC", "order_type": "LIMIT",
                                     "quantity": 1, "price": 1498, "trigger_price": 0}])
    charges = margin["charges"]
    assert set(charges) == CHARGE_KEYS
    assert charges["transaction_tax"] == pytest.approx(1.498) and charges["stamp_duty"] == pytest.approx(0.22)
    assert charges["total"] == pytest.approx(1.772266548)
    assert margin["total"] == 1498
