"""workers.ledger's rules on plain data: lots in, lots out, what may be protected and sold."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from workers import ledger as L

D1, D2 = date(2026, 3, 4), date(2026, 3, 5)


def _order(oid: str, sym: str, side: str, filled: int, *, qty: int | None = None, price: float = 100.0,
           status: str = "COMPLETE", product: str = "CNC", tag: str | None = None) -> dict[str, Any]:
    return {"order_id": oid, "tradingsymbol": sym, "exchange": "NSE", "transaction_type": side,
            "product": product, "quantity": qty if qty is not None else filled, "filled_quantity": filled,
            "pending_quantity": (qty if qty is not None else filled) - filled, "average_price": price,
            "status": status, "tag": tag}


def _ledger(**lots: list[tuple[int, str]]) -> dict[str, Any]:
    led = L.empty()
    for sym, items in lots.items():
        for i, (q, src) in enumerate(items):
            L.add_lot(led, sym, L.lot(q, 100.0 + i, f"2026-03-0{i + 1}", src))
    return led


@pytest.mark.parametrize(("owned", "held", "bot_open", "all_open", "want"), [
    (100, 100, 0, 0, 100),      # all ours, nothing pending
    (100, 150, 0, 0, 100),      # 50 hand-bought: never sold by the bot
    (100, 60, 0, 0, 60),        # a person sold 40 of ours: at most what is held
    (100, 150, 30, 30, 70),     # the bot already has a SELL of 30 open
    (100, 120, 0, 50, 70),      # a person's open SELL of 50 uses shares too
    (100, 100, 100, 100, 0),    # fully on its way out
    (0, 100, 0, 0, 0),          # not owned: nothing
])
def test_sellable_is_min_of_owned_less_bot_sells_and_held_less_all_sells(
        owned: int, held: int, bot_open: int, all_open: int, want: int) -> None:
    assert L.sellable(owned, held, bot_open, all_open) == want


def test_protected_is_min_owned_held_and_skips_what_is_not_owned() -> None:
    assert L.protected({"INFY": 100, "TCS": 50, "SBIN": 10}, {"INFY": 150, "TCS": 20, "HDFC": 99}) == \
        {"INFY": 100, "TCS": 20}


def test_entry_fills_add_a_lot_partial_fills_grow_it_and_a_rerun_adds_nothing() -> None:
    led = L.empty()
    book = [_order("E1", "INFY", "BUY", 40, qty=100, status="OPEN", price=1460.0)]
    rep = L.reconcile(led, book, {"INFY": 40}, entry_order_ids={"E1"}, bot_sell_order_ids=set(), session=D1)
    assert L.owned_quantities(led) == {"INFY": 40} and rep.changed == {"INFY"}
    assert L.reconcile(led, book, {"INFY": 40}, entry_order_ids={"E1"}, bot_sell_order_ids=set(),
                       session=D1).changes == []
    book = [_order("E1", "INFY", "BUY", 100, price=1461.0)]
    L.reconcile(led, book, {"INFY": 100}, entry_order_ids={"E1"}, bot_sell_order_ids=set(), session=D1)
    assert led["lots"]["INFY"] == [{"quantity": 100, "price": 1461.0, "date": "2026-03-04", "source": "entry",
                                    "order_id": "E1"}]


def test_a_person_buying_by_hand_adds_nothing() -> None:
    led = L.empty()
    L.reconcile(led, [_order("P1", "INFY", "BUY", 50)], {"INFY": 50}, entry_order_ids=set(),
                bot_sell_order_ids=set(), session=D1)
    assert L.owned_quantities(led) == {}


@pytest.mark.parametrize(("case", "lots", "held_after", "sell", "bot", "want_lots"), [
    ("bot sell, oldest lot first", [(30, "migrated"), (70, "entry")], 40, 60, True, [40]),
    ("bot sell of part of the first lot", [(30, "migrated"), (70, "entry")], 90, 10, True, [20, 70]),
    ("person sells own shares only", [(100, "entry")], 100, 50, False, [100]),
    ("person sells into owned shares", [(30, "migrated"), (70, "entry")], 60, 90, False, [60]),
    ("person sells everything", [(100, "entry")], 0, 150, False, []),
])
def test_sell_trades_shrink_the_ledger(case: str, lots: list[tuple[int, str]], held_after: int, sell: int,
                                       bot: bool, want_lots: list[int]) -> None:
    led = _ledger(INFY=lots)
    book = [_order("S1", "INFY", "SELL", sell)]
    rep = L.reconcile(led, book, {"INFY": held_after}, entry_order_ids=set(),
                      bot_sell_order_ids={"S1"} if bot else set(), session=D1)
    assert [lot["quantity"] for lot in led["lots"].get("INFY", [])] == want_lots, case
    assert rep.shortfalls == [], case
    # A second read of the same book changes nothing.
    before = [dict(x) for x in led["lots"].get("INFY", [])]
    L.reconcile(led, book, {"INFY": held_after}, entry_order_ids=set(),
                bot_sell_order_ids={"S1"} if bot else set(), session=D1)
    assert led["lots"].get("INFY", []) == before


def test_a_bot_stop_fired_on_owned_plus_hand_shares_removes_only_the_owned() -> None:
    # owned 100 + 50 by hand; the bot's stop GTT (100) fired: 50 held after, owned must go to 0,
    # not to 50 (a person's-sale clamp would leave 50 "owned" hand shares).
    led = _ledger(INFY=[(100, "entry")])
    gtts = [{"id": 7, "status": "triggered", "orders": [{"result": {"order_result": {"order_id": "G7"}}}]}]
    bot = L.bot_sell_order_ids({}, [], gtts, owned_gtt_ids={7})
    L.reconcile(led, [_order("G7", "INFY", "SELL", 100)], {"INFY": 50}, entry_order_ids=set(),
                bot_sell_order_ids=bot, session=D1)
    assert L.owned_quantities(led) == {}


def test_an_unexplained_shortfall_is_reported_and_left_until_a_later_sessions_stop_run() -> None:
    led = _ledger(INFY=[(100, "entry")])
    rep = L.reconcile(led, [], {"INFY": 0}, entry_order_ids=set(), bot_sell_order_ids=set(), session=D1,
                      settle_shortfalls=True)
    assert L.owned_quantities(led) == {"INFY": 100} and len(rep.shortfalls) == 1
    # The same session again (even a stop run): still left.
    L.reconcile(led, [], {"INFY": 0}, entry_order_ids=set(), bot_sell_order_ids=set(), session=D1,
                settle_shortfalls=True)
    assert L.owned_quantities(led) == {"INFY": 100}
    # Next session, an entry run: reported, left.
    L.reconcile(led, [], {"INFY": 0}, entry_order_ids=set(), bot_sell_order_ids=set(), session=D2)
    assert L.owned_quantities(led) == {"INFY": 100}
    # Next session, a stop run still sees it: settled.
    rep = L.reconcile(led, [], {"INFY": 0}, entry_order_ids=set(), bot_sell_order_ids=set(), session=D2,
                      settle_shortfalls=True)
    assert L.owned_quantities(led) == {} and led["shortfalls"] == {} and "owned is now 0" in rep.shortfalls[0]


def test_a_shortfall_that_clears_by_itself_is_forgotten() -> None:
    led = _ledger(INFY=[(100, "entry")])
    L.reconcile(led, [], {"INFY": 0}, entry_order_ids=set(), bot_sell_order_ids=set(), session=D1)
    assert "INFY" in led["shortfalls"]
    L.reconcile(led, [], {"INFY": 100}, entry_order_ids=set(), bot_sell_order_ids=set(), session=D2,
                settle_shortfalls=True)
    assert led["shortfalls"] == {} and L.owned_quantities(led) == {"INFY": 100}


def test_yesterdays_applied_fills_are_forgotten_and_not_reapplied() -> None:
    led = L.empty()
    L.reconcile(led, [_order("E1", "INFY", "BUY", 10)], {"INFY": 10}, entry_order_ids={"E1"},
                bot_sell_order_ids=set(), session=D1)
    L.reconcile(led, [], {"INFY": 10}, entry_order_ids={"E1"}, bot_sell_order_ids=set(), session=D2)
    assert led["applied"] == {} and L.owned_quantities(led) == {"INFY": 10}


def test_release_takes_newest_lots_first() -> None:
    led = _ledger(INFY=[(30, "migrated"), (20, "adopted")])
    assert L.remove(led, "INFY", 25, newest_first=True) == 25
    assert led["lots"]["INFY"] == [{**led["lots"]["INFY"][0], "quantity": 25}]


def test_open_sells_split_the_bots_from_everyones() -> None:
    book = [_order("B1", "INFY", "SELL", 10, qty=40, status="OPEN"),
            _order("P1", "INFY", "SELL", 0, qty=5, status="OPEN"),
            _order("X", "INFY", "SELL", 9, qty=9),
            _order("M", "INFY", "SELL", 0, qty=7, status="OPEN", product="MIS")]
    assert L.open_sell_quantities(book, {"B1"}) == ({"INFY": 30}, {"INFY": 35})


def test_bot_sell_ids_come_from_sell_intents_and_owned_fired_gtts_only() -> None:
    intents = {"EXA": {"kind": "order", "params": {"transaction_type": "SELL"}, "broker_id": "O1"},
               "ENB": {"kind": "order", "params": {"transaction_type": "BUY"}, "broker_id": "O2"}}
    gtts = [{"id": 1, "orders": [{"result": {"order_result": {"order_id": "G1"}}}]},
            {"id": 2, "orders": [{"result": {"order_result": {"order_id": "G2"}}}]}]
    book = [{"order_id": "O3", "tag": "EXA"}]
    assert L.bot_sell_order_ids(intents, book, gtts, {1}) == {"O1", "O3", "G1"}
    assert L.entry_order_ids({"ENB": {"kind": "order", "purpose": "entry", "broker_id": "O2"}}) == {"O2"}


def test_a_lot_needs_a_known_source() -> None:
    with pytest.raises(ValueError, match="source"):
        L.lot(1, 1.0, D1, "hand")
