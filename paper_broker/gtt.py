"""GTT (Good-Till-Triggered): requests and wire shape (pure), and the endpoints (``GttApi``).

``GttApi`` is a mixin of ``paper_broker.engine.OrderEngine``: each call brings the engine up to
now under the engine's lock, as an order does, then reads or changes the ``gtts`` table. Firing
belongs to the engine's minute loop (a fired leg is an order), not to this module.

Semantics (reference 3.15):

* ``single``: ``condition.last_price`` (as the client sent it) sets the direction. A trigger below
  it fires when a completed minute's low <= trigger; above it, when the minute's high >= trigger.
  A trigger equal to the last price is refused.
* ``two-leg`` (OCO): ``trigger_values[0]`` (stop) < last_price < ``trigger_values[1]`` (target);
  ``orders[i]`` belongs to ``trigger_values[i]``. The first leg to fire wins and the GTT is done.
  If one minute crosses both, the stop leg fires (the conservative reading of an unknown path).
* Firing places a LIMIT DAY CNC order (variety regular) at the leg's price, through the same
  funds/holdings/circuit checks as any order. The GTT becomes ``triggered`` either way; the leg's
  ``result.order_result`` says ``success`` with the order id, or ``failed`` with the
  ``rejection_reason`` and the id of the order row REJECTED by the RMS or the circuit check.
  ``result.triggered_at`` is the LTP at the firing minute.
* Statuses used (Zerodha's GTT help pages): active, triggered, expired (after 1 year), deleted (by
  DELETE; still readable by id, no longer listed), ``disabled`` (created with a trigger within
  0.25 % of the LTP; and every active GTT of a symbol on its split or bonus ex-date), ``cancelled``
  (every active GTT of a symbol a scenario delists). A disabled or cancelled GTT never fires and
  cannot be modified; it can be deleted. A fired GTT whose order is refused stays ``triggered``.
* At most 250 active GTTs per account. Only CNC on NSE; order_type LIMIT only.
* Ids are integers from SQLite (``INTEGER PRIMARY KEY AUTOINCREMENT``), never reused.
"""

from __future__ import annotations

import json
import math
import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from kitefleet.ticks import on_tick
from paper_broker.db import Account, Database
from paper_broker.errors import input_error
from paper_broker.orders import fmt_ts

GTT_TYPES = ("single", "two-leg")
MAX_ACTIVE = 250
VALID_DAYS = 365
NOT_FOUND_GTT = "Couldn't find that trigger."
#: A trigger this close to the LTP (a fraction of it) at creation makes the GTT ``disabled``.
DISABLE_WITHIN = 0.0025


@dataclass(frozen=True)
class GttLeg:
    transaction_type: str
    quantity: int
    price: float
    order_type: str = "LIMIT"
    product: str = "CNC"


@dataclass(frozen=True)
class GttRequest:
    type: str
    exchange: str
    tradingsymbol: str
    trigger_values: tuple[float, ...]
    last_price: float
    legs: tuple[GttLeg, ...]


def _json(params: dict[str, str], key: str) -> Any:
    raw = params.get(key)
    if raw is None or not str(raw).strip():
        raise input_error(f"Missing or empty field `{key}`.")
    try:
        return json.loads(raw)
    except ValueError:
        raise input_error(f"Invalid `{key}`: not valid JSON.") from None


