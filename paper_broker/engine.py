"""The paper broker's order engine: orders, fills, GTT firing and CNC settlement, in SQLite.

Where the rest of it lives: the tables and their on-disk contract in ``db`` (``ENGINE_SCHEMA``),
the read side (holdings, positions, funds, account summary) in ``portfolio.PortfolioReads``, the
GTT endpoints in ``gtt.GttApi``. Both are mixins of ``OrderEngine``, so the server and the tests
see one object with one lock. A restart resumes from the high-water mark (``engine_state.hw``):
whatever fell due while the broker was down happens on start, in order.

Why this module is over ~400 lines: the minute loop, fills, placement, modify and cancel all
change the same order, ledger and cnc rows inside one transaction under one lock, and share the
checks (funds, holdings, circuit). Cut apart, one state machine would be spread over modules that
call back into each other.

Rules chosen (where Kite is silent or the paper broker simplifies), situation -> behaviour:

* regular order outside 09:15-15:30 of a trading day -> InputException, no order (use ``amo``).
* ``amo`` during the session -> InputException; outside the session it is accepted at any hour.
* AMO release at the next session open (09:15): the circuit is checked then (REJECTED if outside);
  MARKET and LIMIT AMOs match the first minute from the day's open; SL/SL-M wait as TRIGGER
  PENDING. Modify/cancel accept variety ``regular`` or ``amo`` for any order.
* CNC on NSE only (MIS, NRML, MTF, other exchanges: InputException); indices are refused.
* validity DAY, and IOC (a non-marketable IOC is CANCELLED at once; not for SL/SL-M).
* Fills follow the shared fill model (``kitefleet.sim``, rules in ``kitefleet.sim.fills``): a BUY
  fills against the ask at or below its limit, at the ask; a SELL against the bid at or above it,
  at the bid; at most 10 % of a minute's volume per minute, so a large order or a thin minute
  fills in parts: ``filled_quantity`` grows, the order stays OPEN until complete, and every fill
  is one trade. A cancel or the close's expiry keeps the filled part.
* MARKET needs ``market_protection`` (-1 = auto = 3 %, or 1-100) and walks the depth within its
  protection bound on arrival; what is left rests as a LIMIT at the bound. The order book shows a
  protected MARKET / SL-M order as Kite does: ``order_type`` LIMIT (SL-M: SL), ``price`` = its
  protection bound (``limit_price``), ``market_protection`` 0 and the tags ``mktp``, ``mktp:<pct>``
  (``orders``).
* A LIMIT marketable on arrival walks the depth within its price; the rest rests and fills in the
  following minutes when the touch reaches its price (a gap at the open fills at the open's touch).
  An order that filled on arrival counts again from the next minute (one participation cap a
  minute).
* SL / SL-M wait as TRIGGER PENDING until a minute's high (BUY) / low (SELL) reaches the trigger;
  when placed, the trigger must be on the far side of the LTP (InputException otherwise). Once
  triggered, SL fills at the touch where it triggered (the trigger, or the open when a minute
  opens through it) if that is within its price, else rests as a LIMIT; SL-M likewise within its
  protection, else rests as a LIMIT at the protection bound.
* Minutes that count for an order: those completing after it was placed or last modified.
* DAY orders still open at the close are CANCELLED at 15:30 with a status_message.
* Circuit: a LIMIT/SL price or trigger outside the band in force (the book's: F&O operating range
  or a scenario's fixed band) -> order row REJECTED with Kite's message; a modify outside the band
  -> OrderException, the order is unchanged.
* Funds and holdings are checked at placement (the RMS, as on Kite): a BUY without the funds or a
  CNC SELL without sellable shares becomes an order row REJECTED at once, with Kite's
  status_message ("Insufficient funds. Required margin is X but available margin is Y. Check the
  orderbook for open orders.") and the request's tag, no exchange id or exchange timestamps.
  ``rms_reject`` (``--rms-reject``): ``row`` (default) answers its order id; ``error`` answers HTTP
  400 MarginException / HoldingException, the row existing all the same. A GTT whose order is
  refused so stays ``triggered`` with ``order_result.status`` failed and that row's id. A modify
  without the funds or shares -> MarginException / HoldingException, the order unchanged. A BUY
  blocks quantity x (LIMIT/SL price; MARKET AMO: the LTP's protection bound; SL-M: the trigger's
  protection bound) while open.
* ``modify_order`` moves ``order_timestamp`` and ``exchange_timestamp`` to the modification.
* At most 25 modifications; the 26th -> OrderException "Maximum allowed order modifications
  exceeded."
* The order book lists orders placed or updated on the current calendar day plus any still open;
  ``trades`` lists today's fills. Another account's order or GTT id gets the same "not found"
  error as an unknown id.
* Settlement rolls at midnight after each trading day (see ``portfolio``); holidays and weekends
  do not roll. The roll debits the day's charges (``kitefleet.sim.charges.contract_note`` over the
  day's executed orders, each at its VWAP, DP charges included) from cash in the same transaction
  and keeps the note in ``contract_notes``; Kite's own fields (positions ``pnl``/``m2m``,
  holdings ``pnl``, realised P&L) stay gross, as on Kite.

GTT rules: see ``paper_broker.gtt``. Times: the engine never reads the wall clock for "now": it
is given ``now`` or asks its ``Clock``.
"""

from __future__ import annotations

import json
import math
import sqlite3
import threading
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date, datetime, time, timedelta
from typing import Any

