"""update_cnc_stoploss's pure rules: the previous-session-low stop, the fallback stop, which GTTs
are the bot's stops, and the GTT plan that keeps exactly one stop GTT per held symbol.

Rules and defaults (legacy section 4.3, ``update_cnc_stoploss.py``, with its faults fixed):

* Stop (:func:`compute_stop`): the low of the previous **completed** session
  (:func:`previous_session_low`; legacy took the second-to-last daily candle, which before 09:15 is
  two sessions back), **floored** to the tick. A stop already recorded for the position is never
  lowered (legacy replaced the GTT every run, lowering it after a down day). A stop at or above the
  LTP is reported ("not placed: stop >= LTP") and not placed: Kite would fire it at once (legacy
  silently replaced it with 95 % of the LTP).
* Minimum gap (``STOP_MIN_GAP_PERCENT``, default 1, at least 0.3): a stop above LTP × (1 − gap)
  is not placed (Kite disables a GTT within 0.25 % of the LTP, and a disabled GTT protects
  nothing; legacy kept 1 %). The fallback keeps the gap too.
* Stop at the first fill (:func:`stop_at_fill`, placed by workers.bot_stop): the scan's
  ``stop_loss`` floored to the tick, source ``scan_stop``; without a valid one below the fill and
  the gap (a ``--from`` list), the rule of the fallback below.
* Fallback (:func:`decide_stop`, :func:`fallback_stop`): "never lowered" must not mean "no stop".
  When a held symbol has **no** active stop GTT and the rule above gives none below the LTP (the
  never-lowered stop is at or above it: the GTT fired and its limit did not fill, or the stop is
  old; or there is no previous session low), a fallback stop is placed: the previous session's
  low, floored to the tick, if it is at least ``STOP_MIN_GAP_PERCENT`` below the LTP, else
  LTP × (1 − max(``GTT_LIMIT_BUFFER_PERCENT``, ``STOP_MIN_GAP_PERCENT``) / 100), floored to the
  tick. Its source is ``fallback``, and the job logs a WARNING: a person should
  look. A stop GTT that exists is never lowered (it is kept as it is).
* GTT (:func:`gtt_limit_price`, :func:`gtt_params`): single trigger, one leg: SELL, LIMIT, CNC, the
  full held quantity, trigger = the stop, limit price = trigger × (1 − ``GTT_LIMIT_BUFFER_PERCENT``
  / 100) (default 5 %), floored to the tick; ``last_price`` is the LTP, which must be above the
  trigger for a stop. (Legacy golden order_manager hard-coded product MIS and used no tick rounding.)
* Which GTTs are the bot's: the one predicate of :mod:`workers.gtt` (``bot_stops``): stop-shaped
  GTTs it owns (``stops[S].gtt_id``, its GTT intents) and, on a held symbol it has no stop record
  of at all (a lost or migrated state), the stop-shaped ones it adopts. Two-leg (OCO) GTTs,
  take-profit GTTs (trigger above the price), BUY GTTs, other exchanges and finished GTTs are
  never touched and never set the never-lower floor (:func:`stop_floors`).
* Plan (:func:`plan_gtt_changes`), over the managed GTTs, per symbol:

  =============================================  ==========================================
  held, stop wanted, no managed GTT              create
  held, stop wanted, one GTT, same values        none (a second run sends nothing)
  held, stop wanted, trigger/limit/qty differ    modify in place
  held, stop wanted, several GTTs                keep one (a matching one, else the lowest id),
                                                 delete the rest
  held, no stop wanted (e.g. no LTP)             existing GTT kept (none, with its own trigger,
                                                 limit and quantity); of several, the one with
                                                 the highest trigger stays
  not held (quantity 0 or absent)                delete every **owned** stop GTT on it
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
from workers.gtt import StopOwnership, bot_stops, gtt_id, legs, trigger
from workers.strategy.patterns import SESSION_CLOSE, CandleLike, completed_daily_candles

EXCHANGE = "NSE"
PRODUCT = "CNC"
PRICE_TOLERANCE = 0.005
#: Kite disables a GTT whose trigger is within this many percent of the LTP (kite-api.md 3.15)
KITE_DISABLE_BAND_PERCENT = 0.25
#: a fixed circuit band up to this (percent) gets the GTT leg's band rule (gtt_limit_price)
BAND_RULE_MAX_PERCENT = 5.0
#: how far inside the band the leg stays (percent of the trigger)
BAND_MARGIN_PERCENT = Decimal("0.5")
FIXED_BANDS_UP_TO_RULE = (2, 5)
#: the quote's band, half its width over the previous close, may be off the nominal band by
#: rounding to the tick (inwards) this much (percentage points)
BAND_MATCH_TOLERANCE = 0.2

CREATE, MODIFY, DELETE, NONE = "create", "modify", "delete", "none"
#: ``StopDecision.source`` values (recorded in state ``stops[SYMBOL]["source"]``)
PREV_SESSION_LOW, FALLBACK = "prev_session_low", "fallback"
#: the stop placed at an entry's first fill: the scan's ``stop_loss`` (workers.bot_stop)
SCAN_STOP = "scan_stop"


@dataclass(frozen=True)
class StopDecision:
    """``stop`` is the stop to hold (None only without any stop); ``place`` says whether a GTT
    may carry it now; ``reason`` says why not (or what happened); ``source`` is
    ``prev_session_low`` or ``fallback``.

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
    source: str = PREV_SESSION_LOW


