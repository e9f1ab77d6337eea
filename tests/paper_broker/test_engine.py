"""The order engine in-process: a real SQLite database, a scripted stand-in market (same contract
as ``kitefleet.sim.market.Market``, prices set per minute by the test) and a clock the test moves."""

from __future__ import annotations

import json
import math
import random
from datetime import date, datetime, time, timedelta
from pathlib import Path

import pytest

from kitefleet import sim
from kitefleet.calendar import NseCalendar
from kitefleet.clock import IST, Clock
from kitefleet.sim.universe import Instrument
from kitefleet.ticks import round_to_tick
from paper_broker.db import Account, Database
from paper_broker.engine import EXPIRY_MESSAGE, OrderEngine
from paper_broker.errors import KiteError

INFY, TCS, NIFTY = 408065, 2953217, 256265
MON, TUE, WED, THU, FRI = (date(2026, 11, 23) + timedelta(days=i) for i in range(5))
HOLIDAY = WED  # a holiday in this test calendar only
START_CASH = 1_000_000.0
SCRIPTED_VOLUME = 10_000_000


def make_calendar() -> NseCalendar:
    days = []
    d = date(2026, 10, 1)
    while d <= date(2027, 1, 31):
        if d.weekday() < 5 and d != HOLIDAY:
            days.append(d)
        d += timedelta(days=1)
    return NseCalendar(tuple(days))


class ManualClock(Clock):
    simulated = True

    def __init__(self, start: datetime) -> None:
        self.t = start

    def now(self) -> datetime:
        return self.t