from kitefleet import sim
from kitefleet.calendar import NseCalendar
from kitefleet.clock import IST, Clock
from kitefleet.states import OPEN, OrderStatus
from paper_broker import gtt as gttlib
from paper_broker.db import ENGINE_SCHEMA, Account, Database
from paper_broker.errors import KiteError, holding_error, input_error, margin_error, order_error
from paper_broker.gtt import GttApi
from paper_broker.orders import (
    MAX_MODIFICATIONS,
    VARIETIES,
    OrderRequest,
    check_prices,
    exchange_order_id_for,
    fmt_ts,
    order_id_for,
    order_wire,
    parse_modification,
    parse_order,
    protected_limit,
    request_of,
    trade_id_for,
)
from paper_broker.portfolio import CncBook, PortfolioReads, day_contract_note, note_summary

ONE_MINUTE = timedelta(minutes=1)
#: ``--rms-reject``: ``row`` answers the order id of the REJECTED row; ``error`` answers HTTP 400
#: MarginException / HoldingException (the row exists all the same). Both have been seen on Kite.
RMS_ROW, RMS_ERROR = "row", "error"
RMS_MODES = (RMS_ROW, RMS_ERROR)
EXPIRY_MESSAGE = "Order cancelled by the system at market close (DAY validity)."
NOT_FOUND_ORDER = "Couldn't find that `order_id`."
NOT_AUTHORISED = ("Sell order rejected: holdings not authorised. Authorise them with your CDSL TPIN for today "
                  "(or give a DDPI) before selling.")
FUNDS_EPS = 1e-6
#: Open at the exchange: what the minute loop matches and the close expires (an AMO still waits).
_AT_EXCHANGE = (OrderStatus.OPEN, OrderStatus.TRIGGER_PENDING)


def _sql_list(statuses: tuple[OrderStatus, ...]) -> str:
    return "(" + ",".join(f"'{s}'" for s in statuses) + ")"


# Built from the constants above, never from requests.
_OPEN_SQL = _sql_list(OPEN)
_AT_EXCHANGE_SQL = _sql_list(_AT_EXCHANGE)

_ORDER_MUTABLE = (
    "order_timestamp", "status", "status_message", "filled_quantity", "cancelled_quantity", "average_price",
    "exchange_timestamp",
    "exchange_update_timestamp", "exchange_order_id", "modifications", "order_type", "validity", "quantity",
    "disclosed_quantity", "price", "trigger_price", "market_protection", "block_price", "limit_price",
    "active_from", "updated_day",
)
# Column names below come from constants in this module, never from requests.
_ORDER_UPDATE_SQL = "UPDATE orders SET " + ", ".join(f"{c}=?" for c in _ORDER_MUTABLE) + " WHERE seq=?"  # noqa: S608
_CNC_COLUMNS = CncBook.columns()
_CNC_UPSERT_SQL = (
    f"INSERT OR REPLACE INTO cnc ({', '.join(_CNC_COLUMNS)}) VALUES ({', '.join('?' for _ in _CNC_COLUMNS)})"  # noqa: S608
)


def _floor_minute(at: datetime) -> datetime:
    return at.replace(second=0, microsecond=0)


def _px(value: float) -> float:
    return round(value, 4)


