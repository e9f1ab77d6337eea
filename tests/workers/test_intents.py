"""Intent first, then the broker, reconciled.

The restart table of workers/intents.py row by row, on plain data (a broker made of an order book
and a GTT list) with the real StateStore; then the fault hook end to end: a real worker process
SIGKILLed after the intent or after the send, rerun, against the real paper broker.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest

from kitefleet import clock
from kitefleet.clock import IST, clock_from_value
from kitefleet.exitcodes import ExitCode
from kitefleet.state import StateStore
from tests.support.homes import make_home
from workers.broker_errors import BrokerRejected, WriteOutcomeUnknown
from workers.intents import (
    FAILED,
    RESOLVED,
    SENT,
    UNKNOWN,
    UNRESOLVED,
    IntentLog,
    SymbolBlocked,
    is_protective,
    make_tag,
    send_gtt_once,
    send_order_once,
)

DAY1 = date(2026, 3, 4)


# --- tags ------------------------------------------------------------------------------------
def test_make_tag_is_deterministic_short_and_alphanumeric() -> None:
    tag = make_tag("Som", "place_orders_daily", DAY1, "INFY", "entry")
    assert tag == make_tag("Som", "place_orders_daily", DAY1, "infy", "entry")
    assert len(tag) <= 20 and re.fullmatch(r"[A-Z0-9]+", tag)
    assert tag.startswith("EN")
    assert re.fullmatch(r"[A-Z0-9]{1,20}", make_tag("S", "j", DAY1, "M&M", "exit_tranche-1"))


def test_make_tag_differs_for_every_input() -> None:
    base = ("Som", "place_orders_daily", DAY1, "INFY", "entry")
    variants = [
        ("Sai", *base[1:]),
        (base[0], "update_cnc_stoploss", *base[2:]),
        (*base[:2], DAY1 + timedelta(days=1), *base[3:]),
        (*base[:3], "TCS", base[4]),
        (*base[:4], "stop"),
        (*base[:4], "entry2"),
    ]
    tags = {make_tag(*base)} | {make_tag(*v) for v in variants}  # type: ignore[arg-type]
    assert len(tags) == 1 + len(variants)


# --- the restart table on plain data ---------------------------------------------------------
class BookBroker:
    """Today's order book and the GTT list as plain data. ``fail_next`` scripts the next write:
    "reject" (refused), "lost" (timed out, never arrived), "timeout" (arrived, answer lost),
    "false_reject" (arrived and placed, yet reported as a refusal: what a cut-off answer looked
    like before broker_errors mapped it to WriteOutcomeUnknown, and what old state files hold)."""

    def __init__(self) -> None:
        self.book: list[dict[str, Any]] = []
        self.gtts: list[dict[str, Any]] = []
        self.writes = 0
        self.reads = 0
        self.fail_next: str | None = None

    def orders(self) -> list[dict[str, Any]]:
        self.reads += 1
        return [dict(o) for o in self.book]

    def get_gtts(self) -> list[dict[str, Any]]:
        self.reads += 1
        return [dict(g) for g in self.gtts]

    def _fail_before(self) -> str | None:
        mode, self.fail_next = self.fail_next, None
        if mode == "reject":
            raise BrokerRejected("place", "InputException", "Invalid `price`.", 400)
        if mode == "lost":
            raise WriteOutcomeUnknown("place", TimeoutError("read timed out"))
        return mode

    def place_order(self, variety: str, **params: Any) -> str:
        self.writes += 1
        mode = self._fail_before()
        order_id = str(250304000000 + len(self.book))
        self.book.append({"order_id": order_id, "tag": params.get("tag"), "tags": [params.get("tag")],
                          "tradingsymbol": params["tradingsymbol"], "status": "OPEN"})
        if mode == "timeout":
            raise WriteOutcomeUnknown("place_order", TimeoutError("read timed out"))
        if mode == "false_reject":
            raise BrokerRejected("place_order", "ChunkedEncodingError", "IncompleteRead(0 bytes read)", None)
        return order_id

    def place_gtt(self, trigger_type: str, tradingsymbol: str, exchange: str, trigger_values: list[float],
                  last_price: float, orders: list[dict[str, Any]]) -> dict[str, Any]:
        self.writes += 1
        mode = self._fail_before()
        trigger_id = 100 + len(self.gtts)
        self.gtts.append(gtt(trigger_id, tradingsymbol, trigger_values, orders[0]["quantity"]))
        if mode == "timeout":
            raise WriteOutcomeUnknown("place_gtt", TimeoutError("read timed out"))
        if mode == "false_reject":
            raise BrokerRejected("place_gtt", "ChunkedEncodingError", "IncompleteRead(0 bytes read)", None)
        return {"trigger_id": trigger_id}


def gtt(trigger_id: int, symbol: str, triggers: list[float], quantity: int) -> dict[str, Any]:
    return {"id": trigger_id, "status": "active", "type": "single",
            "condition": {"exchange": "NSE", "tradingsymbol": symbol, "trigger_values": triggers},
            "orders": [{"tradingsymbol": symbol, "quantity": quantity, "price": triggers[0]}]}


def order_params(symbol: str = "INFY") -> dict[str, Any]:
    return {"variety": "regular", "exchange": "NSE", "tradingsymbol": symbol, "transaction_type": "BUY",
            "quantity": 5, "product": "CNC", "order_type": "LIMIT", "price": 1000.0}


def gtt_kwargs(symbol: str = "TCS", trigger: float = 900.0, quantity: int = 5) -> dict[str, Any]:
    return {"trigger_type": "single", "tradingsymbol": symbol, "exchange": "NSE", "trigger_values": [trigger],
            "last_price": 1000.0, "orders": [{"exchange": "NSE", "tradingsymbol": symbol,
                                              "transaction_type": "SELL", "quantity": quantity,
                                              "order_type": "LIMIT", "product": "CNC", "price": trigger}]}


def set_day(day: date) -> None:
    clock.set_clock(clock_from_value(f"{day.isoformat()}T10:00:00+05:30,speed=1"))


@pytest.fixture
def log_(tmp_path: Path) -> Iterator[IntentLog]:
    set_day(DAY1)
    home = make_home(tmp_path / "home")
    yield IntentLog(StateStore(home, "Som", "paper"), unknown_poll_seconds=0.2, unknown_poll_interval=0.05)
    clock.set_clock(None)


TAG = make_tag("Som", "place_orders_daily", DAY1, "INFY", "entry")


def test_crash_after_intent_before_send_sends_once_on_restart(log_: IntentLog) -> None:
    broker = BookBroker()
    log_.record(TAG, "order", "INFY", "entry", order_params())  # ...and the process died here
    result = send_order_once(broker, log_, TAG, order_params(), purpose="entry")
    assert result.sent_now and broker.writes == 1
    assert log_.get(TAG)["status"] == SENT and log_.get(TAG)["broker_id"] == result.broker_id
    again = send_order_once(broker, log_, TAG, order_params(), purpose="entry")
    assert not again.sent_now and again.broker_id == result.broker_id and broker.writes == 1


def test_crash_after_send_before_record_finds_the_order_by_tag(log_: IntentLog) -> None:
    broker = BookBroker()
    log_.record(TAG, "order", "INFY", "entry", order_params())
    order_id = broker.place_order(tag=TAG, **order_params())  # sent, then the process died
    report = log_.reconcile(broker)  # on the next start
    assert report.found == {TAG: order_id}
    result = send_order_once(broker, log_, TAG, order_params(), purpose="entry")
    assert (result.sent_now, result.broker_id, broker.writes) == (False, order_id, 1)
    assert log_.get(TAG)["order_status"] == "OPEN"


def test_an_intent_already_sent_costs_no_api_call(log_: IntentLog) -> None:
    broker = BookBroker()
    send_order_once(broker, log_, TAG, order_params(), purpose="entry")
    reads = broker.reads
    send_order_once(broker, log_, TAG, order_params(), purpose="entry")
    assert broker.reads == reads and broker.writes == 1
    assert log_.reconcile(broker).checked == 0 and broker.reads == reads


def test_timeout_after_the_broker_accepted_is_resolved_from_the_book(log_: IntentLog) -> None:
    broker = BookBroker()
    broker.fail_next = "timeout"
    result = send_order_once(broker, log_, TAG, order_params(), purpose="entry")
    assert result.broker_id == broker.book[0]["order_id"] and broker.writes == 1
    assert log_.get(TAG)["status"] == SENT


def test_timeout_that_never_arrived_stops_the_job_and_the_next_run_sends_once(log_: IntentLog) -> None:
    broker = BookBroker()
    broker.fail_next = "lost"
    with pytest.raises(WriteOutcomeUnknown) as info:
        send_order_once(broker, log_, TAG, order_params(), purpose="entry")
    assert info.value.exit_code == ExitCode.BROKER_TEMPORARY
    assert log_.get(TAG)["status"] == UNKNOWN and broker.book == []
    result = send_order_once(broker, log_, TAG, order_params(), purpose="entry")  # the next run
    assert result.sent_now and len(broker.book) == 1 and broker.writes == 2


def test_a_refused_order_is_marked_failed_and_a_rerun_checks_then_sends(log_: IntentLog) -> None:
    broker = BookBroker()
    broker.fail_next = "reject"
    with pytest.raises(BrokerRejected):
        send_order_once(broker, log_, TAG, order_params(), purpose="entry")
    assert log_.get(TAG)["status"] == FAILED
    reads = broker.reads
    result = send_order_once(broker, log_, TAG, order_params(), purpose="entry")
    assert result.sent_now and len(broker.book) == 1
    assert broker.reads == reads + 1  # the book was read for the tag before sending it again


@pytest.mark.parametrize("kind", ["order", "gtt"])
def test_a_failed_intent_the_broker_has_after_all_is_adopted_not_resent(log_: IntentLog, kind: str) -> None:
    broker = BookBroker()
    broker.fail_next = "false_reject"
    if kind == "order":
        with pytest.raises(BrokerRejected):
            send_order_once(broker, log_, TAG, order_params(), purpose="entry")
        assert log_.get(TAG)["status"] == FAILED and len(broker.book) == 1
        result = send_order_once(broker, log_, TAG, order_params(), purpose="entry")  # the next run
        assert (result.sent_now, result.broker_id) == (False, broker.book[0]["order_id"])
        assert len(broker.book) == 1 and log_.get(TAG)["order_status"] == "OPEN"
        tag = TAG
    else:
        tag = make_tag("Som", "update_cnc_stoploss", DAY1, "TCS", "stop")
        with pytest.raises(BrokerRejected):
            send_gtt_once(broker, log_, tag, purpose="stop", **gtt_kwargs())
        result = send_gtt_once(broker, log_, tag, purpose="stop", **gtt_kwargs())
        assert (result.sent_now, result.broker_id, len(broker.gtts)) == (False, "100", 1)
    assert broker.writes == 1 and log_.get(tag)["status"] == SENT


def test_a_failed_intent_whose_tag_is_on_two_orders_is_parked_and_never_resent(log_: IntentLog) -> None:
    broker = BookBroker()
    broker.fail_next = "reject"
    with pytest.raises(BrokerRejected):
        send_order_once(broker, log_, TAG, order_params(), purpose="entry")
    broker.place_order(tag=TAG, **order_params())  # e.g. placed by hand with the same tag, twice
    broker.place_order(tag=TAG, **order_params())
    with pytest.raises(SymbolBlocked, match=TAG):
        send_order_once(broker, log_, TAG, order_params(), purpose="entry")
    assert log_.get(TAG)["status"] == UNRESOLVED and len(broker.book) == 2 and broker.writes == 3


def test_an_earlier_days_unconfirmed_intent_blocks_its_symbol_until_resolved(log_: IntentLog) -> None:
    broker = BookBroker()
    log_.record(TAG, "order", "INFY", "entry", order_params())  # day 1, died before the id
    set_day(DAY1 + timedelta(days=1))  # the book of day 2 no longer shows day 1's orders
    report = log_.reconcile(broker)
    assert report.unresolved == [TAG] and log_.get(TAG)["status"] == UNRESOLVED
    assert log_.blocked_symbols() == {"INFY"}
    tag2 = make_tag("Som", "place_orders_daily", DAY1 + timedelta(days=1), "INFY", "entry")
    with pytest.raises(SymbolBlocked, match=TAG) as info:
        send_order_once(broker, log_, tag2, order_params(), purpose="entry")
    assert info.value.exit_code == ExitCode.RECONCILE_FAILED
    other = make_tag("Som", "place_orders_daily", DAY1 + timedelta(days=1), "TCS", "entry")
    assert send_order_once(broker, log_, other, order_params("TCS"), purpose="entry").sent_now
    log_.mark_resolved(TAG, "checked on Kite web: the order was never placed")
    assert log_.get(TAG)["status"] == RESOLVED and log_.blocked_symbols() == set()
    assert send_order_once(broker, log_, tag2, order_params(), purpose="entry").sent_now


def test_an_unresolved_intent_blocks_new_entries_only_never_stops_or_exits(log_: IntentLog) -> None:
    broker = BookBroker()
    # Yesterday's watchdog exit of INFY timed out and today's book cannot show it: parked.
    old_exit = make_tag("Som", "hourly_candle_watchdog", DAY1, "INFY", "exit1")
    log_.record(old_exit, "order", "INFY", "exit1", order_params())
    day2 = DAY1 + timedelta(days=1)
    set_day(day2)
    assert log_.reconcile(broker).unresolved == [old_exit] and log_.blocked_symbols() == {"INFY"}
    # A new entry of INFY is blocked...
    entry = make_tag("Som", "place_orders_daily", day2, "INFY", "entry")
    with pytest.raises(SymbolBlocked, match=old_exit):
        send_order_once(broker, log_, entry, order_params(), purpose="entry")
    with pytest.raises(SymbolBlocked):
        send_order_once(broker, log_, make_tag("Som", "j", day2, "INFY", "entry2"), order_params(), purpose="entry2")
    assert broker.writes == 0
    # ...its protective stop GTT and today's exit are not.
    stop = make_tag("Som", "update_cnc_stoploss", day2, "INFY", "stop:900:5")
    assert send_gtt_once(broker, log_, stop, purpose="stop:900:5", **gtt_kwargs("INFY")).sent_now
    exit_ = make_tag("Som", "hourly_candle_watchdog", day2, "INFY", "exit1")
    sell = {**order_params(), "transaction_type": "SELL"}
    assert send_order_once(broker, log_, exit_, sell, purpose="exit1").sent_now
    assert broker.writes == 2
    # The unresolved tag itself is never sent again, protective or not.
    with pytest.raises(SymbolBlocked, match=old_exit):
        send_order_once(broker, log_, old_exit, sell, purpose="exit1")
    assert broker.writes == 2 and log_.get(old_exit)["status"] == UNRESOLVED
    assert [is_protective(p) for p in ("stop", "stop:900:5", "exit1", "entry", "entry2", "target")] == \
        [True, True, True, False, False, False]


def test_two_orders_with_one_tag_block_the_symbol(log_: IntentLog) -> None:
    broker = BookBroker()
    log_.record(TAG, "order", "INFY", "entry", order_params())
    broker.place_order(tag=TAG, **order_params())
    broker.place_order(tag=TAG, **order_params())
    report = log_.reconcile(broker)
    assert report.unresolved == [TAG] and len(report.duplicates[TAG]) == 2
    assert log_.blocked_symbols() == {"INFY"}


def test_gtt_after_send_is_found_by_symbol_trigger_and_quantity(log_: IntentLog) -> None:
    broker = BookBroker()
    tag = make_tag("Som", "update_cnc_stoploss", DAY1, "TCS", "stop")
    kwargs = gtt_kwargs()
    params = {k: kwargs[k] for k in ("trigger_type", "exchange", "trigger_values", "last_price", "orders")}
    log_.record(tag, "gtt", "TCS", "stop", params)
    broker.gtts.append(gtt(7, "TCS", [850.0], 5))  # another stop: other trigger
    broker.gtts.append(gtt(8, "TCS", [900.0], 3))  # other quantity
    broker.place_gtt(**kwargs)  # ours, id 102; then the process died
    result = send_gtt_once(broker, log_, tag, purpose="stop", **kwargs)
    assert (result.sent_now, result.broker_id, broker.writes) == (False, "102", 1)


def test_gtt_timeout_resolved_and_a_gtt_claimed_by_another_intent_is_not_reused(log_: IntentLog) -> None:
    broker = BookBroker()
    first = make_tag("Som", "update_cnc_stoploss", DAY1, "TCS", "stop")
    broker.fail_next = "timeout"
    assert send_gtt_once(broker, log_, first, purpose="stop", **gtt_kwargs()).broker_id == "100"
    # A second intent with identical parameters (another purpose) must get its own GTT.
    second = make_tag("Som", "update_cnc_stoploss", DAY1, "TCS", "stop2")
    result = send_gtt_once(broker, log_, second, purpose="stop2", **gtt_kwargs())
    assert result.sent_now and result.broker_id == "101" and broker.writes == 2


def test_prune_forgets_old_closed_intents_only(log_: IntentLog) -> None:
    broker = BookBroker()
    send_order_once(broker, log_, TAG, order_params(), purpose="entry")
    pending = make_tag("Som", "j", DAY1, "TCS", "entry")
    log_.record(pending, "order", "TCS", "entry", order_params("TCS"))
    set_day(DAY1 + timedelta(days=40))
    assert log_.prune(keep_days=30) == 1
    assert set(log_.all()) == {pending}


def test_prune_never_drops_open_unresolved_current_session_or_live_gtt_intents(log_: IntentLog) -> None:
    broker = BookBroker()
    live = make_tag("Som", "update_cnc_stoploss", DAY1, "TCS", "stop:900.00:5")
    gone = make_tag("Som", "update_cnc_stoploss", DAY1, "SBIN", "stop:900.00:5")
    send_gtt_once(broker, log_, live, purpose="stop:900.00:5", **gtt_kwargs())
    send_gtt_once(broker, log_, gone, purpose="stop:900.00:5", **gtt_kwargs("SBIN"))
    parked = make_tag("Som", "j", DAY1, "ITC", "entry")
    log_.record(parked, "order", "ITC", "entry", order_params("ITC"))
    log_._update(parked, status=UNRESOLVED)
    later = DAY1 + timedelta(days=40)
    today_tag = make_tag("Som", "j", later, "LT", "entry")
    with log_.store.transaction() as state:  # an intent of today's session recorded with an old date
        state["intents"][today_tag] = dict(state["intents"][parked], tag=today_tag, status="sent",
                                           session=later.isoformat())
    set_day(later)
    live_id = log_.get(live)["broker_id"]
    assert log_.prune(keep_days=30, active_gtt_ids=[int(live_id)]) == 1
    assert set(log_.all()) == {live, parked, today_tag}
    assert log_.store.read()["meta"]["intents_pruned_on"] == later.isoformat()


def test_intent_times_are_in_ist(log_: IntentLog) -> None:
    log_.record(TAG, "order", "INFY", "entry", order_params())
    created = log_.get(TAG)["created_at"]
    assert created.endswith("+05:30") and log_.get(TAG)["placed_on"] == DAY1.isoformat()
    assert IST.key == "Asia/Kolkata"


def test_a_new_order_parses_the_state_file_three_times(log_: IntentLog, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 13, fewer parses per write: the intent commit before the call and the id commit after
    it are the floor (one parse each); the checks before the write share one lock-free read."""
    import kitefleet.state as state_module

    parses = 0
    real_parse = state_module._parse

    def counting(raw: bytes) -> tuple[dict[str, Any] | None, str | None]:
        nonlocal parses
        parses += 1
        return real_parse(raw)

    broker = BookBroker()
    send_order_once(broker, log_, TAG, order_params(), purpose="entry")  # the file exists from now on
    monkeypatch.setattr(state_module, "_parse", counting)
    other = make_tag("Som", "place_orders_daily", DAY1, "TCS", "entry")
    assert send_order_once(broker, log_, other, order_params("TCS"), purpose="entry").sent_now
    assert parses == 3 and broker.writes == 2
