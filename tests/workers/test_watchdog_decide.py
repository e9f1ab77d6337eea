"""workers.watchdog.decide_symbol / decide_poll: the per-poll decision on plain data (what the
backtest calls): LTP, tick, level and the exit records in; reprices and the exit out."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from kitefleet.clock import IST
from workers.strategy.watchdog_rules import RULE_ATR_TRAILING, RULE_HOURLY_LOW
from workers.watchdog import SymbolView, decide_poll, decide_symbol
from workers.watchdog_exits import MAX_EXIT_MODIFICATIONS, Reprice

NOW = datetime(2026, 3, 4, 13, 41, tzinfo=IST)


def _exit(status: str, order_status: str | None = None, **extra: Any) -> dict[str, Any]:
    return {"purpose": "exit", "tag": "EXTAG", "status": status, "order_status": order_status,
            "order_id": "1" if status == "sent" else None, **extra}


@pytest.mark.parametrize(("ltp", "level", "exits", "fires"), [
    (1483.0, 1485.0, [], True),  # below the level: exit
    (1485.0, 1485.0, [], False),  # at it: no (strictly below)
    (1483.0, None, [], False),  # no level yet
    (1483.0, 1485.0, [_exit("sent", "OPEN", price=1470.0)], False),  # one pending already
    (1483.0, 1485.0, [_exit("unknown")], False),
    (1483.0, 1485.0, [_exit("sent", "CANCELLED", retry_after="2026-03-04T13:45:00+05:30")], False),
    (1483.0, 1485.0, [_exit("sent", "CANCELLED", retry_after="2026-03-04T13:40:00+05:30")], True),
    (1483.0, 1485.0, [_exit("lost"), _exit("rejected"), _exit("sent", "REJECTED")], False),  # 3 used
    (1483.0, 1485.0, [_exit("not_sent")], True),  # never reached the broker: same tag again
])
def test_hourly_low_exit_decision(ltp: float, level: float | None, exits: list[dict[str, Any]], fires: bool) -> None:
    actions = decide_symbol(RULE_HOURLY_LOW, "INFY", SymbolView(ltp, 0.1, level, exits), NOW)
    assert (actions.exit is not None) is fires
    if fires:
        assert actions.exit is not None and actions.exit.limit_price == 1477.5


def test_atr_rule_exits_at_or_below_the_stop() -> None:
    assert decide_symbol(RULE_ATR_TRAILING, "TCS", SymbolView(3000.0, 0.1, 3000.0), NOW).exit is not None
    assert decide_symbol(RULE_ATR_TRAILING, "TCS", SymbolView(3000.1, 0.1, 3000.0), NOW).exit is None


def test_an_open_exit_above_the_market_is_repriced_until_the_cap() -> None:
    resting = _exit("sent", "OPEN", price=1477.5, modifications=MAX_EXIT_MODIFICATIONS - 1)
    actions = decide_symbol(RULE_HOURLY_LOW, "INFY", SymbolView(1440.0, 0.1, 1485.0, [resting]), NOW)
    assert actions.reprices == [Reprice("EXTAG", "1", 1432.8, capped=False)] and actions.exit is None
    capped = {**resting, "modifications": MAX_EXIT_MODIFICATIONS}
    actions = decide_symbol(RULE_HOURLY_LOW, "INFY", SymbolView(1440.0, 0.1, 1485.0, [capped]), NOW)
    assert [r.capped for r in actions.reprices] == [True]
    # at or under the marketable limit already: nothing to do
    low = {**resting, "price": 1430.0}
    assert decide_symbol(RULE_HOURLY_LOW, "INFY", SymbolView(1440.0, 0.1, 1485.0, [low]), NOW).reprices == []


def test_decide_poll_skips_symbols_without_a_price_in_symbol_order() -> None:
    views = {"TCS": SymbolView(0.0, 0.1, 3000.0), "INFY": SymbolView(1483.0, 0.1, 1485.0),
             "ABB": SymbolView(5000.0, 0.5, 4000.0)}
    actions = decide_poll(RULE_HOURLY_LOW, views, NOW)
    assert [(a.symbol, a.exit is not None) for a in actions] == [("ABB", False), ("INFY", True)]
