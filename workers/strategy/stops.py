"""update_cnc_stoploss's pure rules: the previous-session-low stop and the GTT plan that keeps
exactly one stop GTT per held symbol.

Rules and defaults (legacy section 4.3, ``update_cnc_stoploss.py``, with its faults fixed):

* Stop (:func:`compute_stop`): the low of the previous **completed** session
  (:func:`previous_session_low`; legacy took the second-to-last daily candle, which before 09:15 is
  two sessions back), **floored** to the tick. A stop already recorded for the position is never
  lowered (legacy replaced the GTT every run, lowering it after a down day). A stop at or above the
  LTP is reported ("not placed: stop >= LTP") and not placed: Kite would fire it at once (legacy
  silently replaced it with 95 % of the LTP).
* GTT (:func:`gtt_limit_price`, :func:`gtt_params`): single trigger, one leg: SELL, LIMIT, CNC, the
  full held quantity, trigger = the stop, limit price = trigger × (1 − ``GTT_LIMIT_BUFFER_PERCENT``
  / 100) (default 5 %), floored to the tick; ``last_price`` is the LTP, which must be above the
  trigger for a stop. (Legacy golden order_manager hard-coded product MIS and used no tick rounding.)
* Plan (:func:`plan_gtt_changes`): only **active** GTTs count, and only stop GTTs: every leg a SELL
  on the exchange (NSE). BUY GTTs and other exchanges are never touched. Per symbol:

  =============================================  ==========================================
  held, stop wanted, no stop GTT                 create
  held, stop wanted, one GTT, same values        none (a second run sends nothing)
  held, stop wanted, trigger/limit/qty differ    modify in place (the lowest id)
  held, stop wanted, several GTTs                keep one (a matching single-leg one, else
                                                 the lowest-id single-leg, else the lowest id),
                                                 delete the rest
  held, no stop wanted (e.g. stop >= LTP)        existing GTT kept (none); of several, the
                                                 single-leg one with the highest trigger stays
  not held (quantity 0 or absent)                delete every stop GTT on it
  =============================================  ==========================================

  Prices compare equal within half a paisa; quantities exactly. Actions come out per symbol in
  alphabetical order, deletes first.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from kitefleet.ticks import round_to_tick
from workers.strategy.patterns import SESSION_CLOSE, CandleLike, completed_daily_candles

DEFAULT_GTT_LIMIT_BUFFER_PERCENT = 5.0
EXCHANGE = "NSE"
PRODUCT = "CNC"
PRICE_TOLERANCE = 0.005

CREATE, MODIFY, DELETE, NONE = "create", "modify", "delete", "none"


@dataclass(frozen=True)
class StopDecision:
    """``stop`` is the stop to hold (None only without any stop); ``place`` says whether a GTT
    may carry it now; ``reason`` says why not (or what happened).

    Record ``stop`` as the position's stop only when ``place`` is true and the GTT call
    succeeded: a recorded stop is a floor for every later run, so an unplaced one must not
    become it.
    """

    stop: float | None
    moved: bool
    place: bool
    previous: float | None = None
    candidate: float | None = None
    reason: str | None = None


def previous_session_low(daily_candles: Iterable[CandleLike], now: dt.datetime,
                         session_close: dt.time = SESSION_CLOSE) -> float | None:
    """Low of the last session complete at ``now`` (today's candle counts only after the close)."""
    done = completed_daily_candles(daily_candles, now, session_close)
    return done[-1].low if done else None


def compute_stop(prev_session_low: float | None, recorded_stop: float | None, ltp: float | None,
                 tick: float) -> StopDecision:
    """The stop for one held position: previous session low floored to the tick, never below
    the recorded stop, and not placed when at or above the LTP.

    ``recorded_stop``: the stop recorded for this position, or, when the state has none (a
    lost or migrated state), the trigger of its active stop GTT, so that a stop already at the
    broker is not lowered either."""
    candidate = None if prev_session_low is None or prev_session_low <= 0 else round_to_tick(
        prev_session_low, tick, "floor")
    if candidate is None:
        if recorded_stop is None:
            return StopDecision(None, False, False, None, None, "not placed: no previous session low")
        stop, moved = recorded_stop, False
        note: str | None = "no previous session low; recorded stop kept"
    elif recorded_stop is not None and candidate <= recorded_stop:
        stop, moved = recorded_stop, False
        note = None if candidate == recorded_stop else (
            f"kept {recorded_stop}: a stop is never lowered (previous low gives {candidate})")
    else:
        stop, moved, note = candidate, True, None
    if ltp is None or not ltp > 0:
        return StopDecision(stop, moved, False, recorded_stop, candidate, f"not placed: no LTP ({ltp})")
    if stop >= ltp:
        return StopDecision(stop, moved, False, recorded_stop, candidate,
                            f"not placed: stop {stop} >= LTP {ltp}")
    return StopDecision(stop, moved, True, recorded_stop, candidate, note)


def gtt_limit_price(trigger: float, buffer_percent: float = DEFAULT_GTT_LIMIT_BUFFER_PERCENT,
                    tick: float = 0.05) -> float:
    """The GTT leg's SELL limit: ``buffer_percent`` below the trigger, floored to the tick."""
    raw = Decimal(repr(float(trigger))) * (100 - Decimal(repr(float(buffer_percent)))) / 100
    return round_to_tick(float(raw), tick, "floor")


@dataclass(frozen=True)
class DesiredGtt:
    trigger: float
    limit_price: float
    quantity: int


@dataclass(frozen=True)
class GttAction:
    action: str
    symbol: str
    gtt_id: int | None = None
    trigger: float | None = None
    limit_price: float | None = None
    quantity: int | None = None
    reason: str = ""


def _legs(gtt: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return list(gtt.get("orders") or [])


def _is_stop_gtt(gtt: Mapping[str, Any], exchange: str) -> bool:
    cond = gtt.get("condition") or {}
    legs = _legs(gtt)
    return (
        str(gtt.get("status", "")).lower() == "active"
        and str(cond.get("exchange") or exchange).upper() == exchange
        and bool(legs)
        and all(str(leg.get("transaction_type", "")).upper() == "SELL" for leg in legs)
    )


def _is_single(gtt: Mapping[str, Any]) -> bool:
    return len((gtt.get("condition") or {}).get("trigger_values") or []) == 1 and len(_legs(gtt)) == 1


def _trigger(gtt: Mapping[str, Any]) -> float:
    return float(((gtt.get("condition") or {}).get("trigger_values") or [0.0])[0])


def _same_price(a: float, b: float) -> bool:
    return abs(float(a) - float(b)) < PRICE_TOLERANCE


def _matches(gtt: Mapping[str, Any], want: DesiredGtt) -> bool:
    if not _is_single(gtt):
        return False
    leg = _legs(gtt)[0]
    trigger = gtt["condition"]["trigger_values"][0]
    return (_same_price(trigger, want.trigger) and _same_price(leg.get("price", 0), want.limit_price)
            and int(leg.get("quantity", 0)) == want.quantity)


def _desired(value: DesiredGtt | Sequence[float]) -> DesiredGtt:
    if isinstance(value, DesiredGtt):
        return value
    trigger, limit, qty = value
    return DesiredGtt(float(trigger), float(limit), int(qty))


def plan_gtt_changes(
    holdings: Mapping[str, int],
    desired: Mapping[str, DesiredGtt | Sequence[float]],
    existing_gtts: Iterable[Mapping[str, Any]],
    exchange: str = EXCHANGE,
) -> list[GttAction]:
    """The GTT calls that bring the account to one stop GTT per held symbol (see the table above).

    ``holdings``: symbol → held quantity (quantity + t1_quantity). ``desired``: symbol →
    (trigger, limit price, quantity) for every symbol whose stop should be placed now.
    ``existing_gtts``: ``kite.get_gtts()`` as returned.
    """
    held = {s.upper() for s, q in holdings.items() if q > 0}
    want = {s.upper(): _desired(v) for s, v in desired.items()}
    by_symbol: dict[str, list[Mapping[str, Any]]] = {}
    for g in existing_gtts:
        if _is_stop_gtt(g, exchange):
            sym = str(g["condition"]["tradingsymbol"]).upper()
            by_symbol.setdefault(sym, []).append(g)
    actions: list[GttAction] = []
    for sym in sorted(held | set(by_symbol)):
        gtts = sorted(by_symbol.get(sym, []), key=lambda g: int(g["id"]))
        if sym not in held:
            actions += [GttAction(DELETE, sym, int(g["id"]), reason="symbol no longer held") for g in gtts]
            continue
        target = want.get(sym)
        if target is None or target.quantity <= 0:
            if not gtts:
                actions.append(GttAction(NONE, sym, reason="held without a stop to place"))
                continue
            # No new stop: keep the tightest existing stop rather than loosen the protection.
            keep = max(gtts, key=lambda g: (_is_single(g), _trigger(g), -int(g["id"])))
            actions += [GttAction(DELETE, sym, int(g["id"]), reason=f"duplicate of GTT {keep['id']}")
                        for g in gtts if g is not keep]
            actions.append(GttAction(NONE, sym, int(keep["id"]), reason="no new stop to place; GTT kept"))
            continue
        if not gtts:
            actions.append(GttAction(CREATE, sym, None, target.trigger, target.limit_price, target.quantity,
                                     "no stop GTT"))
            continue
        # A GTT that already matches, else a single-leg one, else the lowest id.
        keep = min(gtts, key=lambda g: (not _matches(g, target), not _is_single(g), int(g["id"])))
        actions += [GttAction(DELETE, sym, int(g["id"]), reason=f"duplicate of GTT {keep['id']}")
                    for g in gtts if g is not keep]
        if _matches(keep, target):
            actions.append(GttAction(NONE, sym, int(keep["id"]), target.trigger, target.limit_price,
                                     target.quantity, "unchanged"))
        else:
            actions.append(GttAction(MODIFY, sym, int(keep["id"]), target.trigger, target.limit_price,
                                     target.quantity, _describe_change(keep, target)))
    return actions


def _describe_change(gtt: Mapping[str, Any], want: DesiredGtt) -> str:
    if not _is_single(gtt):
        return "replace a multi-leg GTT with the single-leg stop"
    leg = _legs(gtt)[0]
    old = (gtt["condition"]["trigger_values"][0], leg.get("price"), leg.get("quantity"))
    return (f"trigger {old[0]} -> {want.trigger}, limit {old[1]} -> {want.limit_price}, "
            f"quantity {old[2]} -> {want.quantity}")


def gtt_params(symbol: str, trigger: float, limit_price: float, quantity: int, ltp: float,
               exchange: str = EXCHANGE) -> dict[str, Any]:
    """``kite.place_gtt`` / ``kite.modify_gtt`` keyword arguments for one stop GTT."""
    return {
        "trigger_type": "single", "tradingsymbol": symbol, "exchange": exchange,
        "trigger_values": [trigger], "last_price": ltp,
        "orders": [{"exchange": exchange, "tradingsymbol": symbol, "transaction_type": "SELL",
                    "quantity": quantity, "order_type": "LIMIT", "product": PRODUCT,
                    "price": limit_price}],
    }
