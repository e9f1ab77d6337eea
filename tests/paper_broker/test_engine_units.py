"""Pure pieces of the order engine: request parsing, CNC book keeping, GTT rules."""

from __future__ import annotations

import json

import pytest

from paper_broker import gtt as gttlib
from paper_broker.errors import KiteError
from paper_broker.orders import (
    NO_PROTECTION_MESSAGE,
    check_prices,
    order_id_for,
    parse_modification,
    parse_order,
    protected_limit,
)
from paper_broker.portfolio import CncBook, holding_wire, position_wire, segment_wire

BASE = {"exchange": "NSE", "tradingsymbol": "INFY", "transaction_type": "BUY", "quantity": "10",
        "product": "CNC", "order_type": "LIMIT", "price": "1500.5", "variety": "regular"}


def test_parse_order_accepts_client_strings_and_ignores_extra_keys() -> None:
    req = parse_order({**BASE, "tag": "abc", "unknown": "x"})
    assert (req.quantity, req.price, req.trigger_price, req.validity, req.tag) == (10, 1500.5, 0.0, "DAY", "abc")


@pytest.mark.parametrize(("change", "fragment"), [
    ({"quantity": None}, "quantity"),
    ({"quantity": "0"}, "quantity"),
    ({"quantity": "1.5"}, "quantity"),
    ({"price": None}, "price"),
    ({"transaction_type": "HOLD"}, "transaction_type"),
    ({"product": "MIS"}, "CNC"),
    ({"exchange": "BSE"}, "NSE"),
    ({"order_type": "MARKET", "price": None}, "market protection"),
    ({"order_type": "SL-M", "trigger_price": "1490", "market_protection": "0"}, "market protection"),
    ({"order_type": "MARKET", "market_protection": "101"}, "market_protection"),
    ({"order_type": "SL", "trigger_price": "1510"}, "Trigger price"),
    ({"tag": "x" * 21}, "tag"),
    ({"validity": "TTL"}, "validity"),
])
def test_parse_order_refuses_bad_input(change: dict[str, str | None], fragment: str) -> None:
    params = {**BASE, **change}
    params = {k: v for k, v in params.items() if v is not None}
    with pytest.raises(KiteError) as info:
        parse_order(params)  # type: ignore[arg-type]
    assert info.value.error_type == "InputException"
    assert info.value.status == 400
    assert fragment.lower() in info.value.message.lower()


def test_market_without_protection_has_the_live_message() -> None:
    with pytest.raises(KiteError) as info:
        parse_order({**BASE, "order_type": "MARKET"})
    assert info.value.message == NO_PROTECTION_MESSAGE


def test_tick_check_uses_decimal_arithmetic() -> None:
    check_prices(parse_order({**BASE, "price": "1479.45"}), 0.05)
    with pytest.raises(KiteError, match="Tick size"):
        check_prices(parse_order({**BASE, "price": "1479.43"}), 0.05)


def test_modification_keeps_fields_and_market_needs_protection() -> None:
    current = parse_order({**BASE, "tag": "t1"})
    moved = parse_modification(current, {"price": "1490", "variety": "regular", "order_id": "1"})
    assert (moved.price, moved.quantity, moved.tag) == (1490.0, 10, "t1")
    with pytest.raises(KiteError, match="market protection"):
        parse_modification(current, {"order_type": "MARKET"})
    assert parse_modification(current, {"order_type": "MARKET", "market_protection": "2"}).price == 0.0


def test_protected_limit_rounds_inwards_to_the_tick() -> None:
    assert protected_limit(1500.0, 2, "BUY", 0.1) == 1530.0
    assert protected_limit(1500.0, -1, "SELL", 0.1) == 1455.0
    assert protected_limit(101.37, 3, "BUY", 0.05) == 104.4


def test_order_id_has_the_day_prefix(ist_day: str = "2026-11-23") -> None:
    from datetime import datetime

    from kitefleet.clock import IST

    oid = order_id_for(datetime.fromisoformat(f"{ist_day}T10:00:00").replace(tzinfo=IST), 42)
    assert oid == "261123000000042" and len(oid) == 15


# --- CNC book ----------------------------------------------------------------------------------
def test_intraday_sell_nets_against_todays_buy_first() -> None:
    book = CncBook("k", 1, "INFY", settled_qty=5, hold_cost=5 * 100.0)
    book.buy(10, 110.0)
    assert book.sellable == 15
    realised = book.sell(12, 120.0)
    # 10 from today's lot at 110, 2 from holdings at 100
    assert realised == pytest.approx(10 * 10 + 2 * 20)
    assert (book.lot_qty, book.used_settled, book.net_qty) == (0, 2, -2)
    with pytest.raises(ValueError):
        book.sell(4, 1.0)


