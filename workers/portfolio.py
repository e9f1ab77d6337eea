"""What the account holds and has pending, read from the broker; and the state records of
positions and stops that place_orders_daily, update_cnc_stoploss and the watchdog share.

Held quantity of a symbol = holdings ``quantity`` + ``t1_quantity`` + today's CNC net position
``quantity`` (kite-api.md 3.10: a CNC buy is a position on day T, ``t1_quantity`` on T+1, then
``quantity``; a sale from holdings leaves holdings unchanged intraday and shows as a negative CNC
position, so the sum is what is really held at every moment).

State records (``data/trading_state_<User>.json``, via kitefleet.state.StateStore; legacy keys
keep their meaning)::

    "positions": {SYMBOL: {"type": "LONG", "product_type": "CNC", "entry_price", "quantity",
                           "stop_loss", "target_price", "risk_reward_ratio", "order_id",
                           "confirmation" (= order_id, legacy), "tag", "entry_time",
                           "timestamp", "source": "place_orders_daily"|"holdings",
                           "gtt_order_id", "stop_loss_source", "stop_loss_updated",
                           "scan_stop_loss" (the scanner's stop at entry), "closed_at"}}
    "stops":     {SYMBOL: {"stop", "source": "prev_session_low", "gtt_id", "trigger",
                           "limit_price", "quantity", "updated_at"}}
    "entry_plans": {"<session>|<source>": {"session", "source", "created_at", "cash", "equity",
                           "n_selected", "entries": {SYMBOL: {"tag", "stop_loss",
                           "target_price", "risk_reward_ratio", "entry"}}}}
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from workers.strategy.sizing import PRODUCT, held_and_pending

#: entry plans older than this many days are dropped by ``prune_entry_plans``
KEEP_PLAN_DAYS = 30


def _sym(row: Mapping[str, Any]) -> str:
    return str(row["tradingsymbol"]).upper()


@dataclass(frozen=True)
class AccountSnapshot:
    """One read of the account: ``holdings()``, ``positions()["net"]``, ``orders()``."""

    holdings: Sequence[Mapping[str, Any]]
    positions_net: Sequence[Mapping[str, Any]]
    orders: Sequence[Mapping[str, Any]]
    _held_pending: tuple[set[str], set[str]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_held_pending",
                           held_and_pending(self.holdings, self.positions_net, self.orders))

    @property
    def held_symbols(self) -> set[str]:
        """Symbols counted as held for entries (holdings quantity + t1, today's CNC buys)."""
        return set(self._held_pending[0])

    @property
    def pending_symbols(self) -> set[str]:
        """Symbols with a BUY order still open."""
        return set(self._held_pending[1])

    def held_quantities(self) -> dict[str, int]:
        """Symbol -> shares really held now (see the module docstring); only positive ones."""
        qty: dict[str, int] = {}
        for h in self.holdings:
            if str(h.get("exchange") or "NSE").upper() != "NSE":
                continue
            qty[_sym(h)] = qty.get(_sym(h), 0) + int(h.get("quantity") or 0) + int(h.get("t1_quantity") or 0)
        for p in self.positions_net:
            if p.get("product") == PRODUCT and str(p.get("exchange") or "NSE").upper() == "NSE":
                qty[_sym(p)] = qty.get(_sym(p), 0) + int(p.get("quantity") or 0)
        return {s: q for s, q in qty.items() if q > 0}

    def average_price(self, symbol: str) -> float | None:
        symbol = symbol.upper()
        for row in list(self.holdings) + [p for p in self.positions_net if p.get("product") == PRODUCT]:
            if _sym(row) == symbol and float(row.get("average_price") or 0) > 0:
                return float(row["average_price"])
        return None

    def market_value(self) -> float:
        """Held shares at their last price (holdings and today's CNC buys)."""
        prices: dict[str, float] = {}
        for row in list(self.holdings) + list(self.positions_net):
            if float(row.get("last_price") or 0) > 0:
                prices[_sym(row)] = float(row["last_price"])
        return round(sum(q * prices.get(s, 0.0) for s, q in self.held_quantities().items()), 2)

    def order(self, order_id: str) -> Mapping[str, Any] | None:
        for o in self.orders:
            if str(o.get("order_id")) == str(order_id):
                return o
        return None


def snapshot(kite: Any) -> AccountSnapshot:
    return AccountSnapshot(list(kite.holdings()), list(kite.positions().get("net") or []), list(kite.orders()))


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def available_cash(equity_margins: Mapping[str, Any]) -> float:
    """Cash that can fund CNC buys now, from ``margins("equity")`` (kite-api.md 3.2):

        available.live_balance                                           when present, else
        available.cash + available.intraday_payin - utilised.debits

    Never ``net``: on live Kite ``net`` also counts ``available.collateral`` (the haircut value
    of pledged holdings), which margins F&O but cannot pay for a delivery buy; and the entry
    sizing's equity (cash + held market value) would count pledged shares twice. Collateral is
    left out of both forms. The paper broker sends ``live_balance == net`` (no collateral), so
    paper sizing is unchanged. Missing fields count as 0 (no cash: no entries)."""
    available = equity_margins.get("available") or {}
    live = _number(available.get("live_balance"))
    if live is not None:
        return live
    utilised = equity_margins.get("utilised") or {}
    return ((_number(available.get("cash")) or 0.0) + (_number(available.get("intraday_payin")) or 0.0)
            - (_number(utilised.get("debits")) or 0.0))


def plan_key(session: date, source: str) -> str:
    return f"{session.isoformat()}|{source}"


def record_entry_fills(state: dict[str, Any], orders: Sequence[Mapping[str, Any]], session: date,
                       now: datetime) -> list[str]:
    """Record (or update) ``positions`` for today's sent entry intents whose orders show fills.

    Runs inside a state transaction. Returns the symbols whose position changed. Only orders of
    today's book count (the book shows no older ones); quantities and prices are the fills'."""
    by_id = {str(o.get("order_id")): o for o in orders}
    plans = [p for p in (state.get("entry_plans") or {}).values() if p.get("session") == session.isoformat()]
    meta: dict[str, dict[str, Any]] = {}
    for plan in plans:
        for sym, entry in (plan.get("entries") or {}).items():
            meta[str(entry.get("tag"))] = {"symbol": sym, **entry}
    changed: list[str] = []
    positions = state.setdefault("positions", {})
    for tag, intent in (state.get("intents") or {}).items():
        if intent.get("kind") != "order" or intent.get("purpose") != "entry" or not intent.get("broker_id"):
            continue
        order = by_id.get(str(intent["broker_id"]))
        if order is None or int(order.get("filled_quantity") or 0) <= 0:
            continue
        sym = str(intent["symbol"]).upper()
        filled = int(order["filled_quantity"])
        price = float(order.get("average_price") or 0.0)
        pos = positions.get(sym)
        if pos is not None and pos.get("tag") not in (None, tag) and not pos.get("closed_at"):
            continue  # held before this entry (another tag): the holdings sync owns it
        if pos is not None and pos.get("tag") == tag and pos.get("quantity") == filled \
                and pos.get("entry_price") == price:
            continue
        info = meta.get(tag, {})
        stamp = now.isoformat()
        record = dict(pos) if pos is not None and pos.get("tag") == tag else {}
        record.update({
            "type": "LONG", "product_type": PRODUCT, "entry_price": price, "quantity": filled,
            "order_id": str(intent["broker_id"]), "confirmation": str(intent["broker_id"]), "tag": tag,
            "source": "place_orders_daily", "timestamp": stamp,
        })
        record.setdefault("entry_time", now.strftime("%Y-%m-%d %H:%M:%S"))
        for key in ("stop_loss", "target_price", "risk_reward_ratio"):
            if key in info:
                record.setdefault(key, info[key])
        if "stop_loss" in info:
            record.setdefault("scan_stop_loss", info["stop_loss"])
        record.pop("closed_at", None)
        positions[sym] = record
        daily = state.setdefault("daily_tickers", {})
        longs = daily.setdefault("long", [])
        if isinstance(longs, list) and sym not in longs:
            longs.append(sym)
        changed.append(sym)
    return changed


def sync_held_positions(state: dict[str, Any], account: AccountSnapshot, now: datetime) -> list[str]:
    """Make ``positions`` agree with what is held: quantities updated, a record created for a
    holding the state does not know (bought by hand, or a lost state), and a symbol no longer held
    marked ``closed_at`` with quantity 0. Returns the symbols changed. Inside a transaction."""
    held = account.held_quantities()
    positions = state.setdefault("positions", {})
    stamp = now.isoformat()
    changed: list[str] = []
    for sym, qty in held.items():
        pos = positions.get(sym)
        if pos is None or pos.get("closed_at"):
            positions[sym] = {
                "type": "LONG", "product_type": PRODUCT, "entry_price": account.average_price(sym) or 0.0,
                "quantity": qty, "source": "holdings", "timestamp": stamp,
                "entry_time": now.strftime("%Y-%m-%d %H:%M:%S"),
            }
            changed.append(sym)
        elif pos.get("quantity") != qty:
            pos["quantity"] = qty
            pos["timestamp"] = stamp
            changed.append(sym)
    for sym, pos in positions.items():
        if sym in held or pos.get("closed_at") or str(pos.get("product_type", "")).upper() != PRODUCT:
            continue
        if int(pos.get("quantity") or 0) > 0:
            pos["quantity"] = 0
            pos["closed_at"] = stamp
            pos["timestamp"] = stamp
            changed.append(sym)
    return changed


def prune_entry_plans(state: dict[str, Any], today: date, keep_days: int = KEEP_PLAN_DAYS) -> None:
    plans = state.get("entry_plans") or {}
    for key in [k for k, p in plans.items()
                if date.fromisoformat(str(p.get("session", "1970-01-01"))).toordinal()
                < today.toordinal() - keep_days]:
        del plans[key]
