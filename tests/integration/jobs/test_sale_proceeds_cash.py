"""The cash place_orders_daily sizes with after a same-day sale. The paper broker shows sale
proceeds as Kite does (``utilised.holding_sales``, a credit inside ``debits``), no longer as
``intraday_payin``; ``live_balance`` keeps its meaning, so the sizing cash is what it was before the
change: starting cash - today's buys + today's sale proceeds (charges come off at the night's roll)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.integration.jobs.test_place_orders_daily import DAY_A, JOB, PREV_SESSION, Desk, open_desk, records, scan_row
from tests.support.broker import RunningBroker, broker_factory  # noqa: F401 (fixture)
from workers.portfolio import available_cash

START = 1_000_000.0


@pytest.fixture
def desk(tmp_path: Path, broker_factory: Callable[..., RunningBroker]) -> Iterator[Desk]:  # noqa: F811
    yield open_desk(tmp_path, broker_factory, {"Som": {}}, DAY_A, ["INFY", "TCS"])


def test_entries_are_sized_on_cash_that_includes_todays_sale_proceeds(desk: Desk) -> None:
    kite = desk.kite("Som")
    for side in ("BUY", "SELL"):
        kite.place_order("regular", exchange="NSE", tradingsymbol="TCS", transaction_type=side, quantity=100,
                         product="CNC", order_type="MARKET", market_protection=-1)
    trades = kite.trades()
    spent = sum(t["quantity"] * t["average_price"] for t in trades if t["transaction_type"] == "BUY")
    proceeds = sum(t["quantity"] * t["average_price"] for t in trades if t["transaction_type"] == "SELL")
    assert spent != proceeds  # the spread: the sale changes the cash
    equity = kite.margins("equity")
    assert equity["available"]["intraday_payin"] == 0
    assert equity["utilised"]["holding_sales"] == pytest.approx(-proceeds)
    assert equity["available"]["cash"] == START
    expected = START - spent + proceeds  # what live_balance (and intraday_payin before) gave
    assert equity["available"]["live_balance"] == pytest.approx(expected)
    # Without live_balance, cash + intraday_payin - debits gives the same (the credit is in debits).
    assert available_cash({k: v for k, v in equity.items()} | {
        "available": {k: v for k, v in equity["available"].items() if k != "live_balance"}}) == pytest.approx(expected)

    desk.write_scan("Som", PREV_SESSION, [scan_row("INFY", 6, 1095, 1000, 1250)])
    desk.ok("Som", JOB)
    record = records(desk, "Som")[-1]
    assert record["available_capital"] == pytest.approx(expected, abs=0.01)
