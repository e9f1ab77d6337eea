"""What the account holds and has pending, read from the broker; and the state records of
positions and stops that place_orders_daily, update_cnc_stoploss and the watchdog share.

"Held" has exactly two meanings, each one function here, used by every job and by doctor:

* :func:`held_quantities`: what stops, exits and doctor's coverage protect (NSE shares really held
  now);
* :func:`entry_blocked`: the symbols place_orders_daily must not buy now.

Kite semantics they rest on (kite-api.md 3.10/3.11, and the paper broker's paper_broker/portfolio.py,
which does the same): a CNC buy is a ``positions()["net"]`` row on day T, ``t1_quantity`` on T+1,
then ``quantity``. A sale from holdings does **not** lower the holdings ``quantity`` intraday (it
shows as ``used_quantity``) and appears as a negative CNC net position; so holdings ``quantity`` +
``t1_quantity`` + today's CNC net position is what is really held at every moment.

State records (``data/trading_state_<User>.json``, via kitefleet.state.StateStore; legacy keys
keep their meaning)::

    "positions": {SYMBOL: {"type": "LONG", "product_type": "CNC", "entry_price", "quantity",
                           "stop_loss", "target_price", "risk_reward_ratio", "order_id",
                           "confirmation" (= order_id, legacy), "tag", "entry_time",
                           "timestamp", "source": "place_orders_daily"|"holdings",
                           "gtt_order_id" (derived from stops[S].gtt_id, legacy; never read),
                           "stop_loss_source", "stop_loss_updated",
                           "scan_stop_loss" (the scanner's stop at entry), "closed_at"}}
    "stops":     {SYMBOL: {"stop", "source": "prev_session_low"|"fallback"|"legacy", "gtt_id",
                           "trigger", "limit_price", "quantity", "updated_at"}}
                 the one home of a stop and its GTT id (workers.gtt reads ownership from it)
    "entry_plans": {"<session>|<source>": {"session", "source", "created_at", "cash", "equity",
                           "n_selected", "entries": {SYMBOL: {"tag", "stop_loss",
                           "target_price", "risk_reward_ratio", "entry"}}}}
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

PRODUCT = "CNC"
EXCHANGE = "NSE"
#: ``entry_blocked`` reasons (also the skip reasons place_orders_daily reports)
HELD = "already held"
HELD_ELSEWHERE = "already held on another exchange (not managed by the bot)"
SOLD_TODAY = "sold today: not bought back the same day"
BUY_PENDING = "open BUY order pending"
#: order statuses after which an order is no longer open
FINAL_ORDER_STATUSES = frozenset({"COMPLETE", "CANCELLED", "REJECTED"})

#: entry plans older than this many days are dropped by ``prune_entry_plans``
KEEP_PLAN_DAYS = 30


def _sym(row: Mapping[str, Any]) -> str:
    return str(row["tradingsymbol"]).upper()


def _int(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def _exchange(row: Mapping[str, Any]) -> str:
    return str(row.get("exchange") or EXCHANGE).upper()


def _is_cnc(row: Mapping[str, Any]) -> bool:
    return str(row.get("product") or "").upper() == PRODUCT


@dataclass(frozen=True)
class AccountSnapshot:
    """One read of the account: ``holdings()``, ``positions()["net"]``, ``orders()``."""

    holdings: Sequence[Mapping[str, Any]]
    positions_net: Sequence[Mapping[str, Any]]
    orders: Sequence[Mapping[str, Any]] = ()

    def average_price(self, symbol: str) -> float | None:
        symbol = symbol.upper()
        for row in list(self.holdings) + [p for p in self.positions_net if _is_cnc(p)]:
            if _sym(row) == symbol and float(row.get("average_price") or 0) > 0:
                return float(row["average_price"])
        return None

    def last_prices(self) -> dict[str, float]:
        prices: dict[str, float] = {}
        for row in list(self.holdings) + list(self.positions_net):
            if float(row.get("last_price") or 0) > 0:
                prices[_sym(row)] = float(row["last_price"])
        return prices

    def market_value(self, quantities: Mapping[str, int] | None = None) -> float:
        """Held shares (:func:`held_quantities`), or ``quantities``, at their last price."""
        prices = self.last_prices()
        qty = held_quantities(self) if quantities is None else quantities
        return round(sum(q * prices.get(s, 0.0) for s, q in qty.items()), 2)

    def order(self, order_id: str) -> Mapping[str, Any] | None:
        for o in self.orders:
            if str(o.get("order_id")) == str(order_id):
                return o
        return None


def held_quantities(snapshot: AccountSnapshot) -> dict[str, int]:
    """NSE symbol -> shares really held now: holdings ``quantity`` + ``t1_quantity`` + today's net
    CNC position (today's sells reduce it), NSE rows only, positive values only. What stops, exits
    and doctor's coverage protect.

    ==========================  ======================  =====================  ==========
    case                        holdings row            today's CNC net (NSE)  held
    ==========================  ======================  =====================  ==========
    bought today                none                    +10                    10
    T1 only (bought yesterday)  NSE qty 0, t1 5         none                   5
    settled                     NSE qty 10              none                   10
    sold today                  NSE qty 10 (unchanged)  -10                    absent
    partly sold today           NSE qty 10 (unchanged)  -4                     6
    T1 sold today (BTST)        NSE qty 0, t1 5         -5                     absent
    BSE only                    BSE qty 10              none                   absent
    BSE + NSE                   BSE qty 10, NSE qty 5   none                   5
    ==========================  ======================  =====================  ==========

    A BSE holding never gets a bot stop (the bot's GTTs are NSE); doctor reports it as "not on
    NSE, not managed" (:func:`unmanaged_holdings`)."""
    qty: dict[str, int] = {}
    for h in snapshot.holdings:
        if _exchange(h) == EXCHANGE:
            qty[_sym(h)] = qty.get(_sym(h), 0) + _int(h.get("quantity")) + _int(h.get("t1_quantity"))
    for p in snapshot.positions_net:
        if _is_cnc(p) and _exchange(p) == EXCHANGE:
            qty[_sym(p)] = qty.get(_sym(p), 0) + _int(p.get("quantity"))
    return {s: q for s, q in qty.items() if q > 0}


def entry_blocked(snapshot: AccountSnapshot) -> dict[str, str]:
    """Symbol -> why place_orders_daily must not buy it now. A symbol is blocked when
    :func:`held_quantities` > 0, or any holdings row on any exchange has ``quantity`` +
    ``t1_quantity`` > 0 (so a symbol sold today is not bought back the same day: its holdings
    row still shows the shares), or a CNC position on another exchange is long, or a BUY order of
    any product is still open.

    ==========================  ======================================  =================
    case                        account                                 blocked, reason
    ==========================  ======================================  =================
    bought today                NSE CNC net +10                         ``HELD``
    T1 only                     NSE holdings t1 5                       ``HELD``
    sold today                  NSE holdings 10, NSE CNC net -10        ``SOLD_TODAY``
    partly sold today           NSE holdings 10, NSE CNC net -4         ``HELD``
    BSE only                    BSE holdings 10                         ``HELD_ELSEWHERE``
    BSE + NSE                   BSE holdings 10, NSE holdings 5         ``HELD``
    open BUY (any product)      BUY order OPEN / TRIGGER PENDING / AMO  ``BUY_PENDING``
    nothing                     no row, or holdings 0 and t1 0          not blocked
    ==========================  ======================================  =================

    ``SOLD_TODAY`` does not take a position slot (nothing is held); the others do."""
    held = held_quantities(snapshot)
    blocked: dict[str, str] = {s: HELD for s in held}
    for h in snapshot.holdings:
        if _int(h.get("quantity")) + _int(h.get("t1_quantity")) > 0:
            blocked.setdefault(_sym(h), SOLD_TODAY if _exchange(h) == EXCHANGE else HELD_ELSEWHERE)
    for p in snapshot.positions_net:
        if _is_cnc(p) and _exchange(p) != EXCHANGE and _int(p.get("quantity")) > 0:
            blocked.setdefault(_sym(p), HELD_ELSEWHERE)
    for o in snapshot.orders:
        if (str(o.get("transaction_type") or "").upper() == "BUY"
                and str(o.get("status") or "").upper() not in FINAL_ORDER_STATUSES):
            blocked.setdefault(_sym(o), BUY_PENDING)
    return blocked


def unmanaged_holdings(snapshot: AccountSnapshot) -> dict[str, int]:
    """Symbol -> shares in holdings rows of another exchange than NSE (``quantity`` +
    ``t1_quantity`` > 0): held, but never given a bot stop; doctor reports them."""
    out: dict[str, int] = {}
    for h in snapshot.holdings:
        q = _int(h.get("quantity")) + _int(h.get("t1_quantity"))
        if _exchange(h) != EXCHANGE and q > 0:
            out[_sym(h)] = out.get(_sym(h), 0) + q
    return out


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
    held = held_quantities(account)
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


OWN, ALL = "own", "all"
#: the warning each job of a user with MANAGE_SCOPE=all logs at its start
SCOPE_ALL_WARNING = ("MANAGE_SCOPE=all: the bot manages EVERY NSE CNC holding of this account, hand-bought "
                     "shares included (legacy behaviour); set MANAGE_SCOPE=own to manage only its own shares")
UNOWNED_BOT_STOP = "bot stop on an unowned holding: run adopt or release"


def reconcile_ledger(state: dict[str, Any], account: AccountSnapshot | None, gtts: Sequence[Mapping[str, Any]],
                     session: date, *, settle_shortfalls: bool = False,
                     orders: Sequence[Mapping[str, Any]] | None = None) -> Any:
    """workers.ledger.reconcile on the state's ledger with today's order book: the bot's entry
    orders are its entry intents', its SELLs those of its SELL intents and of its fired stop
    GTTs. Without ``account`` (only ``orders`` read, e.g. right after the entries were sent)
    only entry fills and the bot's own SELLs are taken in. Inside a transaction (or on a copy,
    for a dry run). Returns the LedgerReport."""
    from workers import ledger
    from workers.gtt import stop_ownership

    intents = state.get("intents") or {}
    led = ledger.ledger_of(state)
    book = list(account.orders if account is not None else orders or [])
    bot_sells = ledger.bot_sell_order_ids(intents, book, gtts, stop_ownership(state).owned_ids)
    return ledger.reconcile(led, book, held_quantities(account) if account is not None else None,
                            entry_order_ids=ledger.entry_order_ids(intents), bot_sell_order_ids=bot_sells,
                            session=session, settle_shortfalls=settle_shortfalls)


@dataclass(frozen=True)
class Scope:
    """What the bot manages of the account: ``protect`` symbol -> quantity its stops and exits
    cover (``min(owned, held)`` under ``own``, every held share under ``all``); ``unmanaged``
    symbol -> held shares it leaves alone."""

    mode: str
    protect: dict[str, int]
    unmanaged: dict[str, int]


def manage_scope(state: Mapping[str, Any], held: Mapping[str, int], mode: str) -> Scope:
    from workers import ledger

    if mode == ALL:
        return Scope(ALL, dict(held), {})
    protect = ledger.protected(ledger.owned_quantities(state.get("ledger")), held)
    unmanaged = {s: q - protect.get(s, 0) for s, q in held.items() if q - protect.get(s, 0) > 0}
    return Scope(OWN, protect, unmanaged)


def unowned_bot_stops(state: Mapping[str, Any], scope: Scope) -> list[str]:
    """Held symbols the bot does not own at all that have a bot stop record with a GTT (a stop
    today's code gave a hand-bought holding before the ledger): left exactly as they are."""
    stops = state.get("stops") or {}
    return sorted(s for s in scope.unmanaged if s not in scope.protect
                  and (stops.get(s) or {}).get("gtt_id") is not None)