def _float(value: Any, what: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise input_error(f"Invalid {what}: {value!r} is not a number.") from None
    if not math.isfinite(number) or number <= 0:
        raise input_error(f"Invalid {what}: must be greater than 0.")
    return number


def parse_gtt(params: dict[str, str]) -> GttRequest:
    kind = str(params.get("type") or "").strip()
    if kind not in GTT_TYPES:
        raise input_error("Invalid `type`: use single or two-leg.")
    condition = _json(params, "condition")
    orders = _json(params, "orders")
    if not isinstance(condition, dict):
        raise input_error("Invalid `condition`: expected a JSON object.")
    if not isinstance(orders, list):
        raise input_error("Invalid `orders`: expected a JSON array.")
    exchange = str(condition.get("exchange") or "")
    symbol = str(condition.get("tradingsymbol") or "")
    if exchange != "NSE":
        raise input_error("GTT is simulated for NSE cash instruments only.")
    if not symbol:
        raise input_error("Missing `condition.tradingsymbol`.")
    values = condition.get("trigger_values")
    if not isinstance(values, list):
        raise input_error("Invalid `condition.trigger_values`: expected a list.")
    triggers = tuple(_float(v, "trigger value") for v in values)
    last_price = _float(condition.get("last_price"), "`condition.last_price`")
    wanted = 1 if kind == "single" else 2
    if len(triggers) != wanted:
        raise input_error(f"A {kind} trigger needs exactly {wanted} trigger value(s).")
    if len(orders) != wanted:
        raise input_error(f"A {kind} trigger needs exactly {wanted} order(s).")
    if kind == "single" and triggers[0] == last_price:
        raise input_error("Trigger cannot be created with one of the trigger values equal to the last price.")
    if kind == "two-leg":
        if last_price in triggers:
            raise input_error("Trigger cannot be created with one of the trigger values equal to the last price.")
        if triggers[1] < last_price:
            raise input_error("Trigger cannot be created with the second trigger price less than the last price.")
        if triggers[0] > last_price:
            raise input_error("Trigger cannot be created with the first trigger price more than the last price.")
    legs = tuple(_leg(o, exchange, symbol) for o in orders)
    return GttRequest(kind, exchange, symbol, triggers, last_price, legs)


def _leg(order: Any, exchange: str, symbol: str) -> GttLeg:
    if not isinstance(order, dict):
        raise input_error("Invalid `orders`: each order must be a JSON object.")
    if str(order.get("exchange") or exchange) != exchange or str(order.get("tradingsymbol") or symbol) != symbol:
        raise input_error("GTT orders must be for the instrument of the condition.")
    side = str(order.get("transaction_type") or "")
    if side not in ("BUY", "SELL"):
        raise input_error("Invalid `transaction_type` in GTT order: use BUY or SELL.")
    order_type = str(order.get("order_type") or "")
    if order_type != "LIMIT":
        raise input_error("GTT orders must be LIMIT orders.")
    product = str(order.get("product") or "")
    if product != "CNC":
        raise input_error(f"Product {product or '(none)'} is not supported for GTT by the paper broker; use CNC.")
    try:
        quantity_f = float(order.get("quantity"))  # type: ignore[arg-type]  # None: the TypeError below
    except (TypeError, ValueError):
        raise input_error("Invalid `quantity` in GTT order.") from None
    if quantity_f != int(quantity_f) or quantity_f <= 0:
        raise input_error("Invalid `quantity` in GTT order: must be a whole number greater than 0.")
    return GttLeg(side, int(quantity_f), _float(order.get("price"), "`price` in GTT order"), order_type, product)


def check_leg_ticks(request: GttRequest, tick: float) -> None:
    for leg in request.legs:
        if not on_tick(leg.price, tick):
            raise input_error(f"Tick size for this script is {tick:g}. "
                              "Kindly enter price in the multiple of tick size for this script")


def fires(kind: str, triggers: list[float], last_price: float, low: float, high: float) -> int | None:
    """Which leg a completed minute with this low/high fires, if any."""
    if kind == "single":
        trigger = triggers[0]
        if trigger < last_price:
            return 0 if low <= trigger else None
        return 0 if high >= trigger else None
    if low <= triggers[0]:
        return 0
    if high >= triggers[1]:
        return 1
    return None


def too_near(trigger_values: Sequence[float], ltp: float) -> bool:
    """Kite disables a GTT whose trigger is within 0.25 % of the LTP when it is created."""
    return any(abs(t - ltp) <= DISABLE_WITHIN * ltp for t in trigger_values)


def condition_json(request: GttRequest, instrument_token: int) -> dict[str, Any]:
    return {
        "exchange": request.exchange,
        "last_price": request.last_price,
        "tradingsymbol": request.tradingsymbol,
        "trigger_values": list(request.trigger_values),
        "instrument_token": instrument_token,
    }


def orders_json(request: GttRequest) -> list[dict[str, Any]]:
    return [
        {
            "exchange": request.exchange,
            "tradingsymbol": request.tradingsymbol,
            "product": leg.product,
            "order_type": leg.order_type,
            "transaction_type": leg.transaction_type,
            "quantity": leg.quantity,
            "price": leg.price,
            "result": None,
        }
        for leg in request.legs
    ]


def gtt_wire(row: Any) -> dict[str, Any]:
    return {
        "id": int(row["id"]),
        "user_id": row["user_id"],
        "parent_trigger": None,
        "type": row["type"],
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
        "expires_at": row["expires_at"],
        "status": row["status"],
        "condition": json.loads(row["condition"]),
        "orders": json.loads(row["orders"]),
        "meta": {},
    }


class GttApi:
    """The ``/gtt/triggers`` endpoints, mixed into ``OrderEngine`` (which provides what is below)."""

    db: Database
    market: Any
    _lock: threading.RLock

    if TYPE_CHECKING:
        def _now(self, now: datetime | None) -> datetime: ...
        def advance(self, now: datetime | None = None) -> None: ...
        def _instrument(self, exchange: str, symbol: str) -> Any: ...
        def _ensure_ledger(self, conn: sqlite3.Connection, api_key: str, user_id: str, user_name: str,
                           starting_cash: float) -> None: ...

    def _gtt_row(self, conn: sqlite3.Connection, account: Account, trigger_id: int) -> dict[str, Any]:
        row = conn.execute("SELECT * FROM gtts WHERE id=? AND api_key=?", (int(trigger_id), account.api_key)).fetchone()
        if row is None:
            raise input_error(NOT_FOUND_GTT)
        return dict(row)

    def _parse_gtt(self, params: dict[str, str]) -> tuple[GttRequest, Any]:
        req = parse_gtt(params)
        inst = self._instrument(req.exchange, req.tradingsymbol)
        check_leg_ticks(req, float(inst.tick_size))
        return req, inst

    def place_gtt(self, account: Account, params: dict[str, str]) -> dict[str, int]:
        req, inst = self._parse_gtt(params)
        with self._lock:
            now = self._now(None)
            self.advance(now)
            with self.db.transaction() as conn:
                self._ensure_ledger(conn, account.api_key, account.user_id, account.user_name,
                                    account.starting_cash)
                active = conn.execute("SELECT COUNT(*) FROM gtts WHERE api_key=? AND status='active'",
                                      (account.api_key,)).fetchone()[0]
                if active >= MAX_ACTIVE:
                    raise input_error(f"Maximum of {MAX_ACTIVE} active GTT triggers allowed per account.")
                expires = now + timedelta(days=VALID_DAYS)
                ltp = float(self.market.ltp(int(inst.instrument_token), now))
                status = "disabled" if too_near(req.trigger_values, ltp) else "active"
                cur = conn.execute(
                    "INSERT INTO gtts(api_key, user_id, type, status, instrument_token, condition, orders, "
                    "created_at, updated_at, expires_at, expires_iso, active_from) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (account.api_key, account.user_id, req.type, status, int(inst.instrument_token),
                     json.dumps(condition_json(req, int(inst.instrument_token))),
                     json.dumps(orders_json(req)), fmt_ts(now), fmt_ts(now), fmt_ts(expires),
                     expires.isoformat(), now.isoformat()),
                )
                trigger_id = int(cur.lastrowid or 0)
        return {"trigger_id": trigger_id}

    def gtts(self, account: Account) -> list[dict[str, Any]]:
        rows = self.db.conn().execute("SELECT * FROM gtts WHERE api_key=? AND status!='deleted' ORDER BY id DESC",
                                      (account.api_key,)).fetchall()
        return [gtt_wire(r) for r in rows]

    def get_gtt(self, account: Account, trigger_id: int) -> dict[str, Any]:
        return gtt_wire(self._gtt_row(self.db.conn(), account, trigger_id))

    def modify_gtt(self, account: Account, trigger_id: int, params: dict[str, str]) -> dict[str, int]:
        req, inst = self._parse_gtt(params)
        with self._lock:
            now = self._now(None)
            self.advance(now)
            with self.db.transaction() as conn:
                g = self._gtt_row(conn, account, trigger_id)
                if g["status"] != "active":
                    raise input_error(f"Trigger cannot be modified as it is {g['status']}.")
                conn.execute(
                    "UPDATE gtts SET type=?, instrument_token=?, condition=?, orders=?, updated_at=?, active_from=? "
                    "WHERE id=?",
                    (req.type, int(inst.instrument_token),
                     json.dumps(condition_json(req, int(inst.instrument_token))),
                     json.dumps(orders_json(req)), fmt_ts(now), now.isoformat(), int(g["id"])),
                )
        return {"trigger_id": int(trigger_id)}

    def delete_gtt(self, account: Account, trigger_id: int) -> dict[str, int]:
        with self._lock:
            now = self._now(None)
            self.advance(now)
            with self.db.transaction() as conn:
                g = self._gtt_row(conn, account, trigger_id)
                if g["status"] == "deleted":
                    raise input_error(NOT_FOUND_GTT)
                conn.execute("UPDATE gtts SET status='deleted', updated_at=? WHERE id=?", (fmt_ts(now), int(g["id"])))
        return {"trigger_id": int(trigger_id)}