class ScriptedMarket:
    """The Market contract on a piecewise-constant path: ``set_path`` names the minute closes from
    given minutes on; a minute's low/high span the previous close and its own close."""

    def __init__(self, calendar: NseCalendar) -> None:
        self.calendar = calendar
        self.instruments = [
            Instrument(INFY, 1594, "INFY", "INFOSYS", "NSE", "NSE", "EQ", 1, 0.05, 1500.0, True),
            Instrument(TCS, 11536, "TCS", "TCS", "NSE", "NSE", "EQ", 1, 0.1, 3000.0, True),
            Instrument(NIFTY, 1001, "NIFTY 50", "NIFTY 50", "NSE", "INDICES", "EQ", 0, 0.05, 26000.0, False),
        ]
        self._by_token = {i.instrument_token: i for i in self.instruments}
        self._days: dict[tuple[int, date], tuple[float, list[float]]] = {}

    def instrument(self, key: str | int) -> Instrument | None:
        if isinstance(key, int):
            return self._by_token.get(key)
        key = key.split(":", 1)[-1]
        return next((i for i in self.instruments if i.tradingsymbol == key), None)

    def set_path(self, token: int, day: date, moves: dict[str, float], day_open: float | None = None) -> None:
        opening, closing = self.calendar.session_bounds(day)
        n = int((closing - opening).total_seconds() // 60)
        level = day_open if day_open is not None else self.prev_close(token, day)
        closes = []
        marks = {(datetime.combine(day, time.fromisoformat(k), IST) - opening).seconds // 60: v
                 for k, v in moves.items()}
        for i in range(n):
            level = marks.get(i, level)
            closes.append(level)
        self._days[(token, day)] = (day_open if day_open is not None else closes[0], closes)

    def _day(self, token: int, day: date) -> tuple[float, list[float], datetime]:
        opening, closing = self.calendar.session_bounds(day)
        if (token, day) not in self._days:
            pc = self.prev_close(token, day)
            return pc, [pc] * int((closing - opening).total_seconds() // 60), opening
        o, closes = self._days[(token, day)]
        return o, closes, opening

    def prev_close(self, token: int, day: date) -> float:
        earlier = [d for (t, d) in self._days if t == token and d < day]
        if not earlier:
            return self._by_token[token].base_price
        return self._days[(token, max(earlier))][1][-1]

    def _done(self, opening: datetime, n: int, now: datetime) -> int:
        return max(0, min(n, int((now - opening).total_seconds() // 60)))

    def ltp(self, token: int, now: datetime) -> float:
        day = now.date()
        if not self.calendar.is_trading_day(day):
            return self.prev_close(token, day)
        o, closes, opening = self._day(token, day)
        if now < opening:
            return self.prev_close(token, day)
        done = self._done(opening, len(closes), now)
        return closes[done - 1] if done else o

    def day_ohlcv(self, token: int, now: datetime) -> tuple[float, float, float, float, int]:
        o, closes, opening = self._day(token, now.date())
        done = self._done(opening, len(closes), now)
        seen = [o, *closes[:done]]
        return o, max(seen), min(seen), self.ltp(token, now), 0

    def circuit_limits(self, token: int, day: date) -> tuple[float, float]:
        pc, tick = self.prev_close(token, day), self._by_token[token].tick_size
        return round_to_tick(pc * 0.9, tick, "ceil"), round_to_tick(pc * 1.1, tick, "floor")

    # A locked book (spread 0) with a deep, busy market: the tests here pin the engine's state
    # machine at the LTP; spread, depth and partial fills are tests/kitefleet/test_sim.py's and
    # tests/paper_broker/test_fills_client.py's.
    def book(self, token: int, now: datetime) -> sim.Book:
        tick = self._by_token[token].tick_size
        lower, upper = (sim.to_ticks(p, tick) for p in self.circuit_limits(token, now.date()))
        return sim.book_at(sim.to_ticks(self.ltp(token, now), tick), 0, 0, lower, upper, SCRIPTED_VOLUME, tick,
                           [0.0] * 10)

    def minute_bars(self, token: int, t0: datetime, t1: datetime) -> list[sim.Bar]:
        tick = self._by_token[token].tick_size
        out = []
        for start, low, high, close in self.minutes_between(token, t0, t1):
            lower, upper = (sim.to_ticks(p, tick) for p in self.circuit_limits(token, start.date()))
            o = sim.to_ticks(self.ltp(token, start), tick)
            ticks = [sim.to_ticks(p, tick) for p in (low, high, close)]
            out.append(sim.Bar(start, o, *ticks, SCRIPTED_VOLUME, 0, 0, lower, upper, tick))
        return out

    def minutes_between(self, token: int, t0: datetime, t1: datetime) -> list[tuple[datetime, float, float, float]]:
        out = []
        for day in self.calendar.trading_days_between(t0.date(), t1.date()):
            o, closes, opening = self._day(token, day)
            first = max(0, math.floor((t0 - opening).total_seconds() / 60))
            stop = min(len(closes), math.floor((t1 - opening).total_seconds() / 60))
            for i in range(first, stop):
                before = closes[i - 1] if i else o
                out.append((opening + timedelta(minutes=i), min(before, closes[i]), max(before, closes[i]),
                            closes[i]))
        return out


def at(day: date, hhmm: str) -> datetime:
    return datetime.combine(day, time.fromisoformat(hhmm), IST)


class Rig:
    def __init__(self, tmp_path: Path, start: datetime) -> None:
        self.path = tmp_path / "paper.db"
        self.calendar = make_calendar()
        self.market = ScriptedMarket(self.calendar)
        self.clock = ManualClock(start)
        self.db = Database(self.path)
        self.engine = OrderEngine(self.db, self.market, self.calendar, self.clock)
        self.som = Account("key_som", "s", "PA0001", "Som", START_CASH)
        self.sai = Account("key_sai", "s", "PA0002", "Sai", START_CASH)
        for acct in (self.som, self.sai):
            self.engine.ensure_account(acct)

    def move(self, to: datetime) -> None:
        self.clock.t = to
        self.engine.advance()

    def restart(self) -> None:
        self.db.close()
        self.db = Database(self.path)
        self.engine = OrderEngine(self.db, self.market, self.calendar, self.clock)

    def place(self, account: Account | None = None, variety: str = "regular", **params: object) -> str:
        base: dict[str, object] = {"exchange": "NSE", "tradingsymbol": "INFY", "transaction_type": "BUY",
                                   "quantity": 10, "product": "CNC", "order_type": "LIMIT"}
        base.update(params)
        form = {k: str(v) for k, v in base.items() if v is not None}
        return self.engine.place_order(account or self.som, variety, form)["order_id"]

    def order(self, order_id: str, account: Account | None = None) -> dict[str, object]:
        return self.engine.order_history(account or self.som, order_id)[-1]

    def statuses(self, order_id: str) -> list[str]:
        return [row["status"] for row in self.engine.order_history(self.som, order_id)]

    def net(self, account: Account | None = None) -> float:
        return float(self.engine.margins(account or self.som, "equity")["net"])

    def holding(self, symbol: str = "INFY") -> dict[str, object] | None:
        return next((h for h in self.engine.holdings(self.som) if h["tradingsymbol"] == symbol), None)

    def position(self, symbol: str = "INFY") -> dict[str, object] | None:
        return next((p for p in self.engine.positions(self.som)["net"] if p["tradingsymbol"] == symbol), None)


@pytest.fixture
def rig(tmp_path: Path) -> Rig:
    return Rig(tmp_path, at(MON, "10:00:30"))


# --- fills -----------------------------------------------------------------------------------
def test_market_buy_fills_at_ltp_with_full_history(rig: Rig) -> None:
    oid = rig.place(order_type="MARKET", market_protection=-1, tag="entryINFY")
    assert len(oid) == 15 and oid.startswith("261123")
    assert rig.statuses(oid) == ["PUT ORDER REQ RECEIVED", "VALIDATION PENDING", "OPEN PENDING", "OPEN",
                                 "COMPLETE"]
    book = rig.engine.orders(rig.som)
    assert [(o["order_id"], o["status"], o["average_price"], o["tag"], o["tags"]) for o in book] == [
        (oid, "COMPLETE", 1500.0, "entryINFY", ["entryINFY", "mktp", "mktp:3.00"])]
    (trade,) = rig.engine.order_trades(rig.som, oid)
    assert trade["average_price"] == 1500.0 and trade["order_timestamp"] == "10:00:30"
    assert trade["fill_timestamp"] == "2026-11-23 10:00:30"
    assert rig.engine.trades(rig.som) == [trade]
    assert rig.net() == START_CASH - 15_000
    assert rig.position()["quantity"] == 10 and rig.holding() is None


def test_protected_orders_show_their_limit_and_mktp_tags(rig: Rig) -> None:
    """Kite turns a MARKET / SL-M order with market_protection into a protected LIMIT: the book
    shows it as a LIMIT (SL-M: SL) at the protection bound, ``market_protection`` 0 and the
    ``mktp`` tags, as Zerodha's response samples show (issue 17)."""
    buy = rig.place(order_type="MARKET", market_protection=2, quantity=20, tag="entryINFY")
    sell = rig.place(transaction_type="SELL", order_type="MARKET", market_protection=-1, quantity=5)
    slm = rig.place(transaction_type="SELL", order_type="SL-M", trigger_price=1480, market_protection=5)
    limit = rig.place(price=1490, tag="plain")
    book = {o["order_id"]: o for o in rig.engine.orders(rig.som)}
    shown = {oid: (book[oid]["order_type"], book[oid]["price"], book[oid]["tag"], book[oid].get("tags"))
             for oid in (buy, sell, slm, limit)}
    assert shown == {
        buy: ("LIMIT", 1530.0, "entryINFY", ["entryINFY", "mktp", "mktp:2.00"]),  # 1500 + 2 %
        sell: ("LIMIT", 1455.0, None, ["mktp", "mktp:3.00"]),  # -1 (auto) is 3 % here
        slm: ("SL", 1406.0, None, ["mktp", "mktp:5.00"]),  # the trigger 1480 - 5 %
        limit: ("LIMIT", 1490.0, "plain", ["plain"]),
    }
    assert book[buy]["market_protection"] == 0 and book[sell]["market_protection"] == 0
    # Fills and funds are as before: the MARKET orders filled at the LTP, the BUY cost 20 x 1500.
    assert (book[buy]["average_price"], book[sell]["average_price"]) == (1500.0, 1500.0)
    assert rig.engine.order_history(rig.som, slm)[-1]["tags"] == ["mktp", "mktp:5.00"]
    assert rig.net() == START_CASH - 20 * 1500.0 + 5 * 1500.0 - 10 * 1490.0
    # Modified into a LIMIT, the order loses the protection tags and shows its own price.
    rig.engine.modify_order(rig.som, "regular", slm, {"order_type": "SL", "price": "1475"})
    o = rig.order(slm)
    assert (o["order_type"], o["price"], "tags" in o) == ("SL", 1475.0, False)


def test_protected_amo_shows_the_bound_it_is_released_with(rig: Rig) -> None:
    rig.clock.t = at(MON, "18:00")
    mkt = rig.place(variety="amo", order_type="MARKET", market_protection=-1)
    o = rig.order(mkt)
    assert (o["status"], o["order_type"], o["price"], o["tags"]) == (
        "AMO REQ RECEIVED", "LIMIT", 1545.0, ["mktp", "mktp:3.00"])
    rig.market.set_path(INFY, MON, {"09:15": 1480.0})  # Monday closes at 1480: the bound follows it
    rig.market.set_path(INFY, TUE, {"09:15": 1495.0}, day_open=1495.0)
    rig.move(at(TUE, "09:15"))
    assert rig.order(mkt)["price"] == round_to_tick(1480.0 * 1.03, 0.05, "floor")


def test_resting_limit_fills_when_a_minute_crosses(rig: Rig) -> None:
    rig.market.set_path(INFY, MON, {"10:30": 1490.0, "10:45": 1500.0})
    oid = rig.place(price=1495)
    assert rig.order(oid)["status"] == "OPEN"
    assert rig.net() == START_CASH - 14_950  # blocked while open
    rig.move(at(MON, "10:30:59"))
    assert rig.order(oid)["status"] == "OPEN"  # the 10:30 minute is not complete yet
    rig.move(at(MON, "11:00"))
    o = rig.order(oid)
    assert (o["status"], o["average_price"], o["exchange_update_timestamp"]) == (
        "COMPLETE", 1495.0, "2026-11-23 10:31:00")
    assert rig.net() == START_CASH - 14_950


def test_marketable_limit_fills_at_ltp_on_arrival(rig: Rig) -> None:
    oid = rig.place(price=1510)
    assert rig.order(oid)["average_price"] == 1500.0
    sell = rig.place(transaction_type="SELL", price=1490)
    assert rig.order(sell)["average_price"] == 1500.0


def test_stop_loss_waits_for_its_trigger(rig: Rig) -> None:
    rig.place(order_type="MARKET", market_protection=5, quantity=20)
    rig.market.set_path(INFY, MON, {"11:00": 1470.0})
    slm = rig.place(transaction_type="SELL", order_type="SL-M", trigger_price=1480, market_protection=5)
    sl = rig.place(transaction_type="SELL", order_type="SL", trigger_price=1485, price=1482)
    assert rig.order(slm)["status"] == rig.order(sl)["status"] == "TRIGGER PENDING"
    rig.move(at(MON, "11:05"))
    assert rig.statuses(slm)[-3:] == ["TRIGGER PENDING", "OPEN", "COMPLETE"]
    assert rig.order(slm)["average_price"] == 1480.0
    assert rig.order(sl)["average_price"] == 1485.0
    assert rig.position()["quantity"] == 0


def test_buy_stop_must_sit_above_the_ltp(rig: Rig) -> None:
    with pytest.raises(KiteError, match="higher than the last traded price"):
        rig.place(order_type="SL", trigger_price=1490, price=1495)


# --- immediate errors and the circuit ----------------------------------------------------------
@pytest.mark.parametrize(("params", "error_type", "fragment"), [
    ({"quantity": None}, "InputException", "quantity"),
    ({"price": 1500.03}, "InputException", "Tick size"),
    ({"order_type": "MARKET"}, "InputException", "market protection"),
    ({"order_type": "SL-M", "trigger_price": 1510}, "InputException", "market protection"),
    ({"price": 1500, "tag": "t" * 21}, "InputException", "tag"),
    ({"price": 1500, "product": "MIS"}, "InputException", "CNC"),
    ({"price": 26000, "tradingsymbol": "NIFTY 50"}, "InputException", "index"),
    ({"price": 1500, "tradingsymbol": "NOPE"}, "InputException", "tradingsymbol"),
])
def test_immediate_errors_create_no_order(rig: Rig, params: dict[str, object], error_type: str,
                                          fragment: str) -> None:
    with pytest.raises(KiteError) as info:
        rig.place(**params)
    assert (info.value.error_type, info.value.status) == (error_type, 400)
    assert fragment.lower() in info.value.message.lower()
    assert rig.engine.orders(rig.som) == []


@pytest.mark.parametrize(("params", "error_type", "fragment"), [
    ({"price": 1500, "quantity": 1000}, "MarginException",
     "Insufficient funds. Required margin is 1500000.00 but available margin is 1000000.00. "
     "Check the orderbook for open orders."),
    ({"price": 1500, "transaction_type": "SELL"}, "HoldingException", "Insufficient stock holding"),
])
@pytest.mark.parametrize("mode", ["row", "error"])
def test_rms_refusals_leave_a_rejected_row_with_the_tag(rig: Rig, params: dict[str, object], error_type: str,
                                                        fragment: str, mode: str) -> None:
    rig.engine.rms_reject = mode
    if mode == "error":
        with pytest.raises(KiteError) as info:
            rig.place(tag="entryX1", **params)
        assert (info.value.error_type, info.value.status) == (error_type, 400)
        assert fragment in info.value.message
    else:
        assert rig.place(tag="entryX1", **params)
    (o,) = rig.engine.orders(rig.som)
    assert (o["status"], o["tag"], o["pending_quantity"]) == ("REJECTED", "entryX1", 0)
    assert fragment in o["status_message"]
    assert (o["exchange_order_id"], o["exchange_timestamp"], o["exchange_update_timestamp"]) == (None, None, None)
    assert rig.net() == START_CASH  # nothing blocked


def test_session_rules_for_regular_and_amo(rig: Rig) -> None:
    with pytest.raises(KiteError, match="outside market hours"):
        rig.place(variety="amo", price=1500)
    rig.clock.t = at(MON, "16:00")
    with pytest.raises(KiteError, match="Markets are closed"):
        rig.place(price=1500)
    assert rig.engine.orders(rig.som) == []


def test_price_outside_the_circuit_is_a_rejected_row(rig: Rig) -> None:
    oid = rig.place(price=1700)
    o = rig.order(oid)
    assert o["status"] == "REJECTED" and o["pending_quantity"] == 0
    assert o["status_message"] == ("Your order price is higher than the current upper circuit limit of 1650. "
                                   "Place an order within the daily range.")
    assert rig.statuses(oid) == ["PUT ORDER REQ RECEIVED", "VALIDATION PENDING", "REJECTED"]
    assert rig.net() == START_CASH


# --- modify, cancel, expiry, AMO --------------------------------------------------------------------
def test_modify_cancel_and_the_modification_cap(rig: Rig) -> None:
    oid = rig.place(price=1400)
    rig.engine.modify_order(rig.som, "regular", oid, {"price": "1410", "quantity": "5"})
    o = rig.order(oid)
    assert (o["price"], o["quantity"], o["modified"], o["status"]) == (1410.0, 5, True, "OPEN")
    assert rig.statuses(oid)[-4:] == ["MODIFY VALIDATION PENDING", "MODIFY PENDING", "MODIFIED", "OPEN"]
    assert rig.net() == START_CASH - 7_050
    for i in range(24):
        rig.engine.modify_order(rig.som, "regular", oid, {"price": str(1360 + i)})
    with pytest.raises(KiteError) as info:
        rig.engine.modify_order(rig.som, "regular", oid, {"price": "1350"})
    assert info.value.error_type == "OrderException"
    assert info.value.message == "Maximum allowed order modifications exceeded."
    rig.engine.cancel_order(rig.som, "regular", oid, {})
    o = rig.order(oid)
    assert (o["status"], o["cancelled_quantity"]) == ("CANCELLED", 5)
    assert rig.net() == START_CASH
    with pytest.raises(KiteError, match="cancelled"):
        rig.engine.cancel_order(rig.som, "regular", oid, {})


def test_modify_to_a_marketable_price_fills_and_modify_checks_funds(rig: Rig) -> None:
    oid = rig.place(price=1400)
    with pytest.raises(KiteError) as info:
        rig.engine.modify_order(rig.som, "regular", oid, {"quantity": "800"})
    assert info.value.error_type == "MarginException"
    with pytest.raises(KiteError) as info:
        rig.engine.modify_order(rig.som, "regular", oid, {"price": "1700"})
    assert info.value.error_type == "OrderException" and "circuit" in info.value.message
    rig.engine.modify_order(rig.som, "regular", oid, {"price": "1505"})
    assert rig.order(oid)["status"] == "COMPLETE" and rig.order(oid)["average_price"] == 1500.0


def test_day_orders_expire_at_the_close(rig: Rig) -> None:
    oid = rig.place(price=1400)
    stop = rig.place(order_type="SL", trigger_price=1600, price=1605, quantity=1)
    rig.move(at(MON, "15:29:59"))
    assert rig.order(oid)["status"] == "OPEN"
    rig.move(at(MON, "15:30"))
    for order_id in (oid, stop):
        o = rig.order(order_id)
        assert (o["status"], o["status_message"], o["cancelled_quantity"]) == (
            "CANCELLED", EXPIRY_MESSAGE, o["quantity"])
    assert rig.net() == START_CASH
    rig.move(at(TUE, "09:00"))
    assert rig.engine.orders(rig.som) == []  # yesterday's book is gone
    assert rig.engine.order_history(rig.som, oid)[-1]["status"] == "CANCELLED"


def test_amo_waits_for_the_open(rig: Rig) -> None:
    rig.clock.t = at(MON, "18:00")
    mkt = rig.place(variety="amo", order_type="MARKET", market_protection=-1)
    lim = rig.place(variety="amo", price=1490)
    assert rig.order(mkt)["status"] == "AMO REQ RECEIVED" and rig.order(mkt)["exchange_order_id"] is None
    rig.engine.modify_order(rig.som, "amo", lim, {"price": "1491"})
    rig.market.set_path(INFY, TUE, {"09:15": 1495.0, "09:40": 1489.0}, day_open=1495.0)
    rig.move(at(TUE, "09:15"))
    assert rig.order(mkt)["status"] == "OPEN"
    rig.move(at(TUE, "09:16"))
    o = rig.order(mkt)
    assert (o["status"], o["average_price"], o["variety"]) == ("COMPLETE", 1495.0, "amo")
    assert rig.statuses(mkt) == ["PUT ORDER REQ RECEIVED", "VALIDATION PENDING", "AMO REQ RECEIVED",
                                 "OPEN PENDING", "OPEN", "COMPLETE"]
    assert rig.order(lim)["status"] == "OPEN"
    rig.engine.modify_order(rig.som, "regular", lim, {"price": "1492"})  # either variety after the open
    rig.move(at(TUE, "10:00"))
    assert rig.order(lim)["average_price"] == 1492.0


def test_amo_gap_through_the_limit_fills_at_the_open(rig: Rig) -> None:
    rig.clock.t = at(MON, "20:00")
    oid = rig.place(variety="amo", price=1490)
    rig.market.set_path(INFY, TUE, {"09:15": 1485.0}, day_open=1480.0)
    rig.move(at(TUE, "09:20"))
    assert rig.order(oid)["average_price"] == 1480.0


# --- CNC settlement -----------------------------------------------------------------------------------
def test_t1_settlement_across_a_holiday(rig: Rig) -> None:
    rig.clock.t = at(TUE, "10:00")
    rig.place(order_type="MARKET", market_protection=-1)
    assert rig.holding() is None and rig.position()["quantity"] == 10
    rig.move(at(HOLIDAY, "10:00"))
    h = rig.holding()
    assert (h["quantity"], h["t1_quantity"], h["realised_quantity"], h["opening_quantity"]) == (0, 10, 0, 10)
    assert rig.position() is None
    rig.move(at(THU, "12:00"))  # T+1 (the first trading day after the buy)
    assert (rig.holding()["quantity"], rig.holding()["t1_quantity"]) == (0, 10)
    rig.move(at(FRI, "09:00"))
    assert (rig.holding()["quantity"], rig.holding()["t1_quantity"]) == (10, 0)
    assert rig.holding()["average_price"] == 1500.0


def test_same_day_sell_of_a_cnc_buy_and_pending_sales(rig: Rig) -> None:
    rig.place(order_type="MARKET", market_protection=-1)
    rig.market.set_path(INFY, MON, {"10:10": 1510.0})
    rig.move(at(MON, "10:20"))
    resting = rig.place(transaction_type="SELL", price=1600, quantity=6)
    refused = rig.place(transaction_type="SELL", price=1600, quantity=5)
    assert "Insufficient stock holding" in rig.order(refused)["status_message"]
    rig.engine.cancel_order(rig.som, "regular", resting, {})
    rig.place(transaction_type="SELL", order_type="MARKET", market_protection=-1)
    p = rig.position()
    assert (p["quantity"], p["buy_quantity"], p["sell_quantity"], p["pnl"]) == (0, 10, 10, 100.0)
    summary = rig.engine.account_summary(rig.som)
    assert summary["realised_pnl"] == 100.0 and summary["cash"] == START_CASH + 100
    rig.move(at(TUE, "10:00"))
    assert rig.engine.holdings(rig.som) == [] and rig.engine.positions(rig.som) == {"net": [], "day": []}


def test_selling_settled_holdings_shows_used_quantity(rig: Rig) -> None:
    rig.place(order_type="MARKET", market_protection=-1)
    rig.move(at(WED, "10:00"))
    rig.move(at(FRI, "10:00"))
    assert rig.holding()["quantity"] == 10
    rig.place(transaction_type="SELL", order_type="MARKET", market_protection=-1, quantity=4)
    h = rig.holding()
    assert (h["quantity"], h["used_quantity"]) == (10, 4)
    assert rig.position()["quantity"] == -4
    rig.move(at(date(2026, 11, 30), "10:00"))
    assert (rig.holding()["quantity"], rig.holding()["used_quantity"]) == (6, 0)
    margins = rig.engine.margins(rig.som, None)
    assert set(margins) == {"equity", "commodity"} and margins["equity"]["available"]["intraday_payin"] == 0


# --- persistence ------------------------------------------------------------------------------------
def test_restart_catches_up_fills_expiry_and_settlement(rig: Rig) -> None:
    oid = rig.place(price=1495)
    other = rig.place(price=1400, quantity=1)
    rig.market.set_path(INFY, MON, {"11:00": 1494.0})
    rig.db.close()
    rig.clock.t = at(TUE, "12:00")  # down across the fill, the close and the roll
    rig.restart()
    assert rig.engine.high_water_mark == at(TUE, "12:00")
    assert rig.order(oid)["exchange_update_timestamp"] == "2026-11-23 11:01:00"
    assert rig.order(other)["status"] == "CANCELLED"
    assert rig.holding()["t1_quantity"] == 10
    rig.restart()  # idempotent
    assert len(rig.engine.order_trades(rig.som, oid)) == 1


def test_advance_touches_nothing_until_a_minute_completes(rig: Rig) -> None:
    """The broker calls advance on every request and five times a second: until the next minute
    completes it must not touch the database or the market. (Its cost per call is printed by
    bench/bench_orders.py; a wall-time assert here would test the machine.)"""
    rig.place(price=1400)
    statements: list[str] = []
    rig.db.conn().set_trace_callback(statements.append)
    market_calls = 0
    minutes_between = rig.market.minutes_between

    def counted(token: int, t0: datetime, t1: datetime) -> list[tuple[datetime, float, float, float]]:
        nonlocal market_calls
        market_calls += 1
        return minutes_between(token, t0, t1)

    rig.market.minutes_between = counted  # type: ignore[method-assign]
    for second in ("10:00:30", "10:00:45", "10:00:59.999"):
        rig.clock.t = at(MON, second)
        for _ in range(100):
            rig.engine.advance()
    assert (statements, market_calls) == ([], 0)
    rig.move(at(MON, "10:01"))
    assert statements and market_calls, "a completed minute is processed"


# --- GTT ------------------------------------------------------------------------------------------
def gtt(kind: str, triggers: list[float], last: float, legs: list[tuple[str, float]], qty: int = 10,
        symbol: str = "INFY") -> dict[str, str]:
    return {
        "type": kind,
        "condition": json.dumps({"exchange": "NSE", "tradingsymbol": symbol, "trigger_values": triggers,
                                 "last_price": last}),
        "orders": json.dumps([{"exchange": "NSE", "tradingsymbol": symbol, "transaction_type": side,
                               "quantity": qty, "order_type": "LIMIT", "product": "CNC", "price": price}
                              for side, price in legs]),
    }


def test_single_gtt_fires_and_places_a_limit_order(rig: Rig) -> None:
    rig.place(order_type="MARKET", market_protection=-1)
    tid = rig.engine.place_gtt(rig.som, gtt("single", [1480], 1500, [("SELL", 1475)]))["trigger_id"]
    assert isinstance(tid, int)
    rig.market.set_path(INFY, MON, {"11:00": 1478.0})
    rig.move(at(MON, "11:00:59"))
    assert rig.engine.get_gtt(rig.som, tid)["status"] == "active"
    rig.move(at(MON, "11:30"))
    g = rig.engine.get_gtt(rig.som, tid)
    result = g["orders"][0]["result"]
    assert g["status"] == "triggered" and result["order_result"]["status"] == "success"
    assert result["triggered_at"] == 1478.0 and result["timestamp"] == "2026-11-23 11:01:00"
    o = rig.order(result["order_result"]["order_id"])
    assert (o["order_type"], o["price"], o["status"], o["average_price"]) == ("LIMIT", 1475.0, "COMPLETE", 1478.0)


def test_two_leg_gtt_is_one_cancels_other(rig: Rig) -> None:
    rig.place(order_type="MARKET", market_protection=-1)
    tid = rig.engine.place_gtt(rig.som, gtt("two-leg", [1480, 1550], 1500, [("SELL", 1475), ("SELL", 1550)]))
    tid_ = tid["trigger_id"]
    rig.market.set_path(INFY, MON, {"11:00": 1560.0, "12:00": 1470.0})
    rig.move(at(MON, "13:00"))
    g = rig.engine.get_gtt(rig.som, tid_)
    assert g["status"] == "triggered"
    assert g["orders"][0]["result"] is None
    assert g["orders"][1]["result"]["order_result"]["status"] == "success"
    sells = [o for o in rig.engine.orders(rig.som) if o["transaction_type"] == "SELL"]
    assert [(o["price"], o["average_price"]) for o in sells] == [(1550.0, 1560.0)]


def test_gtt_whose_order_is_refused_records_the_reason(rig: Rig) -> None:
    tid = rig.engine.place_gtt(rig.som, gtt("single", [1480], 1500, [("BUY", 1480)], qty=5000))["trigger_id"]
    rig.market.set_path(INFY, MON, {"11:00": 1479.0})
    rig.move(at(MON, "11:10"))
    result = rig.engine.get_gtt(rig.som, tid)["orders"][0]["result"]["order_result"]
    assert result["status"] == "failed" and result["order_id"]
    assert "Insufficient funds" in result["rejection_reason"]
    assert rig.order(result["order_id"])["status"] == "REJECTED"


def test_gtt_modify_delete_limit_and_isolation(rig: Rig) -> None:
    tid = rig.engine.place_gtt(rig.som, gtt("single", [1400], 1500, [("BUY", 1400)], qty=1))["trigger_id"]
    rig.engine.modify_gtt(rig.som, tid, gtt("single", [1450], 1500, [("BUY", 1450)], qty=2))
    g = rig.engine.get_gtt(rig.som, tid)
    assert g["condition"]["trigger_values"] == [1450] and g["orders"][0]["quantity"] == 2
    with pytest.raises(KiteError):
        rig.engine.get_gtt(rig.sai, tid)
    with pytest.raises(KiteError):
        rig.engine.delete_gtt(rig.sai, tid)
    assert rig.engine.gtts(rig.sai) == []
    rig.engine.delete_gtt(rig.som, tid)
    assert rig.engine.gtts(rig.som) == [] and rig.engine.get_gtt(rig.som, tid)["status"] == "deleted"
    for _ in range(250):
        rig.engine.place_gtt(rig.sai, gtt("single", [1400], 1500, [("BUY", 1400)], qty=1))
    with pytest.raises(KiteError, match="250"):
        rig.engine.place_gtt(rig.sai, gtt("single", [1400], 1500, [("BUY", 1400)], qty=1))
    with pytest.raises(KiteError, match="Tick size"):
        rig.engine.place_gtt(rig.som, gtt("single", [1400], 1500, [("BUY", 1400.01)], qty=1))


def test_accounts_never_see_each_others_orders(rig: Rig) -> None:
    oid = rig.place(price=1400)
    assert rig.engine.orders(rig.sai) == []
    for call in (lambda: rig.engine.order_history(rig.sai, oid), lambda: rig.engine.order_trades(rig.sai, oid),
                 lambda: rig.engine.cancel_order(rig.sai, "regular", oid, {}),
                 lambda: rig.engine.modify_order(rig.sai, "regular", oid, {"price": "1401"})):
        with pytest.raises(KiteError, match="order_id"):
            call()
    assert rig.order(oid)["status"] == "OPEN"


# --- invariant over a random sequence ----------------------------------------------------------------
def test_random_orders_keep_cash_cost_and_realised_in_balance(tmp_path: Path) -> None:
    rig = Rig(tmp_path, at(MON, "09:20"))
    rnd = random.Random(7)
    for day in (MON, TUE, THU, FRI):
        for token, base in ((INFY, 1500.0), (TCS, 3000.0)):
            tick = 0.05 if token == INFY else 0.1
            moves = {f"{9 + (15 + m) // 60:02d}:{(15 + m) % 60:02d}": round_to_tick(base * (1 + rnd.uniform(-.04, .04)),
                                                                                   tick)
                     for m in range(0, 370, 10)}
            rig.market.set_path(token, day, moves)
    accounts = (rig.som, rig.sai)
    placed: dict[str, list[str]] = {a.api_key: [] for a in accounts}
    t = at(MON, "09:20")
    while t < at(FRI, "15:40"):
        for _ in range(rnd.randint(0, 4)):
            acct = rnd.choice(accounts)
            symbol, tick = rnd.choice((("INFY", 0.05), ("TCS", 0.1)))
            token = INFY if symbol == "INFY" else TCS
            ltp = rig.market.ltp(token, t)
            side = rnd.choice(("BUY", "SELL"))
            kind = rnd.choice(("MARKET", "LIMIT", "LIMIT"))
            price = round_to_tick(ltp * (1 + rnd.uniform(-.03, .03)), tick) if kind == "LIMIT" else None
            variety = "regular" if rig.calendar.session_open_at(t) else "amo"
            try:
                oid = rig.place(acct, variety, tradingsymbol=symbol, transaction_type=side, order_type=kind,
                                price=price, quantity=rnd.randint(1, 40),
                                market_protection=-1 if kind == "MARKET" else None)
                placed[acct.api_key].append(oid)
            except KiteError as exc:
                assert exc.error_type in ("MarginException", "HoldingException", "InputException"), exc.message
        if rnd.random() < 0.2 and placed[rig.som.api_key]:
            oid = rnd.choice(placed[rig.som.api_key])
            try:
                rig.engine.cancel_order(rig.som, "regular", oid, {})
            except KiteError as exc:
                assert exc.error_type == "OrderException"
        t += timedelta(minutes=rnd.choice((7, 30, 95, 300)))
        rig.move(t)
        for acct in accounts:
            s = rig.engine.account_summary(acct)
            assert s["cash"] + s["holdings_at_cost"] - s["realised_pnl"] == pytest.approx(START_CASH - s["charges"],
                                                                                 abs=0.006)
            assert rig.net(acct) >= -1e-6
            assert {o["order_id"] for o in rig.engine.orders(acct)} <= set(placed[acct.api_key])
    assert sum(len(v) for v in placed.values()) > 50
    assert rig.engine.account_summary(rig.som)["charges"] > 0


def test_ioc_and_stop_modification(rig: Rig) -> None:
    ioc = rig.place(price=1400, validity="IOC")
    assert (rig.order(ioc)["status"], rig.order(ioc)["cancelled_quantity"]) == ("CANCELLED", 10)
    assert rig.place(price=1505, validity="IOC") and rig.net() == START_CASH - 15_000
    stop = rig.place(order_type="SL", trigger_price=1520, price=1525, quantity=1)
    rig.engine.modify_order(rig.som, "regular", stop, {"trigger_price": "1510", "price": "1512"})
    o = rig.order(stop)
    assert (o["status"], o["trigger_price"], o["price"]) == ("TRIGGER PENDING", 1510.0, 1512.0)
    rig.engine.modify_order(rig.som, "regular", stop, {"order_type": "LIMIT", "price": "1499"})
    assert rig.order(stop)["status"] == "OPEN"