def previous_session_low(daily_candles: Iterable[CandleLike], now: dt.datetime,
                         session_close: dt.time = SESSION_CLOSE) -> float | None:
    """Low of the last session complete at ``now`` (today's candle counts only after the close)."""
    done = completed_daily_candles(daily_candles, now, session_close)
    return done[-1].low if done else None


def _too_close(stop: float, ltp: float, min_gap_percent: float) -> bool:
    """A stop above LTP x (1 - gap): too close to place (Kite may disable it, a tick fires it)."""
    return Decimal(repr(float(stop))) > Decimal(repr(float(ltp))) * (100 - Decimal(repr(float(min_gap_percent)))) / 100


def compute_stop(prev_session_low: float | None, recorded_stop: float | None, ltp: float | None,
                 tick: float, min_gap_percent: float) -> StopDecision:
    """The stop for one held position: previous session low floored to the tick, never below
    the recorded stop, and not placed when at or above the LTP.

    ``recorded_stop``: the stop recorded for this position, or, when the state has none (a
    lost or migrated state), the trigger of its managed stop GTT (:func:`stop_floors`), so that
    a stop already at the broker is not lowered either."""
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
    if _too_close(stop, ltp, min_gap_percent):
        return StopDecision(stop, moved, False, recorded_stop, candidate,
                            f"not placed: stop {stop} within {min_gap_percent:g} % of LTP {ltp} (STOP_MIN_GAP_PERCENT)")
    return StopDecision(stop, moved, True, recorded_stop, candidate, note)


def fallback_stop(prev_session_low: float | None, ltp: float, tick: float,
                  buffer_percent: float,
                  min_gap_percent: float) -> float:
    """The stop for a held position that has no stop GTT and no rule stop below the LTP: the
    previous session's low (floored) if it is at least ``min_gap_percent`` below the LTP, else
    LTP × (1 − the larger of ``buffer_percent`` and ``min_gap_percent`` / 100), floored to the
    tick (legacy: 95 % of the LTP)."""
    if prev_session_low is not None and prev_session_low > 0:
        low = round_to_tick(prev_session_low, tick, "floor")
        if low < ltp and not _too_close(low, ltp, min_gap_percent):
            return low
    return gtt_limit_price(ltp, max(buffer_percent, min_gap_percent), tick)


def decide_stop(prev_session_low: float | None, recorded_stop: float | None, ltp: float | None,
                tick: float, *, has_stop_gtt: bool,
                buffer_percent: float,
                min_gap_percent: float) -> StopDecision:
    """:func:`compute_stop`, plus the fallback: a held symbol without a stop GTT (``has_stop_gtt``
    false) whose rule stop cannot be placed below the LTP gets :func:`fallback_stop`. Without an
    LTP nothing can be placed (the GTT needs it as ``last_price``)."""
    decision = compute_stop(prev_session_low, recorded_stop, ltp, tick, min_gap_percent)
    if decision.place or has_stop_gtt or ltp is None or not ltp > 0:
        return decision
    stop = fallback_stop(prev_session_low, ltp, tick, buffer_percent, min_gap_percent)
    if not 0 < stop < ltp:
        return decision
    why = ("no previous session low" if decision.stop is None
           else f"stop {decision.stop} >= LTP {ltp}" if decision.stop >= ltp
           else f"stop {decision.stop} within {min_gap_percent:g} % of LTP {ltp}")
    return StopDecision(stop, True, True, recorded_stop, decision.candidate,
                        f"FALLBACK stop {stop} ({why}, and no stop GTT protects the position): "
                        "a person should look", FALLBACK)


