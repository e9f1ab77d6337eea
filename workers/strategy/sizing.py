"""place_orders_daily's pure rules: which scanned symbols to enter, how many shares, and the
pre-trade limits checked before every order.

Rules and defaults (the env keys are in ``kitefleet/settings.py``; the defaults here match them):

* Selection (:func:`select_candidates`): rows in :func:`~workers.strategy.patterns.scan_sort_key`
  order (score desc, risk-reward desc, symbol). A row is skipped, with its reason, when its score
  is below ``MIN_SCORE`` (default 5; legacy golden "≥ 5"; HEAD's "exactly 5/7" is not kept), when
  the scan left a reason (insufficient data, no valid stop), when it has no usable entry/stop
  (stop ≥ entry), when the symbol is blocked for entries (held, sold today, held on another
  exchange, or an open BUY order: the caller passes ``workers.portfolio.entry_blocked``, whose
  reason is the skip reason; legacy golden checked the state file only and HEAD did not check at
  all), when it repeats an earlier row, or when ``MAX_CNC_POSITIONS`` (default 10) minus the
  positions already held or pending are taken.
* Size (:func:`size_entry`): budget = available cash × ``CAPITAL_DEPLOYMENT_PERCENT`` (default 50)
  / 100 / number selected; limit price = the LTP on the instrument's tick grid rounded **up**, so a
  BUY LIMIT is marketable (legacy HEAD: LIMIT at the LTP; golden: MARKET); shares =
  floor(budget / limit price), so the order value never exceeds the budget. Legacy worked example:
  cash 1,371,768, 50 %, 10 selected, LTP 241.69 → 283 shares. If ``RISK_PER_TRADE_PERCENT`` is set
  (default unset), shares are also capped at floor(equity × percent / 100 / (limit − stop)), so the
  loss to the stop stays within that share of equity; a risk cap without a stop below the entry
  refuses the entry. Zero shares → quantity 0 and a reason. Order: BUY, LIMIT, CNC, DAY, NSE.
* Price at the send (:func:`limit_from_depth`, :func:`size_entry` with ``limit``/``max_quantity``):
  the plan above fixes each entry's budget and quantity, not its price. Right before the order is
  sent a fresh quote is read; the limit is the lowest ask level whose cumulative depth covers the
  planned quantity (the deepest visible level when the five do not: the rest rests at it), so a
  BUY is never placed below the ask. That level more than ``ENTRY_SLIPPAGE_PERCENT`` (default
  0.5 %) above the quote's LTP, or no sellers at all (an upper circuit), refuses the entry with the
  reason. Shares = min(planned, floor(budget / that limit)) and the risk cap again at that limit.
  (Legacy: LIMIT at an LTP read right before each order, which rests below the ask whenever the
  last trade was at the bid.)
* Entry filter at the send (:func:`entry_filter`), on the same fresh quote: a symbol whose LTP is
  more than ``ENTRY_MAX_GAP_PERCENT`` (default 3) above the scan's entry, below the scan's stop,
  or at its upper circuit (the quote's ``upper_circuit_limit``) is skipped with the reason.
* Pre-trade limits (:func:`check_pre_trade`), each refusal a reason, empty list = send: the pause
  flag; quantity 0; a limit price off the tick grid; order value > ``MAX_ORDER_VALUE`` (default
  ₹5,00,000); limit price more than ``PRICE_BAND_PERCENT`` (default 3 %) away from the given LTP
  (place_orders_daily passes the LTP the plan was sized on: a plan gone stale while a person
  confirmed it is refused; the slippage cap bounds the price against the fresh one); no valid LTP.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from decimal import ROUND_FLOOR, Decimal
from typing import Any

from kitefleet.ticks import on_tick, round_to_tick
from workers.strategy.patterns import ScanResult, scan_sort_key

EXCHANGE = "NSE"
PRODUCT = "CNC"
ORDER_TYPE = "LIMIT"
TRANSACTION_TYPE = "BUY"
VALIDITY = "DAY"


@dataclass(frozen=True)
class Skipped:
    symbol: str
    reason: str


@dataclass(frozen=True)
class EntryPlan:
    """One BUY LIMIT CNC order, or quantity 0 with ``reason``."""

    quantity: int
    limit_price: float
    ltp: float
    tick_size: float
    budget: float
    symbol: str = ""
    stop: float | None = None
    risk_per_share: float | None = None
    #: the most shares the risk cap allows (None when no cap applies)
    risk_cap_shares: int | None = None
    capped_by_risk: bool = False
    reason: str | None = None
    #: which limit sized it down, and from what (fit_to_limits); shown in the run record
    sized_down: str | None = None

    @property
    def order_value(self) -> float:
        return round(self.quantity * self.limit_price, 2)

    @property
    def ok(self) -> bool:
        return self.quantity > 0


def _as_scan(row: ScanResult | Mapping[str, Any]) -> ScanResult:
    return row if isinstance(row, ScanResult) else ScanResult.from_row(row)


def select_candidates(
    scan_rows: Iterable[ScanResult | Mapping[str, Any]],
    blocked: Mapping[str, str],
    min_score: int | None,
    max_positions: int,
    held_count: int | None = None,
    *,
    manual: bool = False,
) -> tuple[list[ScanResult], list[Skipped]]:
    """Which rows to enter, and why every other row was skipped.

    A scan (default): best first (score, risk-reward, symbol); a row needs no scan ``reason``, a
    score of at least ``min_score`` and a usable entry and stop. ``manual`` (a person's
    ``--from`` list): the file's order is kept and only the score is checked, and only when
    ``min_score`` is given (a list without scores is an explicit pick). Either way duplicates and
    ``blocked`` symbols (symbol -> reason, ``workers.portfolio.entry_blocked``) are skipped, and
    rows beyond the free slots (``max_positions`` minus ``held_count``, default ``len(blocked)``:
    pass the symbols held or pending) are skipped.
    Rows may be :class:`ScanResult` or scan-CSV dicts.
    """
    why_blocked = {s.upper(): r for s, r in blocked.items()}
    taken = len(why_blocked) if held_count is None else held_count
    slots = max(0, max_positions - taken)
    rows = [_as_scan(r) for r in scan_rows]
    if not manual:
        rows.sort(key=scan_sort_key)
    selected: list[ScanResult] = []
    skipped: list[Skipped] = []
    seen: set[str] = set()
    for r in rows:
        if r.symbol in seen:
            skipped.append(Skipped(r.symbol, "duplicate row"))
            continue
        seen.add(r.symbol)
        if not manual and r.reason:
            reason = f"scan: {r.reason}"
        elif min_score is not None and r.score < min_score:
            reason = f"score {r.score} below MIN_SCORE {min_score}"
        elif not manual and (r.entry is None or r.stop_loss is None or not 0 < r.stop_loss < r.entry):
            reason = f"no usable entry/stop (entry {r.entry}, stop {r.stop_loss})"
        elif r.symbol in why_blocked:
            reason = why_blocked[r.symbol]
        elif len(selected) >= slots:
            reason = (f"MAX_CNC_POSITIONS {max_positions} reached "
                      f"({taken} held or pending + {len(selected)} selected)")
        else:
            selected.append(r)
            continue
        skipped.append(Skipped(r.symbol, reason))
    return selected, skipped


def _floor_div(a: Decimal, b: Decimal) -> int:
    return int((a / b).to_integral_value(rounding=ROUND_FLOOR))


def _dec(x: float) -> Decimal:
    return Decimal(repr(float(x)))


def size_entry(
    available_cash: float,
    deployment_percent: float,
    n_selected: int,
    ltp: float,
    tick_size: float,
    stop: float | None = None,
    equity: float | None = None,
    risk_per_trade_percent: float | None = None,
    *,
    symbol: str = "",
    limit: float | None = None,
    max_quantity: int | None = None,
) -> EntryPlan:
    """Shares and limit price of one entry; quantity 0 comes with a reason.

    ``limit``: the price to size at (a fresh ask from :func:`limit_from_depth`); default the LTP
    rounded up to the tick. ``max_quantity``: the planned shares, which a fresh price never raises."""
    if limit is None:
        limit = round_to_tick(ltp, tick_size, "ceil") if ltp > 0 else 0.0

    def plan(qty: int, budget: float = 0.0, reason: str | None = None, **kw: Any) -> EntryPlan:
        return EntryPlan(qty, limit, ltp, tick_size, round(budget, 2), symbol, stop, reason=reason, **kw)

    if not (math.isfinite(ltp) and ltp > 0):
        return plan(0, reason=f"no valid LTP ({ltp})")
    if n_selected <= 0:
        return plan(0, reason="no symbols selected")
    if not available_cash > 0:
        return plan(0, reason=f"no available cash ({available_cash:.2f})")
    if not deployment_percent > 0:
        return plan(0, reason=f"deployment percent {deployment_percent} is not positive")
    budget_d = _dec(available_cash) * _dec(deployment_percent) / 100 / n_selected
    budget = float(budget_d)
    qty = _floor_div(budget_d, _dec(limit))
    cap: int | None = None
    risk_per_share: float | None = None
    capped = False
    if risk_per_trade_percent is not None and risk_per_trade_percent > 0:
        if stop is None or equity is None or not equity > 0:
            return plan(0, budget, f"RISK_PER_TRADE_PERCENT set but no stop/equity (stop {stop}, "
                                   f"equity {equity})")
        rps = _dec(limit) - _dec(stop)
        risk_per_share = float(rps)
        if rps <= 0:
            return plan(0, budget, f"stop {stop} is not below the entry {limit}",
                        risk_per_share=risk_per_share)
        cap = _floor_div(_dec(equity) * _dec(risk_per_trade_percent) / 100, rps)
        if cap < qty:
            qty, capped = cap, True
    elif stop is not None:
        risk_per_share = float(_dec(limit) - _dec(stop))
    if max_quantity is not None:
        qty = min(qty, max_quantity)
    reason = None
    if qty <= 0:
        reason = (f"risk cap allows 0 shares (risk/share {risk_per_share}, equity {equity}, "
                  f"{risk_per_trade_percent} %)" if capped
                  else f"budget {budget:.2f} buys no share at {limit}")
        qty = 0
    return plan(qty, budget, reason, risk_per_share=risk_per_share, risk_cap_shares=cap,
                capped_by_risk=capped)


@dataclass(frozen=True)
class AskLimit:
    """The limit price a fresh quote gives an entry, or why it must not be sent (``limit`` None)."""

    limit: float | None
    #: the best ask (None with no sellers), and the shares the visible asks offer up to ``limit``
    best_ask: float | None = None
    covered: int = 0
    reason: str | None = None


def limit_from_depth(depth: Mapping[str, Any] | None, quantity: int, ltp: float, slippage_percent: float,
                     tick_size: float = 0.0) -> AskLimit:
    """The BUY limit for ``quantity`` shares from a quote's ``depth`` (Kite's shape: ``{"sell":
    [{"price", "quantity", "orders"}, ...]}``, best first): the lowest ask level whose cumulative
    quantity covers ``quantity``, or the deepest level when the visible asks do not. Never below
    the best ask. Refused when that level is above ``ltp`` x (1 + ``slippage_percent``/100) or
    when there are no sellers (live Kite pads an empty book with zero levels)."""
    levels = sorted((_dec(float(lv.get("price") or 0)), int(lv.get("quantity") or 0))
                    for lv in ((depth or {}).get("sell") or []) if isinstance(lv, Mapping))
    asks = [(p, q) for p, q in levels if p > 0 and q > 0]
    if not asks:
        return AskLimit(None, reason="no sellers in the quote's depth (at the upper circuit?)")
    best = float(asks[0][0])
    if not (math.isfinite(ltp) and ltp > 0):
        return AskLimit(None, best, reason=f"no valid LTP ({ltp}) for the slippage cap")
    covered, level = 0, asks[-1][0]
    for price, qty in asks:
        covered += qty
        if covered >= quantity:
            level = price
            break
    price_f = round_to_tick(float(level), tick_size, "ceil") if tick_size > 0 else float(level)
    cap = _dec(ltp) * (1 + _dec(slippage_percent) / 100)
    if _dec(price_f) > cap:
        return AskLimit(None, best, covered,
                        f"ask {price_f:.2f} above slippage cap {float(cap):.2f} "
                        f"(LTP {ltp:.2f} + {slippage_percent:g} %)")
    return AskLimit(price_f, best, covered)


def entry_filter(ltp: float, entry: float | None, stop: float | None, upper_circuit: float | None,
                 max_gap_percent: float) -> str | None:
    """Why the setup the scan saw is gone at the send, or None: the price gapped more than
    ``max_gap_percent`` above the scan's entry (the risk to the stop is larger than the scan
    measured), it trades below the scan's stop (the setup failed before the entry), or it sits at
    its upper circuit (no seller; a BUY there rests or fills at the day's top). A missing entry
    or stop (a ``--from`` list) skips that check."""
    if not (math.isfinite(ltp) and ltp > 0):
        return None  # the slippage cap and the sanity band refuse a missing LTP with their own reason
    if upper_circuit is not None and upper_circuit > 0 and ltp >= upper_circuit:
        return f"at the upper circuit: LTP {ltp:.2f} >= upper circuit {upper_circuit:.2f}"
    if stop is not None and stop > 0 and ltp < stop:
        return f"below the scan's stop: LTP {ltp:.2f} < stop {stop:.2f}"
    if entry is not None and entry > 0:
        gap = (_dec(ltp) / _dec(entry) - 1) * 100
        if gap > _dec(max_gap_percent):
            return (f"gapped up: LTP {ltp:.2f} is {float(gap):.2f} % above the scan's entry {entry:.2f} "
                    f"(ENTRY_MAX_GAP_PERCENT {max_gap_percent:g})")
    return None


def check_pre_trade(
    plan: EntryPlan,
    ltp: float,
    max_order_value: float | None,
    price_band_percent: float | None,
    paused: bool = False,
) -> list[str]:
    """Reasons to refuse ``plan`` given a fresh ``ltp``; an empty list means send it."""
    refusals: list[str] = []
    if paused:
        refusals.append("trading paused (pause flag set)")
    if plan.quantity <= 0:
        refusals.append(f"quantity 0: {plan.reason or 'nothing to buy'}")
    if not on_tick(plan.limit_price, plan.tick_size):
        refusals.append(f"limit price {plan.limit_price} is off the {plan.tick_size} tick grid")
    if max_order_value is not None and max_order_value > 0 and plan.order_value > max_order_value:
        refusals.append(f"order value ₹{plan.order_value:,.2f} exceeds MAX_ORDER_VALUE "
                        f"₹{max_order_value:,.2f}")
    if not (math.isfinite(ltp) and ltp > 0):
        refusals.append(f"no valid LTP ({ltp}) for the price sanity band")
    elif price_band_percent is not None and price_band_percent > 0:
        away = abs(plan.limit_price - ltp) / ltp * 100
        if away > price_band_percent:
            refusals.append(f"limit price {plan.limit_price} is {away:.2f} % from LTP {ltp}, outside "
                            f"the ±{price_band_percent:g} % sanity band")
    return refusals


def order_params(plan: EntryPlan) -> dict[str, Any]:
    """The ``kite.place_order`` keyword arguments for ``plan`` (variety "regular"; the caller adds
    the tag)."""
    return {
        "variety": "regular", "exchange": EXCHANGE, "tradingsymbol": plan.symbol,
        "transaction_type": TRANSACTION_TYPE, "quantity": plan.quantity, "product": PRODUCT,
        "order_type": ORDER_TYPE, "price": plan.limit_price, "validity": VALIDITY,
    }


def fit_to_limits(plan: EntryPlan, *, equity: float, owned_value: float = 0.0,
                  max_position_percent: float | None = None, max_order_value: float | None = None,
                  capital_room: float | None = None) -> EntryPlan:
    """``plan`` sized DOWN (never refused) so that the order stays within ``max_order_value``,
    the symbol's owned value after it (``owned_value`` + the order) within
    ``max_position_percent`` of ``equity`` (the bot's: cash + owned shares x LTP), and the order
    within ``capital_room`` (``MAX_CAPITAL`` minus what the bot has deployed). The plan's
    ``sized_down`` says which limit cut it and from what; quantity 0 comes with a reason."""
    if plan.quantity <= 0 or plan.limit_price <= 0:
        return plan
    caps: list[tuple[float, str]] = []
    if max_order_value is not None and max_order_value > 0:
        caps.append((max_order_value, f"MAX_ORDER_VALUE ₹{max_order_value:,.2f}"))
    if max_position_percent is not None and max_position_percent > 0 and equity > 0:
        room = equity * max_position_percent / 100 - owned_value
        caps.append((room, f"MAX_POSITION_PERCENT {max_position_percent:g} % of equity ₹{equity:,.2f}"
                           + (f" (₹{owned_value:,.2f} already owned)" if owned_value else "")))
    if capital_room is not None:
        caps.append((capital_room, f"MAX_CAPITAL (₹{capital_room:,.2f} left to deploy)"))
    quantity, why = plan.quantity, []
    for value, label in caps:
        fits = max(0, math.floor(value / plan.limit_price + 1e-9))
        if fits < quantity:
            quantity, why = fits, [label]
        elif fits == quantity and why:
            why.append(label)
    if quantity == plan.quantity:
        return plan
    note = f"sized down from {plan.quantity} to {quantity} shares by {' and '.join(why)}"
    return replace(plan, quantity=quantity, sized_down=note, reason=plan.reason if quantity else note)


def reprice_at_ask(planned: EntryPlan, depth: Mapping[str, Any] | None, ltp: float, *, cash: float,
                   deployment_percent: float, n_selected: int, equity: float, risk_percent: float | None,
                   stop: float | None, slippage_percent: float, max_position_percent: float | None,
                   max_order_value: float | None, capital_room: float | None = None
                   ) -> tuple[EntryPlan | None, AskLimit]:
    """The plan re-priced right before its order, as place_orders_daily and the backtest both do it:
    the limit is the ask level covering the planned quantity (limit_from_depth; None and the
    refusal in the AskLimit when no level may be used), shares = min(planned, budget / that limit)
    under the same risk cap, and the limits that sized the plan down still bind at the new price
    (a higher ask must not push the order over MAX_ORDER_VALUE, MAX_POSITION_PERCENT or what
    MAX_CAPITAL leaves, ``capital_room``: a plan fitted to the room at the LTP and sent at the ask
    once went over it by the slippage)."""
    ask = limit_from_depth(depth, planned.quantity, ltp, slippage_percent, planned.tick_size)
    if ask.limit is None:
        return None, ask
    fresh = size_entry(cash, deployment_percent, n_selected, ltp, planned.tick_size, stop, equity, risk_percent,
                       symbol=planned.symbol, limit=ask.limit, max_quantity=planned.quantity)
    fresh = fit_to_limits(fresh, equity=equity, max_position_percent=max_position_percent,
                          max_order_value=max_order_value, capital_room=capital_room)
    if fresh.sized_down is None and planned.sized_down is not None:
        fresh = replace(fresh, sized_down=planned.sized_down)  # the record keeps saying why
    return fresh, ask
