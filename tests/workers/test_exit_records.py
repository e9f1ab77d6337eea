"""workers/exit_records.py: pending sell quantity and the exit attempts' retry and cap."""

from __future__ import annotations

from workers.exit_records import exit_pending, next_exit_purpose, pending_sell_quantity


def test_pending_sell_quantity_counts_open_cnc_sells_only() -> None:
    orders = [
        {"tradingsymbol": "INFY", "transaction_type": "SELL", "product": "CNC", "status": "OPEN",
         "quantity": 5, "filled_quantity": 2, "pending_quantity": 3},
        {"tradingsymbol": "INFY", "transaction_type": "SELL", "product": "CNC", "status": "COMPLETE",
         "quantity": 4, "filled_quantity": 4, "pending_quantity": 0},
        {"tradingsymbol": "INFY", "transaction_type": "BUY", "product": "CNC", "status": "OPEN",
         "quantity": 9, "filled_quantity": 0, "pending_quantity": 9},
        {"tradingsymbol": "TCS", "transaction_type": "SELL", "product": "CNC", "status": "OPEN",
         "quantity": 9, "filled_quantity": 0, "pending_quantity": 9},
    ]
    assert pending_sell_quantity(orders, "INFY") == 3


def test_exit_attempts_pending_retry_and_cap() -> None:
    assert next_exit_purpose([]) == "exit"
    sent_open = {"purpose": "exit", "status": "sent", "order_status": "OPEN"}
    assert exit_pending([sent_open])
    assert not exit_pending([{**sent_open, "order_status": "COMPLETE"}])
    assert exit_pending([{"purpose": "exit", "status": "unknown", "order_status": None}])
    # never reached the broker: the same tag again; anything else: a fresh tag, three at most
    assert next_exit_purpose([{"purpose": "exit", "status": "not_sent"}]) == "exit"
    # given up after an unknown outcome: it may have been placed, so its tag is used up
    lost = {"purpose": "exit", "status": "lost", "order_status": None}
    assert not exit_pending([lost]) and next_exit_purpose([lost]) == "exit2"
    cancelled = {"purpose": "exit", "status": "sent", "order_status": "CANCELLED"}
    assert next_exit_purpose([cancelled]) == "exit2"
    assert next_exit_purpose([cancelled, {"purpose": "exit2", "status": "rejected"}]) == "exit3"
    assert next_exit_purpose([cancelled, {"purpose": "exit2", "status": "rejected"},
                              {"purpose": "exit3", "status": "sent", "order_status": "REJECTED"}]) is None