def test_roll_moves_buys_to_t1_then_to_settled() -> None:
    book = CncBook("k", 1, "INFY")
    book.buy(10, 100.0)
    book.roll()
    assert (book.settled_qty, book.t1_qty, book.hold_avg) == (0, 10, 100.0)
    book.sell(3, 90.0)  # BTST
    assert (book.used_t1, book.sellable) == (3, 7)
    book.roll()
    assert (book.settled_qty, book.t1_qty, book.cost_basis) == (7, 0, pytest.approx(700.0))
    book.sell(7, 95.0)
    book.roll()
    assert book.empty


def test_cash_cost_realised_invariant_on_a_book() -> None:
    cash = 10_000.0
    book = CncBook("k", 1, "X")
    realised = 0.0
    for side, qty, price, roll in [("B", 10, 100.0, False), ("B", 5, 90.0, True), ("S", 7, 95.0, False),
                                   ("B", 3, 80.0, True), ("S", 11, 120.0, True)]:
        if side == "B":
            book.buy(qty, price)
            cash -= qty * price
        else:
            realised += book.sell(qty, price)
            cash += qty * price
        if roll:
            book.roll()
        assert cash + book.cost_basis - realised == pytest.approx(10_000.0)


def test_holding_and_position_formulas() -> None:
    book = CncBook("k", 1, "INFY", settled_qty=10, t1_qty=5, hold_cost=15 * 100.0)
    book.sell(4, 110.0)
    h = holding_wire(book, last_price=105.0, close_price=100.0)
    assert (h["quantity"], h["t1_quantity"], h["used_quantity"], h["opening_quantity"]) == (10, 5, 4, 15)
    assert h["average_price"] == 100.0 and h["pnl"] == pytest.approx(75.0)
    assert h["day_change"] == 5.0 and h["day_change_percentage"] == 5.0
    p = position_wire(book, last_price=105.0, close_price=100.0)
    assert p["quantity"] == -4 and p["value"] == 440.0
    assert p["pnl"] == pytest.approx(p["value"] + p["quantity"] * 105.0)
    assert p["m2m"] == p["pnl"]


def test_segment_net_is_cash_minus_blocked() -> None:
    seg = segment_wire(opening_balance=1000.0, sales=200.0, spent=300.0, blocked=50.0)
    assert seg["net"] == seg["available"]["live_balance"] == 850.0
    # Sale proceeds as Kite shows them: a credit among the utilised figures, not a pay-in.
    assert (seg["utilised"]["holding_sales"], seg["available"]["intraday_payin"]) == (-200.0, 0)
    assert seg["utilised"]["debits"] == 150.0 and seg["available"]["cash"] == 1000.0


# --- GTT rules -----------------------------------------------------------------------------------
def gtt_params(kind: str, triggers: list[float], last: float, legs: list[tuple[str, float]]) -> dict[str, str]:
    return {
        "type": kind,
        "condition": json.dumps({"exchange": "NSE", "tradingsymbol": "INFY", "trigger_values": triggers,
                                 "last_price": last}),
        "orders": json.dumps([{"exchange": "NSE", "tradingsymbol": "INFY", "transaction_type": side,
                               "quantity": 5, "order_type": "LIMIT", "product": "CNC", "price": price}
                              for side, price in legs]),
    }


def test_gtt_parse_and_fire_directions() -> None:
    single = gttlib.parse_gtt(gtt_params("single", [1480], 1500, [("SELL", 1475)]))
    assert single.legs[0].quantity == 5
    assert gttlib.fires("single", [1480], 1500, low=1481, high=1490) is None
    assert gttlib.fires("single", [1480], 1500, low=1480, high=1490) == 0
    assert gttlib.fires("single", [1520], 1500, low=1490, high=1520) == 0
    assert gttlib.fires("two-leg", [1480, 1550], 1500, low=1490, high=1551) == 1
    assert gttlib.fires("two-leg", [1480, 1550], 1500, low=1479, high=1551) == 0  # both: the stop


@pytest.mark.parametrize(("kind", "triggers", "last", "legs", "fragment"), [
    ("single", [1500], 1500, [("SELL", 1475)], "equal to the last price"),
    ("two-leg", [1480, 1490], 1500, [("SELL", 1475), ("SELL", 1490)], "second trigger"),
    ("two-leg", [1480], 1500, [("SELL", 1475), ("SELL", 1490)], "exactly 2"),
    ("single", [1480], 1500, [("SELL", 1475), ("SELL", 1490)], "exactly 1"),
    ("oco", [1480], 1500, [("SELL", 1475)], "type"),
])
def test_gtt_parse_refuses(kind: str, triggers: list[float], last: float, legs: list[tuple[str, float]],
                           fragment: str) -> None:
    with pytest.raises(KiteError) as info:
        gttlib.parse_gtt(gtt_params(kind, triggers, last, legs))
    assert info.value.error_type == "InputException"
    assert fragment in info.value.message
