"""workers.watchdog.decide_symbol / decide_poll: the per-poll decision on plain data (what the
backtest calls): LTP, tick, level and the exit records in; reprices and the exit out."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from kitefleet.clock import IST
from workers.exit_records import MAX_EXIT_TAGS, bot_gtt_children, is_circuit_rejection, next_exit_purpose
from workers.gtt import StopOwnership
from workers.portfolio import AccountSnapshot
from workers.strategy.watchdog_rules import RULE_ATR_TRAILING, RULE_HOURLY_LOW
from workers.watchdog import SymbolView, decide_poll, decide_symbol, entered_today, first_buy_fills
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


# --- issue 20: circuits, GTT children, entries -----------------------------------------------------
def test_an_exit_is_never_priced_below_the_lower_circuit() -> None:
    # a gap to the band: LTP x 0.995 would be outside it (rejected); the sell queues at the band
    actions = decide_symbol(RULE_HOURLY_LOW, "INFY", SymbolView(1425.0, 0.1, 1499.0, lower=1425.0), NOW)
    assert actions.exit is not None and actions.exit.limit_price == 1425.0
    # unknown band: unchanged
    actions = decide_symbol(RULE_HOURLY_LOW, "INFY", SymbolView(1425.0, 0.1, 1499.0), NOW)
    assert actions.exit is not None and actions.exit.limit_price == 1417.8


def test_a_sell_resting_at_the_band_is_not_repriced() -> None:
    at_band = _exit("sent", "OPEN", price=1425.0)
    view = SymbolView(1425.0, 0.1, 1499.0, [at_band], lower=1425.0)
    assert decide_symbol(RULE_HOURLY_LOW, "INFY", view, NOW).reprices == []
    above = _exit("sent", "OPEN", price=1440.0)
    view = SymbolView(1426.0, 0.1, 1499.0, [above], lower=1425.0)
    assert decide_symbol(RULE_HOURLY_LOW, "INFY", view, NOW).reprices == [Reprice("EXTAG", "1", 1425.0)]


def test_the_bots_gtt_child_is_repriced_and_counts_as_being_sold() -> None:
    child = {"purpose": "gtt_child", "tag": "GTT7", "status": "sent", "order_status": "OPEN", "order_id": "9",
             "price": 1382.2, "modifications": 0}
    actions = decide_symbol(RULE_HOURLY_LOW, "INFY", SymbolView(1380.0, 0.1, 1490.0, [child]), NOW)
    assert actions.reprices == [Reprice("GTT7", "9", 1373.1)]
    assert actions.exit is None  # already being sold


def test_circuit_rejections_are_not_exit_attempts() -> None:
    # Bug: three circuit rejections in ~90 s ended all exits for the session.
    rejected = [{"purpose": p, "status": "sent", "order_status": "REJECTED", "circuit": True}
                for p in ("exit", "exit2", "exit3")]
    assert next_exit_purpose(rejected) == "exit4"  # a fresh tag: no tag names two orders
    counted = [{"purpose": "exit", "status": "sent", "order_status": "CANCELLED"}] * 3
    assert next_exit_purpose(counted + rejected) is None
    assert next_exit_purpose([{"purpose": "gtt_child", "status": "sent", "order_status": "COMPLETE"}]) == "exit"
    many = [{"purpose": f"exit{i}", "status": "rejected", "circuit": True} for i in range(MAX_EXIT_TAGS)]
    assert next_exit_purpose(many) is None  # bounded all the same
    assert is_circuit_rejection("Your order price is lower than the current lower circuit limit of 1425. "
                                "Place an order within the daily range.")


def _gtt(gid: int, status: str, oid: str, symbol: str = "INFY") -> dict[str, Any]:
    leg = {"exchange": "NSE", "tradingsymbol": symbol, "transaction_type": "SELL", "quantity": 10,
           "order_type": "LIMIT", "product": "CNC", "price": 1382.2,
           "result": {"order_result": {"status": "success", "order_id": oid, "rejection_reason": ""}}}
    return {"id": gid, "type": "single", "status": status,
            "condition": {"exchange": "NSE", "tradingsymbol": symbol, "trigger_values": [1455.0],
                          "last_price": 1500.0}, "orders": [leg]}


def test_bot_gtt_children_by_the_triggered_gtts_order_id_only() -> None:
    gtts = [_gtt(1, "triggered", "A"), _gtt(2, "triggered", "B"), _gtt(3, "active", "C"),
            _gtt(4, "triggered", "D", "TCS")]
    ours = StopOwnership(frozenset({1, 3, 4}), frozenset({"INFY", "TCS"}))
    # 2 is a person's stop on a symbol the bot has a record of; 3 has not fired; TCS not asked for
    assert bot_gtt_children(gtts, ours, ["INFY"]) == {"A": (1, "INFY")}
    # no stop record of the symbol at all: stop-shaped ones are adopted (as workers.gtt.bot_stops)
    assert set(bot_gtt_children(gtts, StopOwnership(), ["INFY"])) == {"A", "B"}


def test_positions_entered_today_and_their_first_fill() -> None:
    account = AccountSnapshot(
        holdings=[{"tradingsymbol": "INFY", "exchange": "NSE", "quantity": 0, "t1_quantity": 10},
                  {"tradingsymbol": "TCS", "exchange": "NSE", "quantity": 0, "t1_quantity": 0}],
        positions_net=[{"tradingsymbol": "TCS", "exchange": "NSE", "product": "CNC", "quantity": 4},
                       {"tradingsymbol": "INFY", "exchange": "NSE", "product": "CNC", "quantity": 5},
                       {"tradingsymbol": "SBIN", "exchange": "NSE", "product": "MIS", "quantity": 5}])
    assert entered_today(account) == {"TCS"}  # INFY was held before (t1): topped up, not entered
    trades = [{"tradingsymbol": "TCS", "transaction_type": "BUY", "product": "CNC",
               "exchange_timestamp": datetime(2026, 3, 4, 9, 25)},
              {"tradingsymbol": "TCS", "transaction_type": "BUY", "product": "CNC",
               "exchange_timestamp": "2026-03-04 09:20:00"},
              {"tradingsymbol": "TCS", "transaction_type": "SELL", "product": "CNC",
               "exchange_timestamp": datetime(2026, 3, 4, 9, 16)}]
    assert first_buy_fills(trades) == {"TCS": datetime(2026, 3, 4, 9, 20, tzinfo=IST)}