def fixed_band_percent(quote: Mapping[str, Any]) -> float | None:
    """The symbol's circuit band in percent of the previous close when it is a fixed band of at
    most BAND_RULE_MAX_PERCENT (2 % or 5 %: only stocks outside F&O have one; the F&O operating
    range is 10 %), from a ``quote()`` row; None otherwise or when the quote lacks the fields."""
    try:
        close = float((quote.get("ohlc") or {}).get("close") or 0.0)
        lower = float(quote.get("lower_circuit_limit") or 0.0)
        upper = float(quote.get("upper_circuit_limit") or 0.0)
    except (TypeError, ValueError):
        return None
    if not (close > 0 and 0 < lower < close < upper):
        return None
    band = (upper - lower) / 2 / close * 100
    for fixed in FIXED_BANDS_UP_TO_RULE:
        if abs(band - fixed) <= BAND_MATCH_TOLERANCE:
            return float(fixed)
    return None
def stop_at_fill(scan_stop: float | None, fill_price: float, prev_session_low: float | None, ltp: float | None,
                 tick: float, buffer_percent: float,
                 min_gap_percent: float) -> StopDecision:
    """The stop for an entry's filled shares (workers.bot_stop): the scan's ``stop_loss`` floored
    to the tick when it lies below the fill and at least ``min_gap_percent`` below the LTP; else
    (a ``--from`` row without a stop, or one too close) the stop job's rule for a position without
    a stop GTT: the previous session's low, or the fallback, which keeps the gap too."""
    if ltp is None or not ltp > 0:
        return StopDecision(None, False, False, reason=f"not placed: no LTP ({ltp})", source=SCAN_STOP)
    if scan_stop is not None and scan_stop > 0:
        stop = round_to_tick(scan_stop, tick, "floor")
        if 0 < stop < fill_price and stop < ltp and not _too_close(stop, ltp, min_gap_percent):
            return StopDecision(stop, True, True, None, stop, None, SCAN_STOP)
    decision = decide_stop(prev_session_low, None, ltp, tick, has_stop_gtt=False, buffer_percent=buffer_percent,
                           min_gap_percent=min_gap_percent)
    if scan_stop is not None and scan_stop > 0 and decision.place:
        why = (f"the scan's stop {scan_stop} is not at least {min_gap_percent:g} % below the LTP {ltp} "
               f"and below the fill {fill_price}")
        decision = StopDecision(decision.stop, decision.moved, True, None, decision.candidate,
                                f"{why}; {decision.reason or decision.source}", decision.source)
    return decision


def gtt_limit_price(trigger: float, buffer_percent: float,
                    tick: float = 0.05, *, band_percent: float | None = None,
                    lower_circuit: float | None = None) -> float:
    """The GTT leg's SELL limit: ``buffer_percent`` below the trigger, floored to the tick; with
    a fixed band of at most 5 %, no lower than trigger × (1 − band + 0.5 %); never below a lower
    circuit limit that is below the trigger."""
    t = Decimal(repr(float(trigger)))
    raw = t * (100 - Decimal(repr(float(buffer_percent)))) / 100
    if band_percent is not None and band_percent <= BAND_RULE_MAX_PERCENT:
        raw = max(raw, t * (100 - Decimal(repr(float(band_percent))) + BAND_MARGIN_PERCENT) / 100)
    price = round_to_tick(float(raw), tick, "floor")
    if lower_circuit is not None and price < lower_circuit < trigger:
        price = round_to_tick(lower_circuit, tick, "ceil")
    return price


@dataclass(frozen=True)
class DesiredGtt:
    trigger: float
    limit_price: float
    quantity: int


@dataclass(frozen=True)
class StopPlanAction:
    """One step of update_cnc_stoploss's GTT plan for a symbol: ``create``, ``modify``,
    ``delete`` or ``none`` (keep ``gtt_id`` as it is)."""

    action: str
    symbol: str
    gtt_id: int | None = None
    trigger: float | None = None
    limit_price: float | None = None
    quantity: int | None = None
    reason: str = ""


def stop_floors(managed: Mapping[str, Sequence[Mapping[str, Any]]]) -> dict[str, float]:
    """Symbol -> the highest trigger among its managed stop GTTs: the never-lower floor when the
    state records no stop for it."""
    return {s: max(trigger(g) for g in gs) for s, gs in managed.items() if gs}


