"""Order requests and the Kite order wire shape (pure functions; the engine owns state).

Parsing turns the form fields the kiteconnect client sends (all strings) into an ``OrderRequest``
and raises ``InputException`` (HTTP 400, no order created) for anything the live API refuses up
front: missing or malformed fields, a price or trigger off the instrument's tick, a MARKET or SL-M
order without ``market_protection`` (mandatory via API since April 2026), a tag over 20
characters, a product or exchange the paper broker does not simulate.

Wire facts (reference/kite-api.md 3.3-3.9):

* ``order_id``: 15 digits, ``YYMMDD`` of the simulated placement day + a 9-digit sequence that
  is global to the database (so ids never repeat across days or restarts).
* ``exchange_order_id``: ``"1100000"`` + the same 9-digit sequence, set once the order reaches
  the (simulated) exchange; null for an AMO still waiting and for an order rejected by RMS.
* ``trade_id``: ``str(50000000 + trade sequence)``.
* Timestamps: ``"YYYY-MM-DD HH:MM:SS"`` IST, except a trade's ``order_timestamp`` (``HH:MM:SS``).
* ``auction_number`` is absent (Kite sends it only on auction orders); ``exchange_update_timestamp``
  is set once an order reaches the exchange (open orders included), null on an RMS rejection.
* ``tags`` is present only when the order has a tag or market protection: the user's tag first,
  then, for a MARKET or SL-M order, Kite's protection tags ``mktp`` and ``mktp:<pct>`` (``-1``,
  auto, shows the AUTO_PROTECTION_PCT it stands for). ``tag`` stays the user's own (or null).
* A protected MARKET or SL-M order is shown as Kite's book shows it (Zerodha's response samples,
  issue 17): ``order_type`` LIMIT (SL-M: SL), ``market_protection`` 0, ``price`` = its protection
  limit, the worst price it accepts (``limit_price`` in the engine's row). Funds and matching are
  unchanged.
* A CANCELLED order keeps ``pending_quantity`` equal to ``cancelled_quantity``, as in the official
  sample; a REJECTED order shows pending 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from kitefleet.clock import IST
from kitefleet.states import OrderStatus
from kitefleet.ticks import on_tick, round_to_tick
from paper_broker.errors import input_error

VARIETIES = ("regular", "amo")
ORDER_TYPES = ("MARKET", "LIMIT", "SL", "SL-M")
#: Order types that need ``market_protection`` and become a protected LIMIT at the exchange.
PROTECTED_TYPES = ("MARKET", "SL-M")
TRANSACTION_TYPES = ("BUY", "SELL")
VALIDITIES = ("DAY", "IOC")
PRODUCTS = ("CNC",)
EXCHANGES = ("NSE",)
MAX_MODIFICATIONS = 25
TAG_MAX = 20
#: ``market_protection=-1`` ("auto"): Kite picks a band by price; one flat band is enough here.
AUTO_PROTECTION_PCT = 3.0

NO_PROTECTION_MESSAGE = (
    "Market orders without market protection are not allowed via API. "
    "Please set market protection or use a Limit order."
)


def fmt_ts(at: datetime) -> str:
    return at.astimezone(IST).strftime("%Y-%m-%d %H:%M:%S")


def fmt_time(at: datetime) -> str:
    return at.astimezone(IST).strftime("%H:%M:%S")


@dataclass(frozen=True)
class OrderRequest:
    exchange: str
    tradingsymbol: str
    transaction_type: str
    quantity: int
    product: str
    order_type: str
    price: float  # 0 for MARKET and SL-M
    trigger_price: float  # 0 unless SL or SL-M
    validity: str
    disclosed_quantity: int
    market_protection: int  # 0 when not applicable
    tag: str | None

    @property
    def needs_trigger(self) -> bool:
        return self.order_type in ("SL", "SL-M")

    @property
    def is_buy(self) -> bool:
        return self.transaction_type == "BUY"


def _text(params: dict[str, str], key: str) -> str | None:
    value = params.get(key)
    if value is None:
        return None
    value = str(value).strip()
    return value or None


def _number(params: dict[str, str], key: str) -> float | None:
    raw = _text(params, key)
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise input_error(f"Invalid `{key}`: {raw!r} is not a number.") from None
    if not math.isfinite(value):
        raise input_error(f"Invalid `{key}`: {raw!r} is not a number.")
    return value


def _integer(params: dict[str, str], key: str) -> int | None:
    value = _number(params, key)
    if value is None:
        return None
    if value != int(value):
        raise input_error(f"Invalid `{key}`: must be a whole number.")
    return int(value)


def _choice(params: dict[str, str], key: str, allowed: tuple[str, ...], default: str | None = None) -> str:
    value = _text(params, key)
    if value is None:
        if default is not None:
            return default
        raise input_error(f"Missing or empty field `{key}`.")
    if value not in allowed:
        raise input_error(f"Invalid `{key}`: {value!r}. Allowed: {', '.join(allowed)}.")
    return value


def check_tick(value: float, tick: float, what: str) -> None:
    if not on_tick(value, tick):
        raise input_error(
            f"Tick size for this script is {tick:g}. Kindly enter {what} in the multiple of tick size for this script"
        )


def parse_tag(params: dict[str, str]) -> str | None:
    tag = _text(params, "tag")
    if tag is not None and len(tag) > TAG_MAX:
        raise input_error(f"Invalid `tag`: at most {TAG_MAX} characters are allowed ({len(tag)} given).")
    return tag


def parse_protection(params: dict[str, str], order_type: str) -> int:
    value = _integer(params, "market_protection")
    if order_type not in PROTECTED_TYPES:
        return value if value is not None and value != 0 else 0
    if value is None or value == 0:
        raise input_error(NO_PROTECTION_MESSAGE)
    if value != -1 and not 1 <= value <= 100:
        raise input_error("Invalid `market_protection`: use -1 (auto) or a percentage from 1 to 100.")
    return value


def parse_order(params: dict[str, str]) -> OrderRequest:
    """Everything that does not need the instrument (ticks are checked by ``check_prices``)."""
    exchange = _text(params, "exchange")
    if exchange is None:
        raise input_error("Missing or empty field `exchange`.")
    if exchange not in EXCHANGES:
        raise input_error(f"Exchange {exchange} is not simulated by the paper broker; use NSE.")
    symbol = _text(params, "tradingsymbol")
    if symbol is None:
        raise input_error("Missing or empty field `tradingsymbol`.")
    transaction_type = _choice(params, "transaction_type", TRANSACTION_TYPES)
    quantity = _integer(params, "quantity")
    if quantity is None or quantity <= 0:
        raise input_error("Invalid `quantity`: must be a whole number greater than 0.")
    product = _text(params, "product")
    if product is None:
        raise input_error("Missing or empty field `product`.")
    if product not in PRODUCTS:
        raise input_error(f"Product {product} is not supported by the paper broker; use CNC.")
    order_type = _choice(params, "order_type", ORDER_TYPES)
    validity = _choice(params, "validity", VALIDITIES, default="DAY")
    price, trigger = _prices(params, order_type, transaction_type)
    disclosed = _integer(params, "disclosed_quantity") or 0
    if disclosed < 0 or disclosed > quantity:
        raise input_error("Invalid `disclosed_quantity`: must be between 0 and the order quantity.")
    return OrderRequest(
        exchange=exchange,
        tradingsymbol=symbol,
        transaction_type=transaction_type,
        quantity=quantity,
        product=product,
        order_type=order_type,
        price=price,
        trigger_price=trigger,
        validity=validity,
        disclosed_quantity=disclosed,
        market_protection=parse_protection(params, order_type),
        tag=parse_tag(params),
    )


def _prices(params: dict[str, str], order_type: str, side: str) -> tuple[float, float]:
    price = _number(params, "price")
    trigger = _number(params, "trigger_price")
    if order_type in ("LIMIT", "SL"):
        if price is None or price <= 0:
            raise input_error("Invalid `price`: a LIMIT or SL order needs a price greater than 0.")
    else:
        price = 0.0
    if order_type in ("SL", "SL-M"):
        if trigger is None or trigger <= 0:
            raise input_error("Invalid `trigger_price`: an SL or SL-M order needs a trigger price greater than 0.")
    else:
        trigger = 0.0
    if order_type == "SL":
        if side == "BUY" and trigger > price:
            raise input_error("Trigger price for stoploss buy orders should be less than or equal to the price.")
        if side == "SELL" and trigger < price:
            raise input_error(
                "Trigger price for stoploss sell orders should be greater than or equal to the price."
            )
    return price, trigger


def parse_modification(current: OrderRequest, params: dict[str, str]) -> OrderRequest:
    """Apply a modify request: omitted fields keep their values; the result is re-validated."""
    order_type = _choice(params, "order_type", ORDER_TYPES, default=current.order_type)
    merged: dict[str, str] = {
        "exchange": current.exchange,
        "tradingsymbol": current.tradingsymbol,
        "transaction_type": current.transaction_type,
        "product": current.product,
        "order_type": order_type,
        "quantity": str(current.quantity),
        "validity": current.validity,
        "disclosed_quantity": str(current.disclosed_quantity),
    }
    if current.price:
        merged["price"] = repr(current.price)
    if current.trigger_price:
        merged["trigger_price"] = repr(current.trigger_price)
    # A MARKET order keeps its original protection; LIMIT -> MARKET must bring one.
    if current.market_protection and order_type == current.order_type:
        merged["market_protection"] = str(current.market_protection)
    if current.tag is not None:
        merged["tag"] = current.tag
    for key in ("quantity", "price", "trigger_price", "validity", "disclosed_quantity", "market_protection"):
        value = _text(params, key)
        if value is not None:
            merged[key] = value
    request = parse_order(merged)
    return replace(request, tag=current.tag)


def check_prices(request: OrderRequest, tick: float) -> None:
    if request.order_type in ("LIMIT", "SL"):
        check_tick(request.price, tick, "price")
    if request.needs_trigger:
        check_tick(request.trigger_price, tick, "trigger price")


def protection_pct(market_protection: int) -> float:
    return AUTO_PROTECTION_PCT if market_protection == -1 else float(market_protection)


def protected_limit(reference: float, market_protection: int, side: str, tick: float) -> float:
    """The worst price a protected MARKET/SL-M order accepts (Kite turns it into this LIMIT)."""
    pct = protection_pct(market_protection) / 100.0
    if side == "BUY":
        return round_to_tick(reference * (1 + pct), tick, "floor")
    return max(tick if tick > 0 else 0.01, round_to_tick(reference * (1 - pct), tick, "ceil"))


def protection_tags(order_type: str, market_protection: int) -> list[str]:
    """The tags Kite adds to a protected MARKET / SL-M order, e.g. ``["mktp", "mktp:2.00"]``."""
    if order_type not in PROTECTED_TYPES or not market_protection:
        return []
    return ["mktp", f"mktp:{protection_pct(market_protection):.2f}"]


def order_id_for(day: datetime, seq: int) -> str:
    return f"{day.astimezone(IST):%y%m%d}{seq:09d}"


def exchange_order_id_for(seq: int) -> str:
    return f"1100000{seq:09d}"


def trade_id_for(seq: int) -> str:
    return str(50000000 + seq)


def order_wire(row: dict[str, Any]) -> dict[str, Any]:
    """The order-book shape (reference 3.6) from an ``orders`` table row."""
    status = row["status"]
    quantity = int(row["quantity"])
    filled = int(row["filled_quantity"])
    cancelled = int(row["cancelled_quantity"])
    if status == OrderStatus.REJECTED:
        pending = 0
    elif status == OrderStatus.CANCELLED:
        pending = cancelled
    else:
        pending = quantity - filled
    tag = row["tag"]
    order_type = row["order_type"]
    protection = int(row["market_protection"])
    mktp = protection_tags(order_type, protection)
    # A protected MARKET order shows what Kite's book shows for it (Zerodha's response samples):
    # a LIMIT at the protection limit, ``market_protection`` 0 and the ``mktp`` tags.
    price = float(row["limit_price"]) if mktp else float(row["price"])
    if mktp:
        order_type = "SL" if order_type == "SL-M" else "LIMIT"
        protection = 0
    wire: dict[str, Any] = {
        "account_id": row["user_id"],
        "placed_by": row["user_id"],
        "order_id": row["order_id"],
        "exchange_order_id": row["exchange_order_id"],
        "parent_order_id": None,
        "status": status,
        "status_message": row["status_message"],
        "status_message_raw": row["status_message"],
        "order_timestamp": row["order_timestamp"],
        "exchange_update_timestamp": row["exchange_update_timestamp"],
        "exchange_timestamp": row["exchange_timestamp"],
        "variety": row["variety"],
        "modified": bool(row["modifications"]),
        "exchange": row["exchange"],
        "tradingsymbol": row["tradingsymbol"],
        "instrument_token": int(row["instrument_token"]),
        "order_type": order_type,
        "transaction_type": row["transaction_type"],
        "validity": row["validity"],
        "validity_ttl": 0,
        "product": row["product"],
        "quantity": quantity,
        "disclosed_quantity": int(row["disclosed_quantity"]),
        "price": price,
        "trigger_price": float(row["trigger_price"]),
        "average_price": float(row["average_price"]),
        "filled_quantity": filled,
        "pending_quantity": pending,
        "cancelled_quantity": cancelled,
        "market_protection": protection,
        "meta": {},
        "tag": tag,
        "guid": row["guid"],
    }
    # Kite sends ``auction_number`` only on auction orders (variety ``auction``, not simulated).
    tags = ([tag] if tag is not None else []) + mktp
    if tags:
        wire["tags"] = tags
    return wire


def request_of(row: dict[str, Any]) -> OrderRequest:
    return OrderRequest(
        exchange=row["exchange"],
        tradingsymbol=row["tradingsymbol"],
        transaction_type=row["transaction_type"],
        quantity=int(row["quantity"]),
        product=row["product"],
        order_type=row["order_type"],
        price=float(row["price"]),
        trigger_price=float(row["trigger_price"]),
        validity=row["validity"],
        disclosed_quantity=int(row["disclosed_quantity"]),
        market_protection=int(row["market_protection"]),
        tag=row["tag"],
    )
