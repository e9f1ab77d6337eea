"""The daily report's pure parts on plain data (the numbers against the broker are in
tests/integration/jobs/test_daily_report.py)."""

from __future__ import annotations

from workers.jobs.daily_report import executed, realised_pnl


def test_charges_of_a_partly_filled_entry_cancelled_at_its_timeout_are_counted() -> None:
    """The bug: only COMPLETE orders went to the contract note, so the filled part of an entry whose
    rest place_orders_daily cancelled at ENTRY_TIMEOUT_MINUTES was never charged in the report."""
    orders = [
        {"order_id": "1", "status": "COMPLETE", "filled_quantity": 10},
        {"order_id": "2", "status": "CANCELLED", "filled_quantity": 4},  # partial fill, rest cancelled
        {"order_id": "3", "status": "CANCELLED", "filled_quantity": 0},  # an entry that never filled
        {"order_id": "4", "status": "OPEN", "filled_quantity": 0},
        {"order_id": "5", "status": "REJECTED", "filled_quantity": 0},
    ]
    assert [o["order_id"] for o in executed(orders)] == ["1", "2"]


def test_realised_pnl_nets_todays_buys_first_then_the_holdings_average() -> None:
    trades = [
        {"tradingsymbol": "INFY", "transaction_type": "BUY", "quantity": 4, "average_price": 100.0},
        {"tradingsymbol": "INFY", "transaction_type": "SELL", "quantity": 6, "average_price": 110.0},  # 4 today, 2 held
        {"tradingsymbol": "TCS", "transaction_type": "SELL", "quantity": 5, "average_price": 90.0},  # a GTT's sell
    ]
    holdings = [{"tradingsymbol": "INFY", "average_price": 95.0}, {"tradingsymbol": "TCS", "average_price": 100.0}]
    assert realised_pnl(trades, holdings) == 4 * 10 + 2 * 15 + 5 * -10
