"""The daily loss limit (``MAX_DAILY_LOSS_PERCENT``): pure rules on plain data.

Day P&L of the bot's shares (issue 18)::

    sum over owned lots of (LTP - max(previous close, today's fill price)) x quantity
    + today's realised P&L of owned sells
    - today's charges

An owned lot bought before today counts from the previous close; one bought today from
``max(previous close, its fill price)`` (a buy above yesterday's close counts its own price, a buy
below it does not bank the gap as a gain). An owned sell of today counts against the same
reference: the previous close, or ``max(previous close, today's bot buy price)`` when the bot
bought the symbol today. Only owned quantity counts, at most what is held (oldest lots first, as
the ledger removes them). Charges are the contract note's (``kite.get_virtual_contract_note``) for
the bot's executed orders of today; when the broker cannot answer, they count as 0 and the result
says ``charges_known=False``.

The limit trips when the day P&L falls below ``-(percent / 100) x`` the bot's equity at the
previous close (cash + owned shares x previous close).

==========================================  ===========================================
case                                        day P&L
==========================================  ===========================================
100 held from yesterday, close 100, LTP 95  -500
bought 10 today at 102 (close 100), LTP 98  -40 (counted from the fill)
bought 10 today at 97 (close 100), LTP 98   -20 (counted from the close)
sold 10 today at 90 (close 100)             -100 realised
lot of 50 owned, 30 held                    the 30 oldest shares only
charges 12.5                                -12.5
==========================================  ===========================================
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Sell:
    """One owned SELL fill of today: symbol, quantity, average price."""

    symbol: str
    quantity: int
    price: float


@dataclass(frozen=True)
class DayPnl:
    unrealised: float
    realised: float
    charges: float
    charges_known: bool
    #: symbols whose LTP or reference price is unknown (left out of the figure)
    missing: tuple[str, ...] = field(default_factory=tuple)

    @property
    def total(self) -> float:
        return round(self.unrealised + self.realised - self.charges, 2)


def _capped(lots: Sequence[Mapping[str, Any]], held: int | None) -> list[Mapping[str, Any]]:
    """The lots cut to ``held`` shares, oldest first (what the bot may protect: min(owned, held))."""
    if held is None:
        return list(lots)
    left = max(0, int(held))
    out: list[Mapping[str, Any]] = []
    for rec in lots:
        q = min(int(rec.get("quantity") or 0), left)
        if q <= 0:
            break
        out.append({**rec, "quantity": q})
        left -= q
    return out


def _reference(close: float | None, fill: float | None) -> float | None:
    known = [p for p in (close, fill) if p is not None and p > 0]
    return max(known) if known else None


def day_pnl(lots: Mapping[str, Sequence[Mapping[str, Any]]], ltp: Mapping[str, float],
            prev_close: Mapping[str, float], today: str, *, held: Mapping[str, int] | None = None,
            sells: Iterable[Sell] = (), today_buy_price: Mapping[str, float] | None = None,
            charges: float | None = 0.0) -> DayPnl:
    """The bot's day P&L (see the module table). ``lots``: the ledger's lots (symbol -> lots, oldest
    first); ``today``: ``YYYY-MM-DD``; ``today_buy_price``: symbol -> the bot's average buy price
    today (the reference of a share bought and sold today); ``charges`` None: unknown (counted 0)."""
    buys = {str(k).upper(): float(v) for k, v in (today_buy_price or {}).items()}
    unrealised = 0.0
    missing: set[str] = set()
    for sym, sym_lots in lots.items():
        sym = str(sym).upper()
        capped = _capped(sym_lots, None if held is None else int(held.get(sym, 0)))
        if not capped:
            continue
        last = ltp.get(sym)
        close = prev_close.get(sym)
        for rec in capped:
            fill = float(rec.get("price") or 0.0) if rec.get("date") == today else None
            ref = _reference(close, fill)
            if last is None or last <= 0 or ref is None:
                missing.add(sym)
                continue
            unrealised += (float(last) - ref) * int(rec["quantity"])
    realised = 0.0
    for s in sells:
        sym = s.symbol.upper()
        ref = _reference(prev_close.get(sym), buys.get(sym))
        if ref is None:
            missing.add(sym)
            continue
        realised += (float(s.price) - ref) * int(s.quantity)
    return DayPnl(round(unrealised, 2), round(realised, 2), round(float(charges or 0.0), 2), charges is not None,
                  tuple(sorted(missing)))


def bot_equity(cash: float, owned: Mapping[str, int], price: Mapping[str, float]) -> float:
    """Cash + owned shares x price (a symbol without a price counts 0)."""
    return round(float(cash) + sum(q * float(price.get(s, 0.0) or 0.0) for s, q in owned.items()), 2)


def loss_floor(base_equity: float, percent: float) -> float:
    """The day P&L below which the user is halted: ``-(percent / 100) x base_equity``."""
    return round(-abs(float(percent)) / 100.0 * max(0.0, float(base_equity)), 2)


def breached(pnl: DayPnl, base_equity: float, percent: float) -> bool:
    """True when the day P&L is below the floor (a base of 0, nothing at stake, never trips)."""
    return base_equity > 0 and pnl.total < loss_floor(base_equity, percent)
