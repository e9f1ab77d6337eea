"""Zerodha's equity charges: one dated table, and a trading day's contract note priced with it.

Pure functions on plain data (no SQLite, no clock, no I/O): the paper broker's routes, its
settlement roll and a backtest all price trades here, so they agree to the paisa.

The table (``ZERODHA_EQUITY``) is Zerodha's schedule in force since 2024-10-01 (the date NSE moved
to a flat transaction charge), as published on these pages, checked 2026-12-04:

* zerodha.com/charges, equity: STT 0.1 % on buy and sell (delivery), 0.025 % on the sell
  (intraday); NSE transaction charge 0.00297 %; SEBI Rs 10 / crore; stamp duty 0.015 % (delivery)
  and 0.003 % (intraday) on buys; GST 18 % on brokerage + SEBI fee + transaction charge; intraday
  brokerage 0.03 % or Rs 20 per executed order, whichever is lower; delivery brokerage zero.
* support.zerodha.com, "What is the brokerage at Zerodha for equity?": a CNC buy and sell of the
  same scrip on the same day is intraday; delivery trades pay a token Rs 0.01 per contract note
  ("a service can't be provided for an absolute 0 fee").
* support.zerodha.com, "How is the Securities Transaction Tax (STT) calculated?": STT is computed per
  scrip per day at the day's average price, (buy value + sell value) / (buy qty + sell qty): the
  intraday part on the netted sell quantity, the delivery part on the quantity not netted; each is
  rounded to the rupee, 50 paise and above up.
* support.zerodha.com, "What does DP charge mean?" and "Why is the DP charge applied for BTST
  trades?": Rs 13 + 18 % GST per scrip per day on which shares leave the demat; posted on the
  ledger, not on the contract note; charged on a BTST (T1) sale too, because T1 shares now settle
  through the client's own demat. ``dp_on_t1_sale=False`` gives the older rule (no DP charge on a
  sale of T1 shares that are not yet in the demat).

Rounding, as a contract note prints it: brokerage per executed order to the paisa; STT per scrip
to the rupee (above); stamp duty per order to the paisa (Kite's own ``order_margins`` sample shows
0.22 for 0.2247); the note's exchange transaction charge, SEBI fee and GST on the day's totals, to
the paisa, half up. Per-order figures in Kite's shape (``OrderCharges.kite``) stay unrounded
otherwise, as Kite sends them.

Not simulated: NSE's IPFT levy (Rs 10 / crore, a fraction of a paisa on most trades), the women
account holders' DP rebate, BSE.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

PAISA = Decimal("0.01")
RUPEE = Decimal("1")
BUY = "BUY"
SELL = "SELL"


@dataclass(frozen=True)
class EquityCharges:
    """One broker's equity-cash charges; rates are fractions of traded value."""

    published: date  # the schedule's effective date
    checked: date  # when the figures were last compared with the published pages
    source: str
    stt_delivery: Decimal  # on buy and on sell
    stt_intraday_sell: Decimal
    exchange_txn: Decimal  # NSE, on buy and on sell
    sebi: Decimal  # Rs 10 per crore
    stamp_delivery_buy: Decimal
    stamp_intraday_buy: Decimal
    gst: Decimal  # on brokerage + exchange transaction charge + SEBI fee
    intraday_brokerage_rate: Decimal
    intraday_brokerage_cap: Decimal  # per executed order
    delivery_brokerage_per_note: Decimal  # the token paisa when a note would carry no brokerage
    dp_per_scrip_day: Decimal  # before GST
    dp_on_t1_sale: bool


ZERODHA_EQUITY = EquityCharges(
    published=date(2024, 10, 1),
    checked=date(2026, 12, 4),
    source="zerodha.com/charges (equity); support.zerodha.com STT, brokerage and DP charge articles",
    stt_delivery=Decimal("0.001"),
    stt_intraday_sell=Decimal("0.00025"),
    exchange_txn=Decimal("0.0000297"),
    sebi=Decimal("0.000001"),
    stamp_delivery_buy=Decimal("0.00015"),
    stamp_intraday_buy=Decimal("0.00003"),
    gst=Decimal("0.18"),
    intraday_brokerage_rate=Decimal("0.0003"),
    intraday_brokerage_cap=Decimal("20"),
    delivery_brokerage_per_note=Decimal("0.01"),
    dp_per_scrip_day=Decimal("13"),
    dp_on_t1_sale=True,
)