class OrderEngine(PortfolioReads, GttApi):
    def __init__(self, db: Database, market: Any, calendar: NseCalendar, clock: Clock,
                 rms_reject: str = RMS_ROW) -> None:
        if rms_reject not in RMS_MODES:
            raise ValueError(f"rms_reject {rms_reject!r}: use one of {', '.join(RMS_MODES)}")
        #: What a place_order refused by the RMS (funds, holdings) answers, besides its REJECTED row.
        self.rms_reject = rms_reject
        #: api_key -> profile().meta.demat_consent ("consent", "physical" or ""); the app looks it up
        self.consent_of: Callable[[str], str] = lambda api_key: "consent"
        self.db = db
        self.market = market
        self._has_corporate_actions = bool(getattr(market, "corporate_actions", None))
        self.calendar = calendar
        self.clock = clock
        self._lock = threading.RLock()
        conn = db.conn()
        conn.executescript(ENGINE_SCHEMA)
        row = conn.execute("SELECT value FROM engine_state WHERE key='hw'").fetchone()
        if row is None:
            self._hw = clock.now().astimezone(IST)
            conn.execute("INSERT OR REPLACE INTO engine_state(key, value) VALUES ('hw', ?)",
                         (self._hw.isoformat(),))
        else:
            self._hw = datetime.fromisoformat(row["value"]).astimezone(IST)
        self._due = _floor_minute(self._hw) + ONE_MINUTE
        self.advance()  # catch up on whatever happened while the broker was down

    # === the clock ==========================================================================
    @property
    def high_water_mark(self) -> datetime:
        return self._hw

    def _now(self, now: datetime | None) -> datetime:
        return (now or self.clock.now()).astimezone(IST)

    def advance(self, now: datetime | None = None) -> None:
        """Process everything due in (high-water mark, now]. Cheap when no minute has completed."""
        now = self._now(now)
        if now < self._due:
            return
        with self._lock:
            if now < self._due:
                return
            with self.db.transaction() as conn:
                self._process(conn, self._hw, now)
                conn.execute("INSERT OR REPLACE INTO engine_state(key, value) VALUES ('hw', ?)",
                             (now.isoformat(),))
            self._hw = now
            self._due = _floor_minute(now) + ONE_MINUTE

    def _process(self, conn: sqlite3.Connection, t0: datetime, t1: datetime) -> None:
        day = t0.date()
        while day <= t1.date():
            if self.calendar.is_trading_day(day):
                start = datetime.combine(day, time(0), IST)
                if t0 < start <= t1 and self._has_corporate_actions:
                    self._corporate_events(conn, day, start)
                opening, closing = self.calendar.session_bounds(day)
                if t0 < opening <= t1:
                    self._release_amos(conn, day, opening)
                lo, hi = max(t0, opening), min(t1, closing)
                if lo < hi:
                    self._run_minutes(conn, opening, lo, hi)
                if t0 < closing <= t1:
                    self._expire_day_orders(conn, closing)
                midnight = datetime.combine(day + timedelta(days=1), time(0), IST)
                if t0 < midnight <= t1:
                    self._roll(conn, midnight)
            day += timedelta(days=1)

    # === scheduled events ===================================================================
    def _release_amos(self, conn: sqlite3.Connection, day: date, opening: datetime) -> None:
        rows = conn.execute("SELECT * FROM orders WHERE status=? ORDER BY seq",
                            (OrderStatus.AMO_REQ_RECEIVED,)).fetchall()
        for row in rows:
            o = dict(row)
            inst = self.market.instrument(int(o["instrument_token"]))
            req = request_of(o)
            reason = self._circuit_reason(req, self.market.book(int(o["instrument_token"]), opening))
            o["updated_day"] = opening.date().isoformat()
            if reason is not None:
                self._set_status(conn, o, OrderStatus.REJECTED, opening, message=reason)
                continue
            o["exchange_order_id"] = exchange_order_id_for(int(o["seq"]))
            o["exchange_timestamp"] = fmt_ts(opening)
            o["active_from"] = opening.isoformat()
            if req.order_type == "MARKET":
                bound = protected_limit(self.market.prev_close(int(o["instrument_token"]), day),
                                        req.market_protection, req.transaction_type, inst.tick_size)
                if req.is_buy:
                    bound = min(bound, float(o["block_price"]))
                o["limit_price"] = bound
            self._history(conn, o, OrderStatus.OPEN_PENDING, opening)
            self._set_status(conn, o, OrderStatus.TRIGGER_PENDING if req.needs_trigger else OrderStatus.OPEN, opening)

    def _run_minutes(self, conn: sqlite3.Connection, opening: datetime, lo: datetime, hi: datetime) -> None:
        orders = [dict(r) for r in conn.execute(
            f"SELECT * FROM orders WHERE status IN {_AT_EXCHANGE_SQL} ORDER BY seq")]  # noqa: S608
        gtts = [dict(r) for r in conn.execute("SELECT * FROM gtts WHERE status='active' ORDER BY id")]
        if not orders and not gtts:
            return
        orders_by: dict[int, list[dict[str, Any]]] = defaultdict(list)
        gtts_by: dict[int, list[dict[str, Any]]] = defaultdict(list)
        for o in orders:
            o["_from"] = datetime.fromisoformat(o["active_from"])
            orders_by[int(o["instrument_token"])].append(o)
        for g in gtts:
            g["_from"] = datetime.fromisoformat(g["active_from"])
            g["_cond"] = json.loads(g["condition"])
            gtts_by[int(g["instrument_token"])].append(g)
        events: list[tuple[datetime, int, sim.Bar]] = []
        for token in set(orders_by) | set(gtts_by):
            items = orders_by.get(token, []) + gtts_by.get(token, [])
            start = max(lo, _floor_minute(min(i["_from"] for i in items)))
            if start >= hi:
                continue
            for bar in self.market.minute_bars(token, start, hi):
                events.append((bar.start, token, bar))
        events.sort(key=lambda e: (e[0], e[1]))
        for start, token, bar in events:
            end = start + ONE_MINUTE
            low, high, close = bar.price(bar.low), bar.price(bar.high), bar.price(bar.close)
            for g in gtts_by.get(token, ()):
                if g["status"] != "active" or g["_from"] >= end:
                    continue
                cond = g["_cond"]
                leg = gttlib.fires(g["type"], cond["trigger_values"], float(cond["last_price"]), low, high)
                if leg is not None:
                    placed = self._fire_gtt(conn, g, leg, end, close)
                    if placed is not None and placed["status"] in _AT_EXCHANGE:
                        placed["_from"] = end
                        orders_by[token].append(placed)
            for o in orders_by.get(token, ()):
                if o["status"] not in _AT_EXCHANGE or o["_from"] >= end:
                    continue
                self._match(conn, o, bar, end)

    def _match(self, conn: sqlite3.Connection, o: dict[str, Any], bar: sim.Bar, at: datetime) -> None:
        """One completed minute against a resting order (rules: ``kitefleet.sim.fills``)."""
        buy = o["transaction_type"] == "BUY"
        trigger: int | None = None
        if o["status"] == OrderStatus.TRIGGER_PENDING:
            trigger = sim.to_ticks(float(o["trigger_price"]), bar.tick)
            if not (bar.high >= trigger if buy else bar.low <= trigger):
                return
            self._set_status(conn, o, OrderStatus.OPEN, at)
        remaining = int(o["quantity"]) - int(o["filled_quantity"])
        fill = sim.fill_in_minute(buy, sim.to_ticks(float(o["limit_price"]), bar.tick), remaining, bar, trigger)
        if fill is not None:
            self._fill(conn, o, fill.quantity, bar.price(fill.price), at)

    def _expire_day_orders(self, conn: sqlite3.Connection, closing: datetime) -> None:
        rows = conn.execute(f"SELECT * FROM orders WHERE status IN {_AT_EXCHANGE_SQL} ORDER BY seq")  # noqa: S608
        for row in rows.fetchall():
            o = dict(row)
            o["cancelled_quantity"] = int(o["quantity"]) - int(o["filled_quantity"])
            o["updated_day"] = closing.date().isoformat()
            self._set_status(conn, o, OrderStatus.CANCELLED, closing, message=EXPIRY_MESSAGE)

    def _roll(self, conn: sqlite3.Connection, at: datetime) -> None:
        self._debit_charges(conn, (at - timedelta(days=1)).date())
        for row in conn.execute("SELECT * FROM cnc").fetchall():
            book = CncBook.from_row(row)
            book.roll()
            if book.empty:
                conn.execute("DELETE FROM cnc WHERE api_key=? AND instrument_token=?",
                             (book.api_key, book.instrument_token))
            else:
                conn.execute(_CNC_UPSERT_SQL, book.values())
        conn.execute("UPDATE ledger SET opening_balance=cash, day_payin=0, day_spent=0")
        conn.execute("UPDATE gtts SET status='expired', updated_at=? WHERE status='active' AND expires_iso<=?",
                     (fmt_ts(at), at.isoformat()))

    def _corporate_events(self, conn: sqlite3.Connection, day: date, at: datetime) -> None:
        """The start of trading day ``day`` (rules: ``paper_broker.corporate``). Ex-date: the
        symbol's active GTTs become disabled (cancelled on a delisting) and each holder's new
        shares are owed; credit day: they reach the holdings, at the same cost (the average falls)."""
        for action in self.market.corporate_actions:
            if action.ex_date != day:
                continue
            token = int(self.market.instrument(f"NSE:{action.symbol}").instrument_token)
            status = "cancelled" if action.kind == "delist" else "disabled"
            conn.execute("UPDATE gtts SET status=?, updated_at=? WHERE instrument_token=? AND status='active'",
                         (status, fmt_ts(at), token))
            if action.kind == "delist":
                continue
            credit = day
            for _ in range(action.credit_sessions):
                credit = self.calendar.next_trading_day(credit)
            for crow in conn.execute("SELECT * FROM cnc WHERE instrument_token=?", (token,)).fetchall():
                book = CncBook.from_row(crow)
                held = book.settled_qty + book.t1_qty  # at the record date (the roll has run)
                extra = math.floor(held * action.ratio + 1e-9) - held
                if extra > 0:
                    conn.execute("INSERT OR IGNORE INTO corporate_credits(api_key, instrument_token, ex_date, "
                                 "credit_day, extra_qty) VALUES (?, ?, ?, ?, ?)",
                                 (book.api_key, token, day.isoformat(), credit.isoformat(), extra))
        for row in conn.execute("SELECT * FROM corporate_credits WHERE credit_day=? AND credited=0",
                                (day.isoformat(),)).fetchall():
            crow = conn.execute("SELECT * FROM cnc WHERE api_key=? AND instrument_token=?",
                                (row["api_key"], row["instrument_token"])).fetchone()
            if crow is not None:
                book = CncBook.from_row(crow)
                book.settled_qty += int(row["extra_qty"])
                conn.execute(_CNC_UPSERT_SQL, book.values())
            conn.execute("UPDATE corporate_credits SET credited=1 WHERE api_key=? AND instrument_token=? "
                         "AND ex_date=?", (row["api_key"], row["instrument_token"], row["ex_date"]))

    def _debit_charges(self, conn: sqlite3.Connection, day: date) -> None:
        """The closing day's contract note per account, debited from cash inside the roll's
        transaction (before the cnc rows forget which sales came out of T1 shares). The
        ``contract_notes`` primary key keeps a day from being debited twice, whatever happens."""
        keys = [r[0] for r in conn.execute("SELECT DISTINCT api_key FROM trades WHERE day=?", (day.isoformat(),))]
        for api_key in keys:
            note = day_contract_note(conn, api_key, day)
            if note is None:
                continue
            debit = float(note.debit)
            inserted = conn.execute(
                "INSERT OR IGNORE INTO contract_notes(api_key, day, debit, body) VALUES (?, ?, ?, ?)",
                (api_key, day.isoformat(), debit, json.dumps(note_summary(note), separators=(",", ":"))),
            ).rowcount
            if inserted:
                conn.execute("UPDATE ledger SET cash=cash-? WHERE api_key=?", (debit, api_key))

    # === order state changes ================================================================
    def _history(self, conn: sqlite3.Connection, o: dict[str, Any], status: str, at: datetime) -> None:
        snapshot = order_wire({**o, "status": status})
        if snapshot["exchange_update_timestamp"] is None and status != OrderStatus.PUT_ORDER_REQ_RECEIVED:
            snapshot["exchange_update_timestamp"] = fmt_ts(at)
        conn.execute("INSERT INTO order_history(order_id, api_key, body) VALUES (?, ?, ?)",
                     (o["order_id"], o["api_key"], json.dumps(snapshot, separators=(",", ":"))))

    def _save(self, conn: sqlite3.Connection, o: dict[str, Any]) -> None:
        conn.execute(_ORDER_UPDATE_SQL, (*[o[c] for c in _ORDER_MUTABLE], o["seq"]))

    def _set_status(self, conn: sqlite3.Connection, o: dict[str, Any], status: str, at: datetime, *,
                    message: str | None = None) -> None:
        o["status"] = status
        if message is not None:
            o["status_message"] = message
        o["exchange_update_timestamp"] = fmt_ts(at)
        o["updated_day"] = at.date().isoformat()
        self._save(conn, o)
        self._history(conn, o, status, at)

    def _book(self, conn: sqlite3.Connection, api_key: str, token: int, symbol: str) -> CncBook:
        row = conn.execute("SELECT * FROM cnc WHERE api_key=? AND instrument_token=?", (api_key, token)).fetchone()
        return CncBook.from_row(row) if row is not None else CncBook(api_key, token, symbol)

    def _fill(self, conn: sqlite3.Connection, o: dict[str, Any], quantity: int, price: float, at: datetime) -> None:
        """One fill (one trade) of ``quantity`` at ``price``; the order completes with its last part."""
        price = _px(price)
        filled_before = int(o["filled_quantity"])
        quantity = min(quantity, int(o["quantity"]) - filled_before)
        api_key = o["api_key"]
        token = int(o["instrument_token"])
        book = self._book(conn, api_key, token, o["tradingsymbol"])
        value = quantity * price
        if o["transaction_type"] == "BUY":
            book.buy(quantity, price)
            conn.execute("UPDATE ledger SET cash=cash-?, day_spent=day_spent+? WHERE api_key=?",
                         (value, value, api_key))
        else:
            try:
                realised = book.sell(quantity, price)
            except ValueError:
                # Reservations make this unreachable; refuse rather than sell short.
                self._set_status(conn, o, OrderStatus.REJECTED, at, message="Insufficient stock holding at execution.")
                return
            conn.execute("UPDATE ledger SET cash=cash+?, day_payin=day_payin+?, realised=realised+? WHERE api_key=?",
                         (value, value, realised, api_key))
        conn.execute(_CNC_UPSERT_SQL, book.values())
        filled = filled_before + quantity
        o["average_price"] = _px((float(o["average_price"]) * filled_before + price * quantity) / filled)
        o["filled_quantity"] = filled
        self._set_status(conn, o, OrderStatus.COMPLETE if filled == int(o["quantity"]) else OrderStatus.OPEN, at)
        seq = conn.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM trades").fetchone()[0]
        trade = {
            "trade_id": trade_id_for(seq),
            "order_id": o["order_id"],
            "exchange_order_id": o["exchange_order_id"],
            "tradingsymbol": o["tradingsymbol"],
            "exchange": o["exchange"],
            "instrument_token": token,
            "product": o["product"],
            "average_price": price,
            "quantity": quantity,
            "transaction_type": o["transaction_type"],
            "fill_timestamp": fmt_ts(at),
            "exchange_timestamp": fmt_ts(at),
            "order_timestamp": o["order_timestamp"][11:],  # Kite sends the order's time only here
        }
        conn.execute("INSERT INTO trades(seq, trade_id, order_id, api_key, day, body) VALUES (?, ?, ?, ?, ?, ?)",
                     (seq, trade["trade_id"], o["order_id"], api_key, at.date().isoformat(),
                      json.dumps(trade, separators=(",", ":"))))

    # === checks ==============================================================================
    def _instrument(self, exchange: str, symbol: str) -> Any:
        inst = self.market.instrument(f"{exchange}:{symbol}")
        if inst is None or inst.exchange != exchange:
            raise input_error(f"Invalid `tradingsymbol`: {exchange}:{symbol} is not a known instrument.")
        if not inst.tradable:
            raise input_error(f"{exchange}:{symbol} is an index and cannot be traded.")
        return inst

    def _circuit_reason(self, req: OrderRequest, book: sim.Book) -> str | None:
        lower, upper = book.price(book.lower), book.price(book.upper)
        for value, what in ((req.price, "price"), (req.trigger_price, "trigger price")):
            if not value:
                continue
            if value < lower:
                return (f"Your order {what} is lower than the current lower circuit limit of {lower:g}. "
                        "Place an order within the daily range.")
            if value > upper:
                return (f"Your order {what} is higher than the current upper circuit limit of {upper:g}. "
                        "Place an order within the daily range.")
        return None

    def _ensure_ledger(self, conn: sqlite3.Connection, api_key: str, user_id: str, user_name: str,
                       starting_cash: float) -> None:
        conn.execute(
            "INSERT OR IGNORE INTO ledger(api_key, user_id, user_name, starting_cash, cash, opening_balance) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (api_key, user_id, user_name, starting_cash, starting_cash, starting_cash),
        )

    def _blocked(self, conn: sqlite3.Connection, api_key: str, exclude_seq: int | None = None) -> float:
        row = conn.execute(
            "SELECT COALESCE(SUM((quantity - filled_quantity) * block_price), 0) FROM orders "  # noqa: S608
            f"WHERE api_key=? AND status IN {_OPEN_SQL} AND transaction_type='BUY' AND seq IS NOT ?",
            (api_key, exclude_seq),
        ).fetchone()
        return float(row[0])

    def _pending_sells(self, conn: sqlite3.Connection, api_key: str, token: int,
                       exclude_seq: int | None = None) -> int:
        row = conn.execute(
            "SELECT COALESCE(SUM(quantity - filled_quantity), 0) FROM orders "  # noqa: S608
            f"WHERE api_key=? AND status IN {_OPEN_SQL} AND transaction_type='SELL' AND instrument_token=? "
            "AND seq IS NOT ?",
            (api_key, token, exclude_seq),
        ).fetchone()
        return int(row[0])

    def _available_cash(self, conn: sqlite3.Connection, api_key: str, exclude_seq: int | None = None) -> float:
        cash = float(conn.execute("SELECT cash FROM ledger WHERE api_key=?", (api_key,)).fetchone()[0])
        return cash - self._blocked(conn, api_key, exclude_seq)

    def _cover_problem(self, conn: sqlite3.Connection, api_key: str, req: OrderRequest, token: int,
                       unit_price: float, exclude_seq: int | None = None,
                       at: datetime | None = None) -> KiteError | None:
        """The RMS check (funds for a BUY, sellable shares for a SELL), in Kite's words."""
        if req.is_buy:
            required = req.quantity * unit_price
            available = self._available_cash(conn, api_key, exclude_seq)
            if required > available + FUNDS_EPS:
                return margin_error(f"Insufficient funds. Required margin is {required:.2f} but available margin "
                                    f"is {max(available, 0):.2f}. Check the orderbook for open orders.")
            return None
        book = self._book(conn, api_key, token, req.tradingsymbol)
        if req.quantity > book.sellable - self._pending_sells(conn, api_key, token, exclude_seq):
            return holding_error(
                "Insufficient stock holding or there are pending sell orders for this stock. Check the orderbook."
            )
        # Without DDPI/POA a sale out of the demat needs that day's CDSL TPIN authorisation; a
        # sale of today's buys (intraday) does not.
        from_demat = req.quantity - book.lot_qty
        if from_demat > 0 and self.consent_of(api_key) not in ("consent", "physical") \
                and not self._authorised(conn, api_key, req.tradingsymbol, self._now(at)):
            return holding_error(NOT_AUTHORISED)
        return None

    def _authorised(self, conn: sqlite3.Connection, api_key: str, symbol: str, now: datetime) -> bool:
        return conn.execute("SELECT 1 FROM authorisations WHERE api_key=? AND day=? AND tradingsymbol=?",
                            (api_key, now.date().isoformat(), symbol)).fetchone() is not None

    def authorise(self, account: Account, symbol: str, now: datetime | None = None) -> dict[str, object]:
        """Record today's authorisation of ``symbol``'s holdings for sale (admin route)."""
        now = self._now(now)
        self._instrument("NSE", symbol)
        with self._lock, self.db.transaction() as conn:
            conn.execute("INSERT OR IGNORE INTO authorisations(api_key, day, tradingsymbol) VALUES (?, ?, ?)",
                         (account.api_key, now.date().isoformat(), symbol))
        return {"user": account.user_name, "symbol": symbol, "day": now.date().isoformat()}

    def _check_cover(self, conn: sqlite3.Connection, api_key: str, req: OrderRequest, token: int,
                     unit_price: float, exclude_seq: int | None = None) -> None:
        problem = self._cover_problem(conn, api_key, req, token, unit_price, exclude_seq)
        if problem is not None:
            raise problem

    def _check_trigger_side(self, req: OrderRequest, ltp: float) -> None:
        if not req.needs_trigger:
            return
        if req.is_buy and req.trigger_price <= ltp:
            raise input_error("Trigger price for stoploss buy orders should be higher than the last traded price.")
        if not req.is_buy and req.trigger_price >= ltp:
            raise input_error("Trigger price for stoploss sell orders should be lower than the last traded price.")

    def _prices_for(self, req: OrderRequest, inst: Any, ltp: float, variety: str) -> tuple[float, float]:
        """(block_price per share for a BUY, limit) for a new or modified order: the limit is the
        matching bound, and the price the order book shows for a protected MARKET / SL-M order."""
        if req.order_type in ("LIMIT", "SL"):
            limit = req.price
        elif req.order_type == "SL-M":
            limit = protected_limit(req.trigger_price, req.market_protection, req.transaction_type, inst.tick_size)
        elif variety == "amo":
            limit = protected_limit(ltp, req.market_protection, req.transaction_type, inst.tick_size)
        else:
            # A MARKET order in the session fills at once at the LTP, so funds are checked at the
            # LTP; its protection bound is kept only because the order book shows it as the price.
            bound = protected_limit(ltp, req.market_protection, req.transaction_type, inst.tick_size)
            return (ltp if req.is_buy else 0.0), bound
        return (limit if req.is_buy else 0.0), limit

    # === order creation (shared by the API and GTTs) =========================================
    def _create_order(self, conn: sqlite3.Connection, *, api_key: str, user_id: str, variety: str,
                      req: OrderRequest, inst: Any, now: datetime, ltp: float,
                      gtt_id: int | None = None) -> dict[str, Any]:
        token = int(inst.instrument_token)
        block_price, limit = self._prices_for(req, inst, ltp, variety)
        refusal = self._cover_problem(conn, api_key, req, token, block_price if req.is_buy else 0.0, at=now)
        book = None if variety == "amo" or refusal is not None else self.market.book(token, now)
        reason = refusal.message if refusal is not None else \
            None if book is None else self._circuit_reason(req, book)
        seq = int(conn.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM orders").fetchone()[0])
        o: dict[str, Any] = {
            "seq": seq,
            "order_id": order_id_for(now, seq),
            "api_key": api_key,
            "user_id": user_id,
            "variety": variety,
            "exchange": req.exchange,
            "tradingsymbol": req.tradingsymbol,
            "instrument_token": token,
            "transaction_type": req.transaction_type,
            "order_type": req.order_type,
            "product": req.product,
            "validity": req.validity,
            "quantity": req.quantity,
            "disclosed_quantity": req.disclosed_quantity,
            "price": req.price,
            "trigger_price": req.trigger_price,
            "market_protection": req.market_protection,
            "tag": req.tag,
            "guid": None,
            "status": OrderStatus.PUT_ORDER_REQ_RECEIVED,
            "status_message": None,
            "filled_quantity": 0,
            "cancelled_quantity": 0,
            "average_price": 0.0,
            "order_timestamp": fmt_ts(now),
            "exchange_timestamp": None,
            "exchange_update_timestamp": None,
            "exchange_order_id": None,
            "modifications": 0,
            "block_price": block_price,
            "limit_price": limit,
            "active_from": now.isoformat(),
            "updated_day": now.date().isoformat(),
            "gtt_id": gtt_id,
        }
        self._history(conn, o, OrderStatus.PUT_ORDER_REQ_RECEIVED, now)
        self._history(conn, o, OrderStatus.VALIDATION_PENDING, now)
        if refusal is not None:
            # Refused by the RMS before the exchange: no exchange id or timestamps (Kite's sample).
            o["status"], o["status_message"] = OrderStatus.REJECTED, reason
        elif reason is not None:
            o["status"], o["status_message"] = OrderStatus.REJECTED, reason
            o["exchange_update_timestamp"] = fmt_ts(now)
        elif variety == "amo":
            o["status"] = OrderStatus.AMO_REQ_RECEIVED
        else:
            self._history(conn, o, OrderStatus.OPEN_PENDING, now)
            o["exchange_order_id"] = exchange_order_id_for(seq)
            o["exchange_timestamp"] = o["exchange_update_timestamp"] = fmt_ts(now)
            o["status"] = OrderStatus.TRIGGER_PENDING if req.needs_trigger else OrderStatus.OPEN
        columns = list(o)
        sql = f"INSERT INTO orders ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)})"  # noqa: S608
        conn.execute(sql, [o[c] for c in columns])
        self._history(conn, o, o["status"], now)
        if o["status"] == OrderStatus.OPEN and book is not None:
            self._match_on_arrival(conn, o, book, now)
        o["_refusal"] = refusal  # not a column: place_order answers it under --rms-reject=error
        return o

    def _match_on_arrival(self, conn: sqlite3.Connection, o: dict[str, Any], book: sim.Book, now: datetime) -> None:
        """Walk the book within the order's limit (a MARKET order's: its protection bound)."""
        buy = o["transaction_type"] == "BUY"
        remaining = int(o["quantity"]) - int(o["filled_quantity"])
        fills = sim.fill_on_arrival(buy, sim.to_ticks(float(o["limit_price"]), book.tick), remaining, book)
        for fill in fills:
            self._fill(conn, o, fill.quantity, book.price(fill.price), now)
        if o["status"] != OrderStatus.OPEN:
            return
        if o["validity"] == "IOC":
            o["cancelled_quantity"] = int(o["quantity"]) - int(o["filled_quantity"])
            self._set_status(conn, o, OrderStatus.CANCELLED, now,
                             message="IOC order cancelled: not marketable on arrival." if not fills
                             else "IOC order: the unfilled part was cancelled.")
        elif fills:
            # This minute's participation is used up: the rest counts from the next minute on.
            o["active_from"] = (_floor_minute(now) + ONE_MINUTE).isoformat()
            self._save(conn, o)

    # === public API: orders ==================================================================
    def ensure_account(self, account: Account) -> None:
        with self.db.transaction() as conn:
            self._ensure_ledger(conn, account.api_key, account.user_id, account.user_name, account.starting_cash)

    def _session_check(self, variety: str, now: datetime) -> None:
        if variety not in VARIETIES:
            raise input_error(f"Variety {variety!r} is not supported by the paper broker; use regular or amo.")
        in_session = self.calendar.session_open_at(now)
        if variety == "regular" and not in_session:
            raise input_error("Markets are closed right now. Use variety amo to place an after market order, "
                              "or a GTT for a long standing order.")
        if variety == "amo" and in_session:
            raise input_error("After market orders can be placed only outside market hours; use variety regular.")

    def place_order(self, account: Account, variety: str, params: dict[str, str]) -> dict[str, str]:
        req = parse_order(params)
        if req.validity == "IOC" and req.needs_trigger:
            raise input_error("IOC validity is not supported for SL and SL-M orders by the paper broker.")
        inst = self._instrument(req.exchange, req.tradingsymbol)
        check_prices(req, float(inst.tick_size))
        with self._lock:
            now = self._now(None)
            self.advance(now)
            self._session_check(variety, now)
            ltp = float(self.market.ltp(int(inst.instrument_token), now))
            if variety == "regular":
                self._check_trigger_side(req, ltp)
            with self.db.transaction() as conn:
                self._ensure_ledger(conn, account.api_key, account.user_id, account.user_name,
                                    account.starting_cash)
                o = self._create_order(conn, api_key=account.api_key, user_id=account.user_id, variety=variety,
                                       req=req, inst=inst, now=now, ltp=ltp)
        if o["_refusal"] is not None and self.rms_reject == RMS_ERROR:
            raise o["_refusal"]  # after the commit: the REJECTED row stays in the book
        return {"order_id": o["order_id"]}

    def _load_order(self, conn: sqlite3.Connection, account: Account, order_id: str) -> dict[str, Any]:
        row = conn.execute("SELECT * FROM orders WHERE order_id=? AND api_key=?",
                           (str(order_id), account.api_key)).fetchone()
        if row is None:
            raise input_error(NOT_FOUND_ORDER)
        return dict(row)

    @contextmanager
    def _open_order(self, account: Account, variety: str, order_id: str,
                    verb: str) -> Iterator[tuple[sqlite3.Connection, dict[str, Any], datetime]]:
        """Modify and cancel: the engine brought up to now, then the account's still-open order
        inside one write transaction."""
        if variety not in VARIETIES:
            raise input_error(f"Variety {variety!r} is not supported by the paper broker; use regular or amo.")
        with self._lock:
            now = self._now(None)
            self.advance(now)
            with self.db.transaction() as conn:
                o = self._load_order(conn, account, order_id)
                if o["status"] not in OPEN:
                    raise order_error(f"Order cannot be {verb} as it is {o['status'].lower()}.")
                yield conn, o, now

    def modify_order(self, account: Account, variety: str, order_id: str, params: dict[str, str]) -> dict[str, str]:
        with self._open_order(account, variety, order_id, "modified") as (conn, o, now):
            if int(o["modifications"]) >= MAX_MODIFICATIONS:
                raise order_error("Maximum allowed order modifications exceeded.")
            inst = self.market.instrument(int(o["instrument_token"]))
            new = parse_modification(request_of(o), params)
            check_prices(new, float(inst.tick_size))
            if new.validity == "IOC" and new.needs_trigger:
                raise input_error("IOC validity is not supported for SL and SL-M orders by the paper broker.")
            waiting_amo = o["status"] == OrderStatus.AMO_REQ_RECEIVED
            ltp = float(self.market.ltp(int(inst.instrument_token), now))
            book: sim.Book | None = None
            if not waiting_amo:
                if not self.calendar.session_open_at(now):
                    raise order_error("Markets are closed right now; the order can no longer be modified.")
                self._check_trigger_side(new, ltp)
                if new.quantity < int(o["filled_quantity"]):
                    raise order_error(f"Quantity cannot be less than the filled quantity {o['filled_quantity']}.")
                book = self.market.book(int(inst.instrument_token), now)
                reason = self._circuit_reason(new, book)
                if reason is not None:
                    raise order_error(reason)
            block_price, limit = self._prices_for(new, inst, ltp, "amo" if waiting_amo else "regular")
            self._check_cover(conn, account.api_key, new, int(inst.instrument_token),
                              block_price, exclude_seq=int(o["seq"]))
            o.update(
                # Kite moves both to the modification (its samples of a modified order).
                order_timestamp=fmt_ts(now),
                exchange_timestamp=None if waiting_amo else fmt_ts(now),
                order_type=new.order_type, quantity=new.quantity, price=new.price,
                trigger_price=new.trigger_price, validity=new.validity,
                disclosed_quantity=new.disclosed_quantity, market_protection=new.market_protection,
                block_price=block_price, limit_price=limit, active_from=now.isoformat(),
                modifications=int(o["modifications"]) + 1,
            )
            for status in (OrderStatus.MODIFY_VALIDATION_PENDING, OrderStatus.MODIFY_PENDING, OrderStatus.MODIFIED):
                self._history(conn, o, status, now)
            status = (OrderStatus.AMO_REQ_RECEIVED if waiting_amo
                      else OrderStatus.TRIGGER_PENDING if new.needs_trigger else OrderStatus.OPEN)
            self._set_status(conn, o, status, now)
            if status == OrderStatus.OPEN and book is not None:
                self._match_on_arrival(conn, o, book, now)
        return {"order_id": o["order_id"]}

    def cancel_order(self, account: Account, variety: str, order_id: str,
                     params: dict[str, str] | None = None) -> dict[str, str]:
        with self._open_order(account, variety, order_id, "cancelled") as (conn, o, now):
            o["cancelled_quantity"] = int(o["quantity"]) - int(o["filled_quantity"])
            self._history(conn, o, OrderStatus.CANCEL_PENDING, now)
            self._set_status(conn, o, OrderStatus.CANCELLED, now)
        return {"order_id": o["order_id"]}

    def orders(self, account: Account) -> list[dict[str, Any]]:
        today = self._now(None).date().isoformat()
        rows = self.db.conn().execute(
            f"SELECT * FROM orders WHERE api_key=? AND (updated_day=? OR status IN {_OPEN_SQL}) ORDER BY seq",  # noqa: S608
            (account.api_key, today),
        ).fetchall()
        return [order_wire(dict(r)) for r in rows]

    def order_history(self, account: Account, order_id: str) -> list[dict[str, Any]]:
        rows = self.db.conn().execute(
            "SELECT body FROM order_history WHERE order_id=? AND api_key=? ORDER BY id",
            (str(order_id), account.api_key),
        ).fetchall()
        if not rows:
            raise input_error(NOT_FOUND_ORDER)
        return [json.loads(r["body"]) for r in rows]

    def order_trades(self, account: Account, order_id: str) -> list[dict[str, Any]]:
        conn = self.db.conn()
        if conn.execute("SELECT 1 FROM orders WHERE order_id=? AND api_key=?",
                        (str(order_id), account.api_key)).fetchone() is None:
            raise input_error(NOT_FOUND_ORDER)
        rows = conn.execute("SELECT body FROM trades WHERE order_id=? AND api_key=? ORDER BY seq",
                            (str(order_id), account.api_key)).fetchall()
        return [json.loads(r["body"]) for r in rows]

    def trades(self, account: Account) -> list[dict[str, Any]]:
        today = self._now(None).date().isoformat()
        rows = self.db.conn().execute("SELECT body FROM trades WHERE api_key=? AND day=? ORDER BY seq",
                                      (account.api_key, today)).fetchall()
        return [json.loads(r["body"]) for r in rows]

    # === GTT firing (the minute loop's side; the endpoints are gtt.GttApi) ======================
    def _fire_gtt(self, conn: sqlite3.Connection, g: dict[str, Any], leg_index: int, at: datetime,
                  ltp: float) -> dict[str, Any] | None:
        legs = json.loads(g["orders"])
        leg = legs[leg_index]
        inst = self.market.instrument(int(g["instrument_token"]))
        req = OrderRequest(
            exchange=leg["exchange"], tradingsymbol=leg["tradingsymbol"], transaction_type=leg["transaction_type"],
            quantity=int(leg["quantity"]), product=leg["product"], order_type="LIMIT", price=float(leg["price"]),
            trigger_price=0.0, validity="DAY", disclosed_quantity=0, market_protection=0, tag=None,
        )
        placed: dict[str, Any] | None = None
        try:
            placed = self._create_order(conn, api_key=g["api_key"], user_id=g["user_id"], variety="regular",
                                        req=req, inst=inst, now=at, ltp=ltp, gtt_id=int(g["id"]))
        except KiteError as exc:
            order_result = {"status": "failed", "order_id": "", "rejection_reason": exc.message}
        else:
            if placed["status"] == OrderStatus.REJECTED:
                order_result = {"status": "failed", "order_id": placed["order_id"],
                                "rejection_reason": placed["status_message"] or ""}
            else:
                order_result = {"status": "success", "order_id": placed["order_id"], "rejection_reason": ""}
        leg["result"] = {
            "account_id": g["user_id"],
            "exchange": req.exchange,
            "tradingsymbol": req.tradingsymbol,
            "validity": "DAY",
            "product": req.product,
            "order_type": "LIMIT",
            "transaction_type": req.transaction_type,
            "quantity": req.quantity,
            "price": req.price,
            "meta": json.dumps({"app_id": 0, "gtt": int(g["id"])}),
            "timestamp": fmt_ts(at),
            "triggered_at": ltp,
            "order_result": order_result,
        }
        g["status"] = "triggered"
        g["orders"] = json.dumps(legs)
        conn.execute("UPDATE gtts SET status='triggered', orders=?, updated_at=? WHERE id=?",
                     (g["orders"], fmt_ts(at), int(g["id"])))
        return placed
