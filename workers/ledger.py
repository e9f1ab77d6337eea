"""The ownership ledger: which shares of the account are the bot's. Pure rules on plain data.

A demat account usually holds more than the bot bought: long-term shares a person bought by hand.
The bot protects and sells only what it owns; what it may touch of a symbol is
``min(owned, held)`` (:func:`protected`), and an exit sells at most :func:`sellable`.

State (``data/trading_state_<User>.json``, top-level key ``ledger``, schema 3)::

    "ledger": {
      "lots":       {SYMBOL: [{"quantity": int > 0, "price": float, "date": "YYYY-MM-DD",
                               "source": "entry" | "migrated" | "adopted",
                               "order_id": str (entry lots only)}]},   oldest first
      "applied":    {ORDER_ID: {"symbol", "side": "BUY" | "SELL", "quantity", "session"}},
                    how much of a day's fill is already in the lots (an order's fill grows;
                    only the new part counts); entries of an earlier session are dropped, the
                    order book shows only today's orders
      "shortfalls": {SYMBOL: {"quantity", "session"}}   owned above held with no trade to explain it
    }

The ledger references ``stops[S]`` (the one home of a stop's GTT id); it never copies a GTT id.

Rules (:func:`reconcile`, run by every stop run and entry run inside the state transaction):

===========================================  ==================================================
event                                        ledger
===========================================  ==================================================
the bot's entry fills (partly, too)          an ``entry`` lot grows by the new filled part
a SELL of the bot (its tag, its fired stop)  owned shrinks by the new filled part, oldest lots
                                             first
a person's SELL, owned still <= held after   nothing changes (the person sold their own shares)
a person's SELL, held now < owned            owned shrinks to held, oldest lots first
held < owned, no SELL explains it            reported, ledger left (a holdings read before
                                             Kite's morning update, a transfer); a stop run of a
                                             later session that still sees it shrinks owned to held
adopt (a person hands shares to the bot)     an ``adopted`` lot, at most held - owned
release (a person takes shares back)         owned shrinks, newest lots first
===========================================  ==================================================
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

ENTRY, MIGRATED, ADOPTED = "entry", "migrated", "adopted"
SOURCES = (ENTRY, MIGRATED, ADOPTED)
EXCHANGE = "NSE"
PRODUCT = "CNC"
#: order statuses after which an order is no longer open
FINAL_ORDER_STATUSES = frozenset({"COMPLETE", "CANCELLED", "REJECTED"})


def _int(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def empty() -> dict[str, Any]:
    return {"lots": {}, "applied": {}, "shortfalls": {}}


def ledger_of(state: dict[str, Any]) -> dict[str, Any]:
    """The state's ledger, created (empty) when missing; inside a transaction."""
    led = state.get("ledger")
    if not isinstance(led, dict):
        led = state["ledger"] = empty()
    for key in ("lots", "applied", "shortfalls"):
        if not isinstance(led.get(key), dict):
            led[key] = {}
    return led


def owned_quantities(ledger: Mapping[str, Any] | None) -> dict[str, int]:
    """Symbol -> shares the bot owns (the sum of its lots), positive only."""
    out: dict[str, int] = {}
    for sym, lots in ((ledger or {}).get("lots") or {}).items():
        q = sum(_int(lot.get("quantity")) for lot in lots or [])
        if q > 0:
            out[str(sym).upper()] = q
    return out


def protected(owned: Mapping[str, int], held: Mapping[str, int]) -> dict[str, int]:
    """Symbol -> what stops and exits may cover: ``min(owned, held)``, positive only."""
    out = {s: min(q, int(held.get(s, 0))) for s, q in owned.items()}
    return {s: q for s, q in out.items() if q > 0}


def sellable(owned: int, held: int, bot_open_sells: int, all_open_cnc_sells: int) -> int:
    """What an exit may sell now: ``min(owned - the bot's open SELLs, held - all open CNC SELLs)``
    (a person's open SELL uses shares too; never below 0)."""
    return max(0, min(owned - bot_open_sells, held - all_open_cnc_sells))


def lot(quantity: int, price: float, day: date | str, source: str, order_id: str | None = None) -> dict[str, Any]:
    if source not in SOURCES:
        raise ValueError(f"lot source {source!r} is not one of {SOURCES}")
    rec: dict[str, Any] = {"quantity": int(quantity), "price": round(float(price), 2),
                           "date": day if isinstance(day, str) else day.isoformat(), "source": source}
    if order_id is not None:
        rec["order_id"] = str(order_id)
    return rec