@dataclass(frozen=True)
class Fill:
    """One executed CNC order of the day (its trades summed), as the contract note lists it."""

    order_id: str
    tradingsymbol: str
    transaction_type: str  # BUY or SELL
    quantity: int
    average_price: float

    def __post_init__(self) -> None:
        if self.transaction_type not in (BUY, SELL):
            raise ValueError(f"order {self.order_id}: transaction_type {self.transaction_type!r} is not BUY or SELL")
        if isinstance(self.quantity, bool) or not isinstance(self.quantity, int) or self.quantity <= 0:
            raise ValueError(f"order {self.order_id}: quantity {self.quantity!r} is not a positive whole number")
        if not self.average_price > 0:
            raise ValueError(f"order {self.order_id}: average_price {self.average_price!r} is not positive")


@dataclass(frozen=True)
class OrderCharges:
    """One order's share of the day's charges. ``stt`` is unrounded: the note rounds it per scrip."""

    fill: Fill
    intraday_quantity: int
    brokerage: Decimal
    stt: Decimal
    exchange_turnover_charge: Decimal
    sebi_turnover_charge: Decimal
    stamp_duty: Decimal
    gst: Decimal

    @property
    def total(self) -> Decimal:
        return (self.brokerage + self.stt + self.exchange_turnover_charge + self.sebi_turnover_charge
                + self.stamp_duty + self.gst)

    def kite(self) -> dict[str, Any]:
        """The ``charges`` object of Kite's virtual contract note and ``order_margins`` (NSE: IGST)."""
        gst = float(self.gst)
        return {
            "transaction_tax": float(self.stt),
            "transaction_tax_type": "stt",
            "exchange_turnover_charge": float(self.exchange_turnover_charge),
            "sebi_turnover_charge": float(self.sebi_turnover_charge),
            "brokerage": float(self.brokerage),
            "stamp_duty": float(self.stamp_duty),
            "gst": {"igst": gst, "cgst": 0, "sgst": 0, "total": gst},
            "total": float(self.total),
        }


@dataclass(frozen=True)
class ContractNote:
    """A day's charges for one account, rounded as the contract note prints them.

    ``total`` is what the contract note charges; ``dp_charges`` (GST included) is posted on the
    ledger beside it; ``debit`` is both, what leaves the account's cash for the day."""

    orders: tuple[OrderCharges, ...]
    brokerage: Decimal
    stt: Decimal
    exchange_turnover_charge: Decimal
    sebi_turnover_charge: Decimal
    stamp_duty: Decimal
    gst: Decimal
    dp_scrips: tuple[str, ...]
    dp_charges: Decimal

    @property
    def total(self) -> Decimal:
        return (self.brokerage + self.stt + self.exchange_turnover_charge + self.sebi_turnover_charge
                + self.stamp_duty + self.gst)

    @property
    def debit(self) -> Decimal:
        return self.total + self.dp_charges


def _dec(value: float | int) -> Decimal:
    # Through str: a price of 101.15 is 101.15, not the binary float next to it.
    return Decimal(str(value))


def _paise(value: Decimal) -> Decimal:
    return value.quantize(PAISA, rounding=ROUND_HALF_UP)


def _rupees(value: Decimal) -> Decimal:
    return value.quantize(RUPEE, rounding=ROUND_HALF_UP)


def order_charges(fill: Fill, intraday_quantity: int = 0,
                  table: EquityCharges = ZERODHA_EQUITY) -> OrderCharges:
    """Charges of one executed order, ``intraday_quantity`` of which is netted against an opposite
    order of the same scrip the same day (the rest is delivery)."""
    if not 0 <= intraday_quantity <= fill.quantity:
        raise ValueError(f"order {fill.order_id}: intraday quantity {intraday_quantity} is outside 0..{fill.quantity}")
    price = _dec(fill.average_price)
    value = fill.quantity * price
    intraday_value = intraday_quantity * price
    delivery_value = value - intraday_value
    brokerage = Decimal(0)
    if intraday_quantity:
        brokerage = _paise(min(table.intraday_brokerage_cap, intraday_value * table.intraday_brokerage_rate))
    stt = delivery_value * table.stt_delivery
    stamp = Decimal(0)
    if fill.transaction_type == SELL:
        stt += intraday_value * table.stt_intraday_sell
    else:
        stamp = _paise(delivery_value * table.stamp_delivery_buy + intraday_value * table.stamp_intraday_buy)
    exchange = value * table.exchange_txn
    sebi = value * table.sebi
    return OrderCharges(fill=fill, intraday_quantity=intraday_quantity, brokerage=brokerage, stt=stt,
                        exchange_turnover_charge=exchange, sebi_turnover_charge=sebi, stamp_duty=stamp,
                        gst=(brokerage + exchange + sebi) * table.gst)


def _allocate(quantity: int, fills: list[Fill]) -> list[int]:
    """Spread a scrip's netted quantity over one side's orders, earliest first."""
    out = []
    for fill in fills:
        take = min(quantity, fill.quantity)
        out.append(take)
        quantity -= take
    return out


