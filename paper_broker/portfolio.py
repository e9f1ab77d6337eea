"""CNC holdings, positions and funds: the book keeping and wire shapes (pure), and the read side.

Over 400 lines because the CNC book keeping and the read side that prices it are one model of Kite's
holdings, positions and margins shapes, and the rules below are spelt out.

The read side (``PortfolioReads``: holdings, positions, margins, order margins, the account
summary) is a mixin of ``paper_broker.engine.OrderEngine``. It only reads the tables the engine
writes (``cnc``, ``ledger``, ``orders``) and prices them with the market; everything above it in
this module is pure, and the engine stores the numbers.

One ``CncBook`` per (account, instrument), stored as a row of the ``cnc`` table:

* ``settled_qty`` / ``t1_qty``: holdings at the start of the trading day (settled, and bought on
  the previous trading day). They do not shrink intraday: a sale from holdings shows as
  ``used_quantity`` in holdings and as a negative CNC position, as on Kite, so
  ``quantity + t1_quantity + net position`` is always what is really held.
* ``hold_cost``: the cost of ``settled_qty + t1_qty``; ``used_cost`` the cost of what was sold out
  of them today. One average price per holding (Kite shows one).
* ``lot_qty`` / ``lot_cost``: today's CNC buys not yet sold today. A sale nets against these
  first (intraday), then settled shares, then T1 shares (BTST).
* ``day_*``: today's traded quantities and values (the positions).

At the end of each trading day (the ``roll``, applied at midnight after it): settled and T1 minus
what was sold become settled, today's remaining buys become T1, the day resets. So a buy on day T
is a position on T, ``t1_quantity`` on the next trading day, and ``quantity`` after that; a holiday
or weekend in between does not count.

Realised P&L is booked at the fill: (sale price - cost) × quantity, gross, as Kite shows it. Each
settlement roll debits the closing day's charges (the contract note, DP charges included; table
``contract_notes``) from cash. Hence for every account:
``cash + holdings at cost - realised P&L == starting cash - charges debited so far``.

Funds (reference 3.2): ``available.cash`` = ``opening_balance`` is the cash at the start of the
trading day (after the last roll's charges); ``utilised.holding_sales`` = -(today's sale proceeds),
a credit usable at once (100 % of sale proceeds since Oct 2024; the BTST next-day restriction is
not simulated), shown as Kite shows it, not as ``intraday_payin`` (money paid in: always 0 here);
``utilised.debits`` = today's filled CNC buys + value blocked by open BUY orders + holding_sales;
``net == live_balance == cash + intraday_payin - debits == ledger cash - blocked``. (The ledger's
``day_payin`` column keeps its name: it holds today's sale proceeds.)
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, fields
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from kitefleet.calendar import NseCalendar
from kitefleet.sim.charges import ContractNote, Fill, contract_note, order_charges
from kitefleet.sim.universe import isin_for
from paper_broker.db import Account, Database
from paper_broker.errors import input_error

EPS = 1e-9


@dataclass
class CncBook:
    api_key: str
    instrument_token: int
    tradingsymbol: str
    exchange: str = "NSE"
    settled_qty: int = 0
    t1_qty: int = 0
    hold_cost: float = 0.0
    used_settled: int = 0
    used_t1: int = 0
    used_cost: float = 0.0
    lot_qty: int = 0
    lot_cost: float = 0.0
    day_buy_qty: int = 0
    day_buy_value: float = 0.0
    day_sell_qty: int = 0
    day_sell_value: float = 0.0

    @classmethod
    def columns(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    @classmethod
    def from_row(cls, row: Any) -> CncBook:
        return cls(**{name: row[name] for name in cls.columns()})

    def values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self.columns())

    # --- quantities -------------------------------------------------------------------------
    @property
    def hold_avg(self) -> float:
        held = self.settled_qty + self.t1_qty
        return self.hold_cost / held if held else 0.0

    @property
    def sellable(self) -> int:
        """Shares a CNC SELL may use now, before subtracting pending sell orders."""
        return (self.settled_qty - self.used_settled) + (self.t1_qty - self.used_t1) + self.lot_qty

    @property
    def cost_basis(self) -> float:
        """What the shares still held cost (holdings at cost, today's buys included)."""
        return self.hold_cost - self.used_cost + self.lot_cost

    @property
    def net_qty(self) -> int:
        return self.day_buy_qty - self.day_sell_qty

    @property
    def empty(self) -> bool:
        return self.settled_qty == 0 and self.t1_qty == 0 and self.lot_qty == 0 and self.day_buy_qty == 0 \
            and self.day_sell_qty == 0

    # --- fills -------------------------------------------------------------------------------
    def buy(self, quantity: int, price: float) -> None:
        self.lot_qty += quantity
        self.lot_cost += quantity * price
        self.day_buy_qty += quantity
        self.day_buy_value += quantity * price

    def sell(self, quantity: int, price: float) -> float:
        """Book a sale; returns the realised P&L. Raises ValueError if not enough is held."""
        if quantity > self.sellable:
            raise ValueError(f"sell {quantity} > sellable {self.sellable}")
        realised = 0.0
        from_lot = min(quantity, self.lot_qty)
        if from_lot:
            lot_avg = self.lot_cost / self.lot_qty
            realised += from_lot * (price - lot_avg)
            self.lot_qty -= from_lot
            self.lot_cost = 0.0 if self.lot_qty == 0 else self.lot_cost - from_lot * lot_avg
        rest = quantity - from_lot
        if rest:
            avg = self.hold_avg
            from_settled = min(rest, self.settled_qty - self.used_settled)
            from_t1 = rest - from_settled
            self.used_settled += from_settled
            self.used_t1 += from_t1
            self.used_cost += rest * avg
            if self.used_settled == self.settled_qty and self.used_t1 == self.t1_qty:
                self.used_cost = self.hold_cost  # no float residue once everything is sold
            realised += rest * (price - avg)
        self.day_sell_qty += quantity
        self.day_sell_value += quantity * price
        return realised

    def roll(self) -> None:
        """End of a trading day: T1 and settled (less sales) settle, today's buys become T1."""
        self.settled_qty = self.settled_qty - self.used_settled + self.t1_qty - self.used_t1
        self.t1_qty = self.lot_qty
        self.hold_cost = self.hold_cost - self.used_cost + self.lot_cost
        if self.settled_qty + self.t1_qty == 0:
            self.hold_cost = 0.0
        self.used_settled = self.used_t1 = 0
        self.used_cost = 0.0
        self.lot_qty = 0
        self.lot_cost = 0.0
        self.day_buy_qty = self.day_sell_qty = 0
        self.day_buy_value = self.day_sell_value = 0.0


def holding_wire(book: CncBook, *, last_price: float, close_price: float, isin: str = "",
                 authorised_date: str | None = None, authorised_quantity: int = 0) -> dict[str, Any]:
    """Reference 3.10. ``pnl`` = (last - average) × (quantity + t1_quantity): the reference's
    formula with T1 shares included (they are owned; every sample had t1 = 0). ``isin``: a
    plausible one (``universe.isin_for``); ``authorised_date`` "YYYY-MM-DD 00:00:00", as in Kite's
    holdings sample."""
    held = book.settled_qty + book.t1_qty
    avg = round(book.hold_avg, 4)
    day_change = last_price - close_price if close_price else 0.0
    return {
        "tradingsymbol": book.tradingsymbol,
        "exchange": book.exchange,
        "instrument_token": book.instrument_token,
        "isin": isin,
        "product": "CNC",
        "price": 0,
        "quantity": book.settled_qty,
        "used_quantity": book.used_settled + book.used_t1,
        "t1_quantity": book.t1_qty,
        "realised_quantity": book.settled_qty,
        "authorised_quantity": authorised_quantity,
        "authorised_date": authorised_date,
        "authorisation": {},
        "opening_quantity": held,
        "short_quantity": 0,
        "collateral_quantity": 0,
        "collateral_type": "",
        "discrepancy": False,
        "average_price": avg,
        "last_price": last_price,
        "close_price": close_price,
        "pnl": round((last_price - book.hold_avg) * held, 4),
        "day_change": round(day_change, 4),
        "day_change_percentage": round(day_change / close_price * 100, 4) if close_price else 0.0,
        "mtf": {"quantity": 0, "used_quantity": 0, "average_price": 0, "value": 0, "initial_margin": 0},
    }


def position_wire(book: CncBook, *, last_price: float, close_price: float) -> dict[str, Any]:
    """Reference 3.11. CNC positions never carry overnight (they become holdings), so ``net``
    and ``day`` rows are equal and the m2m prices nothing at close_price."""
    qty = book.net_qty
    buy_price = book.day_buy_value / book.day_buy_qty if book.day_buy_qty else 0.0
    sell_price = book.day_sell_value / book.day_sell_qty if book.day_sell_qty else 0.0
    value = book.day_sell_value - book.day_buy_value
    pnl = value + qty * last_price
    average = buy_price if qty > 0 else sell_price if qty < 0 else 0.0
    return {
        "tradingsymbol": book.tradingsymbol,
        "exchange": book.exchange,
        "instrument_token": book.instrument_token,
        "product": "CNC",
        "quantity": qty,
        "overnight_quantity": 0,
        "multiplier": 1,
        "average_price": round(average, 4),
        "close_price": close_price,
        "last_price": last_price,
        "value": round(value, 4),
        "pnl": round(pnl, 4),
        "m2m": round(pnl, 4),
        "unrealised": round(pnl, 4),
        "realised": 0,
        "buy_quantity": book.day_buy_qty,
        "buy_price": round(buy_price, 4),
        "buy_value": round(book.day_buy_value, 4),
        "buy_m2m": round(book.day_buy_value, 4),
        "sell_quantity": book.day_sell_qty,
        "sell_price": round(sell_price, 4),
        "sell_value": round(book.day_sell_value, 4),
        "sell_m2m": round(book.day_sell_value, 4),
        "day_buy_quantity": book.day_buy_qty,
        "day_buy_price": round(buy_price, 4),
        "day_buy_value": round(book.day_buy_value, 4),
        "day_sell_quantity": book.day_sell_qty,
        "day_sell_price": round(sell_price, 4),
        "day_sell_value": round(book.day_sell_value, 4),
    }


def segment_wire(*, opening_balance: float, sales: float, spent: float, blocked: float,
                 turnover: float = 0.0, enabled: bool = True) -> dict[str, Any]:
    """Reference 3.2. Today's sale proceeds are a credit among the utilised figures
    (``holding_sales`` = -proceeds, summed into ``debits`` as Kite sums its credits: in its
    sample ``debits`` = span + exposure + option_premium, the premium received negative), not an
    ``intraday_payin`` (money paid in, never simulated). ``available.cash`` is the day's opening
    cash; ``live_balance == net == cash + intraday_payin - debits`` is what a CNC buy can use."""
    holding_sales = -sales
    debits = spent + blocked + holding_sales
    net = opening_balance - debits
    return {
        "enabled": enabled,
        "net": round(net, 4),
        "available": {
            "adhoc_margin": 0,
            "cash": round(opening_balance, 4),
            "opening_balance": round(opening_balance, 4),
            "live_balance": round(net, 4),
            "collateral": 0,
            "intraday_payin": 0,
        },
        "utilised": {
            "debits": round(debits, 4),
            "exposure": 0,
            "m2m_realised": 0,
            "m2m_unrealised": 0,
            "option_premium": 0,
            "payout": 0,
            "span": 0,
            "holding_sales": round(holding_sales, 4) + 0.0,  # + 0.0: no -0.0 on the wire
            "turnover": round(turnover, 4),
            "liquid_collateral": 0,
            "stock_collateral": 0,
            "delivery": 0,
        },
    }


def _margin_charges(symbol: str, item: dict[str, Any], quantity: int, price: float) -> dict[str, Any]:
    """``order_margins``' ``charges``: the order priced as a CNC delivery trade on its own."""
    side = str(item.get("transaction_type"))
    if quantity <= 0 or price <= 0 or side not in ("BUY", "SELL"):
        return {"total": 0}
    return order_charges(Fill("", symbol, side, quantity, price)).kite()


def _order_fill(order_id: str, trades: list[dict[str, Any]]) -> Fill:
    """One executed order of the day as the contract note lists it: its trades summed, at their VWAP
    (rounded as the order book's ``average_price``, so the roll and ``get_virtual_contract_note``
    on the day's orders agree)."""
    quantity = sum(int(t["quantity"]) for t in trades)
    value = sum(int(t["quantity"]) * float(t["average_price"]) for t in trades)
    first = trades[0]
    return Fill(order_id, first["tradingsymbol"], first["transaction_type"], quantity, round(value / quantity, 4))


def day_contract_note(conn: sqlite3.Connection, api_key: str, day: date) -> ContractNote | None:
    """The account's contract note for ``day`` from its trades (executed orders in first-trade
    order); None without trades. Sales out of T1 shares come from the cnc rows, so for a closed day
    call it before that day's roll resets them."""
    by_order: dict[str, list[dict[str, Any]]] = {}
    for row in conn.execute("SELECT order_id, body FROM trades WHERE api_key=? AND day=? ORDER BY seq",
                            (api_key, day.isoformat())):
        by_order.setdefault(row["order_id"], []).append(json.loads(row["body"]))
    if not by_order:
        return None
    t1_sold = {r["tradingsymbol"]: int(r["used_t1"]) for r in conn.execute(
        "SELECT tradingsymbol, used_t1 FROM cnc WHERE api_key=? AND used_t1>0", (api_key,))}
    return contract_note([_order_fill(o, trades) for o, trades in by_order.items()], t1_sold=t1_sold)


def note_summary(note: ContractNote) -> dict[str, Any]:
    """A contract note's figures (rupees) for ``contract_notes.body`` and the admin summary."""
    return {
        "brokerage": float(note.brokerage), "stt": float(note.stt),
        "exchange_turnover_charge": float(note.exchange_turnover_charge),
        "sebi_turnover_charge": float(note.sebi_turnover_charge), "stamp_duty": float(note.stamp_duty),
        "gst": float(note.gst), "total": float(note.total), "dp_scrips": list(note.dp_scrips),
        "dp_charges": float(note.dp_charges), "debit": float(note.debit),
        "orders": [o.fill.order_id for o in note.orders],
    }


def empty_segment() -> dict[str, Any]:
    return segment_wire(opening_balance=0.0, sales=0.0, spent=0.0, blocked=0.0, enabled=False)


class PortfolioReads:
    """``/portfolio/*``, ``/user/margins``, ``/margins/orders`` and the operator's account summary,
    mixed into ``OrderEngine`` (which provides what is below)."""

    db: Database
    market: Any
    calendar: NseCalendar

    if TYPE_CHECKING:
        def _now(self, now: datetime | None) -> datetime: ...
        def ensure_account(self, account: Account) -> None: ...
        def _blocked(self, conn: sqlite3.Connection, api_key: str, exclude_seq: int | None = None) -> float: ...
        def _instrument(self, exchange: str, symbol: str) -> Any: ...

    def _quote_day(self, now: datetime) -> date:
        day = now.date()
        return day if self.calendar.is_trading_day(day) else self.calendar.previous_trading_day(day)

    def _prices(self, token: int, now: datetime) -> tuple[float, float]:
        last = float(self.market.ltp(token, now))
        close = float(self.market.prev_close(token, self._quote_day(now)))
        return last, close

    def _books(self, account: Account) -> list[CncBook]:
        rows = self.db.conn().execute("SELECT * FROM cnc WHERE api_key=? ORDER BY tradingsymbol",
                                      (account.api_key,)).fetchall()
        return [CncBook.from_row(r) for r in rows]

    def holdings(self, account: Account) -> list[dict[str, Any]]:
        now = self._now(None)
        out = []
        for book in self._books(account):
            if book.settled_qty + book.t1_qty <= 0:
                continue
            last, close = self._prices(book.instrument_token, now)
            out.append(holding_wire(book, last_price=last, close_price=close, isin=isin_for(book.tradingsymbol),
                                    authorised_date=f"{self._quote_day(now).isoformat()} 00:00:00"))
        return out

    def positions(self, account: Account) -> dict[str, list[dict[str, Any]]]:
        now = self._now(None)
        rows = []
        for book in self._books(account):
            if book.day_buy_qty + book.day_sell_qty <= 0:
                continue
            last, close = self._prices(book.instrument_token, now)
            rows.append(position_wire(book, last_price=last, close_price=close))
        return {"net": rows, "day": [dict(r) for r in rows]}

    def _ledger(self, account: Account) -> sqlite3.Row:
        conn = self.db.conn()
        row = conn.execute("SELECT * FROM ledger WHERE api_key=?", (account.api_key,)).fetchone()
        if row is None:
            self.ensure_account(account)
            row = conn.execute("SELECT * FROM ledger WHERE api_key=?", (account.api_key,)).fetchone()
        return row

    def margins(self, account: Account, segment: str | None = None) -> dict[str, Any]:
        ledger = self._ledger(account)
        blocked = self._blocked(self.db.conn(), account.api_key)
        equity = segment_wire(
            opening_balance=float(ledger["opening_balance"]), sales=float(ledger["day_payin"]),
            spent=float(ledger["day_spent"]), blocked=blocked,
            turnover=float(ledger["day_spent"]) + float(ledger["day_payin"]),
        )
        both = {"equity": equity, "commodity": empty_segment()}
        if segment is None:
            return both
        if segment not in both:
            raise input_error(f"Invalid segment: {segment!r}.")
        return both[segment]

    def order_margins(self, account: Account, orders: list[dict[str, Any]],
                      query: dict[str, str] | None = None) -> list[dict[str, Any]]:
        """``POST /margins/orders``: for CNC the margin is the order value (VAR 100 %) for a BUY."""
        now = self._now(None)
        out = []
        for item in orders:
            if not isinstance(item, dict):
                raise input_error("Each order must be a JSON object.")
            inst = self._instrument(str(item.get("exchange") or "NSE"), str(item.get("tradingsymbol") or ""))
            try:
                quantity = int(item.get("quantity") or 0)
                price = float(item.get("price") or 0) or float(item.get("trigger_price") or 0)
            except (TypeError, ValueError):
                raise input_error("Invalid quantity or price.") from None
            if not price:
                price = float(self.market.ltp(int(inst.instrument_token), now))
            total = quantity * price if str(item.get("transaction_type")) == "BUY" else 0.0
            out.append({
                "type": "equity", "tradingsymbol": inst.tradingsymbol, "exchange": inst.exchange,
                "span": 0, "exposure": 0, "option_premium": 0, "additional": 0, "bo": 0,
                "cash": 0, "var": round(total, 4), "pnl": {"realised": 0, "unrealised": 0},
                "leverage": 1, "charges": _margin_charges(inst.tradingsymbol, item, quantity, price),
                "total": round(total, 4),
            })
        return out

    def account_summary(self, account: Account) -> dict[str, Any]:
        now = self._now(None)
        ledger = self._ledger(account)
        holdings = []
        unrealised = 0.0
        for book in self._books(account):
            quantity = book.settled_qty - book.used_settled + book.t1_qty - book.used_t1 + book.lot_qty
            if quantity <= 0:
                continue
            last = float(self.market.ltp(book.instrument_token, now))
            cost = book.cost_basis
            unrealised += last * quantity - cost
            holdings.append({"tradingsymbol": book.tradingsymbol, "quantity": quantity,
                             "t1_quantity": book.t1_qty, "average_price": round(cost / quantity, 4),
                             "last_price": last})
        conn = self.db.conn()
        count = conn.execute("SELECT COUNT(*) FROM orders WHERE api_key=?", (account.api_key,)).fetchone()[0]
        charged = conn.execute("SELECT COALESCE(SUM(debit), 0) FROM contract_notes WHERE api_key=?",
                               (account.api_key,)).fetchone()[0]
        today = day_contract_note(conn, account.api_key, now.date()) \
            if self.calendar.is_trading_day(now.date()) else None
        last_note = conn.execute("SELECT day, body FROM contract_notes WHERE api_key=? ORDER BY day DESC LIMIT 1",
                                 (account.api_key,)).fetchone()
        return {
            "user_name": account.user_name,
            "api_key": account.api_key,
            "cash": round(float(ledger["cash"]), 4),
            "available_cash": round(float(ledger["cash"]) - self._blocked(self.db.conn(), account.api_key), 4),
            "holdings": holdings,
            "holdings_at_cost": round(sum(b.cost_basis for b in self._books(account)), 4),
            "realised_pnl": round(float(ledger["realised"]), 4),
            "unrealised_pnl": round(unrealised, 4),
            # Debited at the settlement rolls so far; today's (so far) come off at tonight's roll.
            "charges": round(float(charged), 2),
            "charges_today": 0.0 if today is None else float(today.debit),
            "last_contract_note": None if last_note is None else {"day": last_note["day"],
                                                                   **json.loads(last_note["body"])},
            "orders": int(count),
        }