def add_lot(ledger: dict[str, Any], symbol: str, new: dict[str, Any]) -> None:
    if _int(new.get("quantity")) <= 0:
        return
    lots = ledger.setdefault("lots", {}).setdefault(symbol.upper(), [])
    oid = new.get("order_id")
    for existing in lots:
        if oid is not None and existing.get("order_id") == oid and existing.get("source") == new["source"]:
            # One lot per entry order: a later fill of it adds to it (price: the order's average).
            existing["quantity"] = _int(existing.get("quantity")) + _int(new["quantity"])
            existing["price"] = new["price"]
            return
    lots.append(new)


def remove(ledger: dict[str, Any], symbol: str, quantity: int, *, newest_first: bool = False) -> int:
    """Take ``quantity`` shares off the symbol's lots (oldest first unless ``newest_first``);
    returns how many were taken (at most what is owned). Empty lots and symbols disappear."""
    sym = symbol.upper()
    lots = (ledger.get("lots") or {}).get(sym) or []
    left = max(0, int(quantity))
    order = list(reversed(lots)) if newest_first else list(lots)
    taken = 0
    for rec in order:
        if left <= 0:
            break
        q = _int(rec.get("quantity"))
        cut = min(q, left)
        rec["quantity"] = q - cut
        left -= cut
        taken += cut
    kept = [rec for rec in lots if _int(rec.get("quantity")) > 0]
    if kept:
        ledger["lots"][sym] = kept
    else:
        (ledger.get("lots") or {}).pop(sym, None)
    return taken


@dataclass
class LedgerReport:
    """What :func:`reconcile` did, one line per change; ``shortfalls`` are warnings."""

    changes: list[str] = field(default_factory=list)
    shortfalls: list[str] = field(default_factory=list)
    changed: set[str] = field(default_factory=set)


def _side(order: Mapping[str, Any]) -> str:
    return str(order.get("transaction_type") or "").upper()


def _is_nse_cnc(order: Mapping[str, Any]) -> bool:
    return (str(order.get("product") or "").upper() == PRODUCT
            and str(order.get("exchange") or EXCHANGE).upper() == EXCHANGE)


def _new_fill(ledger: dict[str, Any], order: Mapping[str, Any], session: str) -> int:
    """The part of the order's fill not yet in the ledger (and records it as applied)."""
    oid = str(order.get("order_id"))
    filled = _int(order.get("filled_quantity"))
    done = ledger["applied"].get(oid) or {}
    delta = filled - _int(done.get("quantity"))
    if delta <= 0:
        return 0
    ledger["applied"][oid] = {"symbol": str(order.get("tradingsymbol", "")).upper(), "side": _side(order),
                              "quantity": filled, "session": session}
    return delta


# C901 on purpose: one branch per kind of fill (bot entry, bot sell, a person's sell, shortfall against
# the holdings), each applied once per order id; a split would pass the same four maps around.
def reconcile(ledger: dict[str, Any], orders: Sequence[Mapping[str, Any]],  # noqa: C901
              held: Mapping[str, int] | None, *,
              entry_order_ids: Collection[str], bot_sell_order_ids: Collection[str], session: date,
              settle_shortfalls: bool = False) -> LedgerReport:
    """Bring the ledger up to today's order book (see the table above). ``entry_order_ids``: the
    bot's entry orders (sent entry intents); ``bot_sell_order_ids``: the bot's SELL orders (its
    exit intents, its fired stop GTTs' orders); ``held``: workers.portfolio.held_quantities.
    ``settle_shortfalls``: a stop run, which shrinks owned to held for a shortfall first seen in
    an earlier session. ``held`` None (only the order book was read): entry fills and the bot's
    SELLs only; a person's SELL is left for a call that knows the holdings. Idempotent: a second
    call with the same book changes nothing."""
    report = LedgerReport()
    day = session.isoformat()
    entry_ids = {str(i) for i in entry_order_ids}
    bot_sells = {str(i) for i in bot_sell_order_ids}
    # Fills of an earlier session are either in the lots or were never seen: forget them.
    for oid in [o for o, rec in ledger["applied"].items() if (rec or {}).get("session") != day]:
        del ledger["applied"][oid]
    person_sold: set[str] = set()
    for order in orders:
        if not _is_nse_cnc(order) or _int(order.get("filled_quantity")) <= 0:
            continue
        oid = str(order.get("order_id"))
        sym = str(order.get("tradingsymbol", "")).upper()
        side = _side(order)
        if side == "BUY" and oid in entry_ids:
            delta = _new_fill(ledger, order, day)
            if delta:
                price = float(order.get("average_price") or order.get("price") or 0.0)
                add_lot(ledger, sym, lot(delta, price, day, ENTRY, oid))
                report.changes.append(f"{sym}: +{delta} owned (entry order {oid} filled)")
                report.changed.add(sym)
        elif side == "SELL" and oid in bot_sells:
            delta = _new_fill(ledger, order, day)
            if delta:
                taken = remove(ledger, sym, delta)
                report.changes.append(f"{sym}: -{taken} owned (the bot's SELL {oid} filled {delta})")
                report.changed.add(sym)
        elif side == "SELL" and held is not None and _new_fill(ledger, order, day):
            person_sold.add(sym)
    if held is None:
        return report
    owned = owned_quantities(ledger)
    for sym in sorted(person_sold):
        have, own = int(held.get(sym, 0)), owned.get(sym, 0)
        if own <= have:
            report.changes.append(f"{sym}: a person sold shares; {own} owned still held, ledger unchanged")
            continue
        taken = remove(ledger, sym, own - have)
        report.changes.append(f"{sym}: a person sold owned shares; owned {own} -> {own - taken} (held {have})")
        report.changed.add(sym)
    owned = owned_quantities(ledger)
    shortfalls = ledger["shortfalls"]
    for sym in sorted(set(owned) | set(shortfalls)):
        have, own = int(held.get(sym, 0)), owned.get(sym, 0)
        if own <= have:
            shortfalls.pop(sym, None)
            continue
        seen = shortfalls.get(sym)
        if seen is not None and seen.get("session") != day and settle_shortfalls:
            taken = remove(ledger, sym, own - have)
            shortfalls.pop(sym)
            report.shortfalls.append(f"{sym}: owned {own} but held {have} since {seen.get('session')} with no "
                                     f"trade to explain it; owned is now {own - taken}")
            report.changed.add(sym)
            continue
        if seen is None:
            shortfalls[sym] = {"quantity": own - have, "session": day}
        report.shortfalls.append(f"{sym}: owned {own} but held {have}, and no trade today explains it; the "
                                 "ledger is left as it is (a later session's stop run settles it)")
    return report