def contract_note(fills: Iterable[Fill], *, t1_sold: Mapping[str, int] | None = None,
                  table: EquityCharges = ZERODHA_EQUITY) -> ContractNote:
    """The contract note of one account's trading day; ``fills`` in execution order.

    ``t1_sold`` gives, per symbol, how much of the day's net sale came out of T1 shares (bought
    the previous trading day, not yet in the demat): with ``table.dp_on_t1_sale`` off, a scrip
    sold only out of those carries no DP charge."""
    fills = list(fills)
    by_symbol: dict[str, list[int]] = {}  # symbol -> positions in fills
    for i, fill in enumerate(fills):
        by_symbol.setdefault(fill.tradingsymbol, []).append(i)
    intraday = [0] * len(fills)  # netted quantity of each fill
    stt = Decimal(0)
    dp_scrips = []
    delivery_traded = False
    for symbol, positions in by_symbol.items():
        buys = [i for i in positions if fills[i].transaction_type == BUY]
        sells = [i for i in positions if fills[i].transaction_type == SELL]
        buy_qty = sum(fills[i].quantity for i in buys)
        sell_qty = sum(fills[i].quantity for i in sells)
        netted = min(buy_qty, sell_qty)
        for side in (buys, sells):
            for i, quantity in zip(side, _allocate(netted, [fills[i] for i in side]), strict=True):
                intraday[i] = quantity
        traded_value = sum((fills[i].quantity * _dec(fills[i].average_price) for i in positions), Decimal(0))
        average = traded_value / (buy_qty + sell_qty)
        delivery_qty = abs(buy_qty - sell_qty)
        stt += _rupees(netted * average * table.stt_intraday_sell)
        stt += _rupees(delivery_qty * average * table.stt_delivery)
        delivery_traded = delivery_traded or delivery_qty > 0
        sold_from_demat = sell_qty - buy_qty
        if sold_from_demat > 0 and not table.dp_on_t1_sale:
            sold_from_demat -= min(sold_from_demat, int((t1_sold or {}).get(symbol, 0)))
        if sold_from_demat > 0:
            dp_scrips.append(symbol)
    orders = tuple(order_charges(f, netted_qty, table) for f, netted_qty in zip(fills, intraday, strict=True))
    brokerage = sum((o.brokerage for o in orders), Decimal(0))
    if brokerage == 0 and delivery_traded:
        brokerage = table.delivery_brokerage_per_note
    turnover = sum((f.quantity * _dec(f.average_price) for f in fills), Decimal(0))
    exchange = _paise(turnover * table.exchange_txn)
    sebi = _paise(turnover * table.sebi)
    dp_each = _paise(table.dp_per_scrip_day * (1 + table.gst))
    return ContractNote(
        orders=orders, brokerage=brokerage, stt=stt, exchange_turnover_charge=exchange,
        sebi_turnover_charge=sebi, stamp_duty=sum((o.stamp_duty for o in orders), Decimal(0)),
        gst=_paise((brokerage + exchange + sebi) * table.gst),
        dp_scrips=tuple(dp_scrips), dp_charges=dp_each * len(dp_scrips),
    )


def virtual_contract_note(orders: Iterable[Any]) -> list[dict[str, Any]]:
    """``POST /charges/orders`` (``kite.get_virtual_contract_note``): each executed order of the list
    with its ``charges``, the list priced as one day's contract note (so a CNC buy and sell of the
    same scrip in it net as intraday). Raises ValueError naming the order and field that is wrong."""
    fills = []
    echoed = []
    for n, item in enumerate(orders):
        if not isinstance(item, Mapping):
            raise ValueError(f"order {n}: expected a JSON object, got {type(item).__name__}")
        label = str(item.get("order_id") or n)
        exchange, product = item.get("exchange"), item.get("product")
        if exchange != "NSE" or product != "CNC":
            raise ValueError(f"order {label}: only NSE CNC equity is simulated (exchange {exchange!r}, "
                             f"product {product!r})")
        try:
            quantity = int(str(item.get("quantity")))
            price = float(str(item.get("average_price")))
        except ValueError:
            raise ValueError(f"order {label}: quantity {item.get('quantity')!r} and average_price "
                             f"{item.get('average_price')!r} must be numbers") from None
        fills.append(Fill(label, str(item.get("tradingsymbol") or ""), str(item.get("transaction_type")),
                          quantity, price))
        echoed.append({"transaction_type": item.get("transaction_type"), "tradingsymbol": item.get("tradingsymbol"),
                       "exchange": exchange, "variety": item.get("variety"), "product": product,
                       "order_type": item.get("order_type"), "quantity": quantity, "price": price})
    note = contract_note(fills)
    return [{**wire, "charges": order.kite()} for wire, order in zip(echoed, note.orders, strict=True)]