def _same_price(a: float, b: float) -> bool:
    return abs(float(a) - float(b)) < PRICE_TOLERANCE


def _matches(gtt: Mapping[str, Any], want: DesiredGtt) -> bool:
    leg = legs(gtt)[0]
    return (_same_price(trigger(gtt), want.trigger) and _same_price(leg.get("price", 0), want.limit_price)
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
    *,
    ownership: StopOwnership | None = None,
) -> list[StopPlanAction]:
    """The GTT calls that bring the account to one stop GTT per held symbol (see the table above).

    ``holdings``: symbol → held quantity (quantity + t1_quantity). ``desired``: symbol →
    (trigger, limit price, quantity) for every symbol whose stop should be placed now.
    ``existing_gtts``: ``kite.get_gtts()`` as returned; only the bot's stops count
    (``workers.gtt.bot_stops`` with ``ownership``, adopting on the held symbols).
    """
    held = {s.upper() for s, q in holdings.items() if q > 0}
    want = {s.upper(): _desired(v) for s, v in desired.items()}
    by_symbol = bot_stops(existing_gtts, ownership or StopOwnership(), adopt_on=held, exchange=exchange)
    actions: list[StopPlanAction] = []
    for sym in sorted(held | set(by_symbol)):
        gtts = by_symbol.get(sym, [])
        if sym not in held:
            actions += [StopPlanAction(DELETE, sym, gtt_id(g), reason="symbol no longer held") for g in gtts]
            continue
        target = want.get(sym)
        if target is None or target.quantity <= 0:
            if not gtts:
                actions.append(StopPlanAction(NONE, sym, reason="held without a stop to place"))
                continue
            # No new stop: keep the tightest existing stop rather than loosen the protection.
            keep = max(gtts, key=lambda g: (trigger(g), -gtt_id(g)))
            actions += [StopPlanAction(DELETE, sym, gtt_id(g), reason=f"duplicate of GTT {keep['id']}")
                        for g in gtts if g is not keep]
            # The kept GTT's own values go with it, so the job can record the stop in place.
            leg = legs(keep)[0]
            qty_now = next((q for s, q in holdings.items() if s.upper() == sym), 0)
            if int(leg.get("quantity") or 0) != qty_now:
                # The trigger cannot move (e.g. within STOP_MIN_GAP_PERCENT of the LTP), but every
                # share held must still be covered: a split's credit day, a later fill.
                actions.append(StopPlanAction(MODIFY, sym, gtt_id(keep), trigger(keep), float(leg.get("price") or 0.0),
                                              qty_now, f"stop kept; quantity {leg.get('quantity')} -> {qty_now}"))
                continue
            actions.append(StopPlanAction(NONE, sym, gtt_id(keep), trigger(keep), float(leg.get("price") or 0.0),
                                          int(leg.get("quantity") or 0), "no new stop to place; GTT kept"))
            continue
        if not gtts:
            actions.append(StopPlanAction(CREATE, sym, None, target.trigger, target.limit_price, target.quantity,
                                     "no stop GTT"))
            continue
        # A GTT that already matches, else the lowest id.
        keep = min(gtts, key=lambda g: (not _matches(g, target), gtt_id(g)))
        actions += [StopPlanAction(DELETE, sym, gtt_id(g), reason=f"duplicate of GTT {keep['id']}")
                    for g in gtts if g is not keep]
        if _matches(keep, target):
            actions.append(StopPlanAction(NONE, sym, int(keep["id"]), target.trigger, target.limit_price,
                                     target.quantity, "unchanged"))
        else:
            actions.append(StopPlanAction(MODIFY, sym, int(keep["id"]), target.trigger, target.limit_price,
                                     target.quantity, _describe_change(keep, target)))
    return actions


def _describe_change(gtt: Mapping[str, Any], want: DesiredGtt) -> str:
    leg = legs(gtt)[0]
    return (f"trigger {trigger(gtt)} -> {want.trigger}, limit {leg.get('price')} -> {want.limit_price}, "
            f"quantity {leg.get('quantity')} -> {want.quantity}")


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


def scale_for_adjustment(value: float, factor: float, tick: float) -> float:
    """A price the state keeps (stop floor, ATR anchor) carried across a split or bonus whose
    history changed by ``factor`` (old / new: 2.0 for a 1:2 split): divided by it, floored to the
    tick, so a stop stays at or below the level it protected."""
    return round_to_tick(value / factor, tick, "floor")