def adoptable(owned: int, held: int) -> int:
    """Shares a person may hand to the bot: held and not owned."""
    return max(0, held - owned)


def entry_order_ids(intents: Mapping[str, Mapping[str, Any]]) -> set[str]:
    """Order ids of the bot's entry intents."""
    return {str(i["broker_id"]) for i in intents.values()
            if i.get("kind") == "order" and i.get("purpose") == "entry" and i.get("broker_id")}


def bot_sell_order_ids(intents: Mapping[str, Mapping[str, Any]], orders: Iterable[Mapping[str, Any]],
                       gtts: Iterable[Mapping[str, Any]], owned_gtt_ids: Collection[int]) -> set[str]:
    """Order ids of the bot's SELLs: orders carrying the tag of one of its SELL intents, and the
    orders its own stop GTTs placed when they fired (a GTT's order carries no tag)."""
    tags = {str(t) for t, i in intents.items() if i.get("kind") == "order"
            and str((i.get("params") or {}).get("transaction_type") or "").upper() == "SELL"}
    ids = {str(i["broker_id"]) for i in intents.values() if i.get("kind") == "order" and i.get("broker_id")
           and str((i.get("params") or {}).get("transaction_type") or "").upper() == "SELL"}
    ids |= {str(o.get("order_id")) for o in orders if o.get("tag") and str(o.get("tag")) in tags}
    owned = {int(g) for g in owned_gtt_ids}
    for g in gtts:
        try:
            gid = g.get("id")
            if gid is None or int(gid) not in owned:
                continue
        except (TypeError, ValueError):
            continue
        for leg in g.get("orders") or []:
            oid = ((leg.get("result") or {}).get("order_result") or {}).get("order_id")
            if oid:
                ids.add(str(oid))
    return ids


def open_sell_quantities(orders: Iterable[Mapping[str, Any]], bot_ids: Collection[str]) -> tuple[dict[str, int],
                                                                                                dict[str, int]]:
    """(symbol -> the bot's open SELL quantity, symbol -> every open NSE CNC SELL quantity), the
    unfilled parts: inputs of :func:`sellable`."""
    bot: dict[str, int] = {}
    every: dict[str, int] = {}
    for o in orders:
        if _side(o) != "SELL" or not _is_nse_cnc(o) or str(o.get("status") or "").upper() in FINAL_ORDER_STATUSES:
            continue
        sym = str(o.get("tradingsymbol", "")).upper()
        left = _int(o.get("pending_quantity")) or max(0, _int(o.get("quantity")) - _int(o.get("filled_quantity")))
        every[sym] = every.get(sym, 0) + left
        if str(o.get("order_id")) in bot_ids:
            bot[sym] = bot.get(sym, 0) + left
    return bot, every


def row(ledger: Mapping[str, Any] | None, symbol: str, held: int | None = None) -> dict[str, Any]:
    """The ledger row a person sees after adopt/release: symbol, owned, held, lots."""
    sym = symbol.upper()
    lots = [dict(rec) for rec in ((ledger or {}).get("lots") or {}).get(sym) or []]
    out: dict[str, Any] = {"symbol": sym, "owned": sum(_int(rec.get("quantity")) for rec in lots), "lots": lots}
    if held is not None:
        out["held"] = held
    return out
