"""The daily loss limit's figures (workers.strategy.limits) on plain data: the module's table."""

from __future__ import annotations

from typing import Any

import pytest

from workers.strategy.limits import Sell, bot_equity, breached, day_pnl, loss_floor

TODAY = "2026-03-05"


def _lot(q: int, price: float, day: str = "2026-03-04", source: str = "entry") -> dict[str, Any]:
    return {"quantity": q, "price": price, "date": day, "source": source}


@pytest.mark.parametrize(("lots", "ltp", "close", "kwargs", "total"), [
    # held from yesterday: counted from the previous close
    ({"A": [_lot(100, 80.0)]}, {"A": 95.0}, {"A": 100.0}, {}, -500.0),
    # bought today above the close: counted from the fill
    ({"A": [_lot(10, 102.0, TODAY)]}, {"A": 98.0}, {"A": 100.0}, {}, -40.0),
    # bought today below the close: counted from the close (the gap is no gain)
    ({"A": [_lot(10, 97.0, TODAY)]}, {"A": 98.0}, {"A": 100.0}, {}, -20.0),
    # an owned sell of today against the previous close
    ({}, {}, {"A": 100.0}, {"sells": [Sell("A", 10, 90.0)]}, -100.0),
    # bought and sold today: against max(close, today's buy)
    ({}, {}, {"A": 100.0}, {"sells": [Sell("A", 10, 101.0)], "today_buy_price": {"A": 105.0}}, -40.0),
    # 50 owned, 30 held: the 30 oldest only
    ({"A": [_lot(20, 1.0), _lot(30, 1.0, TODAY)]}, {"A": 90.0}, {"A": 100.0}, {"held": {"A": 30}}, -300.0),
    # charges come off
    ({"A": [_lot(10, 80.0)]}, {"A": 100.0}, {"A": 100.0}, {"charges": 12.5}, -12.5),
    # unknown charges count 0
    ({"A": [_lot(10, 80.0)]}, {"A": 101.0}, {"A": 100.0}, {"charges": None}, 10.0),
])
def test_day_pnl_table(lots: dict[str, Any], ltp: dict[str, float], close: dict[str, float], kwargs: dict[str, Any],
                       total: float) -> None:
    assert day_pnl(lots, ltp, close, TODAY, **kwargs).total == total


def test_unknown_charges_and_missing_prices_are_said() -> None:
    pnl = day_pnl({"A": [_lot(10, 1.0)], "B": [_lot(5, 1.0)]}, {"A": 99.0}, {"A": 100.0}, TODAY, charges=None)
    assert not pnl.charges_known and pnl.missing == ("B",) and pnl.total == -10.0


def test_the_floor_and_the_trip() -> None:
    equity = bot_equity(70_000.0, {"A": 300}, {"A": 100.0})
    assert equity == 100_000.0 and loss_floor(equity, 3) == -3000.0
    pnl = day_pnl({"A": [_lot(300, 100.0)]}, {"A": 90.0}, {"A": 100.0}, TODAY)  # -3000: at the floor, not below
    assert not breached(pnl, equity, 3)
    pnl = day_pnl({"A": [_lot(300, 100.0)]}, {"A": 89.95}, {"A": 100.0}, TODAY)
    assert breached(pnl, equity, 3) and not breached(pnl, equity, 3.1)
    assert not breached(pnl, 0.0, 3)  # nothing at stake
