"""The two meanings of "held" (workers.portfolio.held_quantities, entry_blocked) on Kite's shapes.

Bug: "held" meant four things (portfolio, sizing, doctor, summary) that disagreed on a symbol sold
today and on a BSE holding. Each row below is one account; Kite keeps holdings ``quantity`` as it
was at the open when shares are sold today (kite-api.md 3.10: ``used_quantity``; the paper broker
does the same) and shows the sale as a negative CNC net position.
"""

from __future__ import annotations

from typing import Any

import pytest

from workers.portfolio import (
    BUY_PENDING,
    HELD,
    HELD_ELSEWHERE,
    SOLD_TODAY,
    AccountSnapshot,
    entry_blocked,
    held_quantities,
    unmanaged_holdings,
)


def holding(exchange: str, qty: int, t1: int = 0, used: int = 0) -> dict[str, Any]:
    return {"tradingsymbol": "INFY", "exchange": exchange, "product": "CNC", "quantity": qty,
            "t1_quantity": t1, "used_quantity": used, "last_price": 100.0}


def position(qty: int, exchange: str = "NSE", product: str = "CNC") -> dict[str, Any]:
    return {"tradingsymbol": "INFY", "exchange": exchange, "product": product, "quantity": qty}


def buy(status: str, product: str = "CNC") -> dict[str, Any]:
    return {"tradingsymbol": "INFY", "transaction_type": "BUY", "status": status, "product": product}


#          case                holdings                                  net positions          orders
#                              held_quantities  entry_blocked reason     unmanaged
CASES = [
    ("bought today", [], [position(10)], [], 10, HELD, 0),
    ("settled", [holding("NSE", 10)], [], [], 10, HELD, 0),
    ("T1 only", [holding("NSE", 0, t1=5)], [], [], 5, HELD, 0),
    ("sold today", [holding("NSE", 10, used=10)], [position(-10)], [], None, SOLD_TODAY, 0),
    ("partly sold today", [holding("NSE", 10, used=4)], [position(-4)], [], 6, HELD, 0),
    ("T1 sold today (BTST)", [holding("NSE", 0, t1=5, used=5)], [position(-5)], [], None, SOLD_TODAY, 0),
    ("BSE only", [holding("BSE", 10)], [], [], None, HELD_ELSEWHERE, 10),
    ("BSE + NSE", [holding("BSE", 10), holding("NSE", 5)], [], [], 5, HELD, 10),
    ("intraday (MIS) only", [], [position(10, product="MIS")], [], None, None, 0),
    ("open BUY, MIS", [], [], [buy("OPEN", "MIS")], None, BUY_PENDING, 0),
    ("AMO BUY", [], [], [buy("AMO REQ RECEIVED")], None, BUY_PENDING, 0),
    ("filled BUY already a position", [], [position(3)], [buy("COMPLETE")], 3, HELD, 0),
    ("nothing left from an old sale", [holding("NSE", 0)], [], [buy("CANCELLED")], None, None, 0),
]


@pytest.mark.parametrize(("case", "holdings", "net", "orders", "held", "blocked", "unmanaged"), CASES,
                         ids=[c[0] for c in CASES])
def test_held_means_two_things_pinned_by_a_table(case: str, holdings: list[dict[str, Any]],
                                                 net: list[dict[str, Any]], orders: list[dict[str, Any]],
                                                 held: int | None, blocked: str | None, unmanaged: int) -> None:
    account = AccountSnapshot(holdings, net, orders)
    assert held_quantities(account).get("INFY") == held
    assert entry_blocked(account).get("INFY") == blocked
    assert unmanaged_holdings(account).get("INFY", 0) == unmanaged


def test_only_positive_nse_quantities_are_held_and_a_bse_holding_never_is() -> None:
    account = AccountSnapshot([holding("BSE", 10), {**holding("NSE", 10), "tradingsymbol": "TCS"}],
                              [{**position(-10), "tradingsymbol": "TCS"}, {**position(2), "tradingsymbol": "SBIN"}])
    assert held_quantities(account) == {"SBIN": 2}
    assert entry_blocked(account) == {"SBIN": HELD, "TCS": SOLD_TODAY, "INFY": HELD_ELSEWHERE}
    assert account.market_value() == 0.0  # no last price on the SBIN row; nothing else is held
