"""workers/gtt.py: which GTTs the bot owns and how the watchdog cuts them."""

from __future__ import annotations

from typing import Any

from workers.gtt import StopOwnership, cuts_after_exit, reduced_legs


def _gtt(gid: int, symbol: str = "INFY", qty: int = 10, side: str = "SELL", status: str = "active",
         legs: int = 1) -> dict[str, Any]:
    return {"id": gid, "type": "single" if legs == 1 else "two-leg", "status": status,
            "condition": {"exchange": "NSE", "tradingsymbol": symbol, "trigger_values": [1400.0] * legs,
                          "last_price": 1500.0},
            "orders": [{"exchange": "NSE", "tradingsymbol": symbol, "transaction_type": side, "quantity": qty,
                        "order_type": "LIMIT", "product": "CNC", "price": 1330.0}] * legs}


def test_watchdog_changes_gtts_not_its_own() -> None:
    # Bug: the tidy after an exit reduced or deleted every active all-SELL GTT of the symbol,
    # including a person's OCO (id 6, pinned as deleted before), take-profit and own stop.
    take_profit = {**_gtt(7), "condition": {**_gtt(7)["condition"], "trigger_values": [1600.0]}}
    gtts = [_gtt(1), _gtt(2, qty=3), _gtt(3, side="BUY"), _gtt(4, status="triggered"), _gtt(5, symbol="TCS"),
            _gtt(6, legs=2), take_profit, _gtt(8)]
    # The bot placed 1 and 2 (its stop record and intents); 8 is a person's extra stop on INFY.
    ours = StopOwnership(frozenset({1, 2}), frozenset({"INFY"}))
    cuts, reports = cuts_after_exit(gtts, "INFY", 0, ours)
    assert [(c.gtt_id, c.action) for c in cuts] == [(1, "delete"), (2, "delete")]
    assert [r.split(" ")[2] for r in reports] == ["6", "7", "8"] and all("not the bot's" in r for r in reports)
    cuts, reports = cuts_after_exit(gtts, "INFY", 4, ours)
    assert [(c.gtt_id, c.action, c.quantity) for c in cuts] == [(1, "reduce", 4)]
    assert [r.split(" ")[2] for r in reports] == ["6", "7", "8"]
    assert reduced_legs(cuts[0].gtt, 4)[0] | {"quantity": 10} == _gtt(1)["orders"][0]
    assert cuts_after_exit(gtts, "INFY", 10, ours) == ([], [])  # nothing sells more than is held
    # No stop record at all (lost state): the stop-shaped GTTs of the symbol just sold are adopted;
    # the OCO and the take-profit are still a person's.
    cuts, reports = cuts_after_exit(gtts, "INFY", 0, StopOwnership())
    assert [c.gtt_id for c in cuts] == [1, 2, 8] and [r.split(" ")[2] for r in reports] == ["6", "7"]
