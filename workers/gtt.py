"""Which GTTs the bot may touch: one predicate for update_cnc_stoploss, the watchdog's tidy after
an exit, and doctor. Pure functions on Kite's ``get_gtts()`` rows and the user's state.

A **bot stop** is a GTT that is stop-shaped (:func:`is_stop_shaped`: active, on NSE, one trigger
below the GTT's ``condition.last_price``, one SELL leg) and either

* **owned**: its id is in the stop record ``stops[S].gtt_id`` or in a sent GTT intent of
  update_cnc_stoploss (the write-ahead record of a stop sent but not yet recorded:
  :func:`stop_ownership`), or
* **adopted**: on a symbol the bot holds (or, for the watchdog, held until the exit just filled)
  and has no stop record of at all (a lost or migrated state).

Everything else is a person's GTT and is never modified or deleted by any job.

==============================================  ==========  ================  ===================  ============
GTT (active unless said)                        bot stop?   update_cnc_stop-  watchdog tidy after  doctor
                                                            loss              an exit              coverage
==============================================  ==========  ================  ===================  ============
stop-shaped, id owned                           yes         managed           deleted / reduced    covers
stop-shaped, symbol held, no stop record        adopted     managed           deleted / reduced    covers
stop-shaped, not owned, symbol has a record     no          untouched         reported if > held   covers
two-leg OCO of SELL legs                        no          untouched         reported if > held   covers
take-profit (single SELL above last_price)      no          untouched         reported if > held   no
single SELL without ``last_price``              no          untouched         reported if > held   no
BUY GTT, other exchange, not active             no          untouched         ignored              no
==============================================  ==========  ================  ===================  ============

"Reported if > held": a person's SELL GTT one of whose legs sells more than is still held gets a
WARNING from the watchdog and a warning row from doctor (:func:`oversized_person_gtts`); the
person decides (Kite refuses the sell when it fires, or it sells shares bought later).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

EXCHANGE = "NSE"
#: the job whose GTT intents are stop GTTs
STOP_JOB = "update_cnc_stoploss"
DELETE, REDUCE = "delete", "reduce"


def legs(gtt: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return list(gtt.get("orders") or [])


def gtt_symbol(gtt: Mapping[str, Any]) -> str:
    return str((gtt.get("condition") or {}).get("tradingsymbol", "")).upper()


def gtt_id(gtt: Mapping[str, Any]) -> int:
    return int(gtt["id"])


def trigger(gtt: Mapping[str, Any]) -> float:
    return float(((gtt.get("condition") or {}).get("trigger_values") or [0.0])[0])


def is_active_sell(gtt: Mapping[str, Any], exchange: str = EXCHANGE) -> bool:
    """Active, on ``exchange``, and every leg a SELL (a BUY GTT is someone's entry)."""
    cond = gtt.get("condition") or {}
    ls = legs(gtt)
    return (str(gtt.get("status", "")).lower() == "active"
            and str(cond.get("exchange") or exchange).upper() == exchange and bool(ls)
            and all(str(leg.get("transaction_type", "")).upper() == "SELL" for leg in ls))


def is_stop_shaped(gtt: Mapping[str, Any], exchange: str = EXCHANGE) -> bool:
    """Active, on ``exchange``, single (one trigger, one SELL leg), and the trigger below
    ``condition.last_price`` (the LTP when it was set), i.e. it fires on a fall. A trigger above
    it is a take-profit; a two-leg GTT is an OCO someone set up on purpose."""
    cond = gtt.get("condition") or {}
    triggers = list(cond.get("trigger_values") or [])
    if (not is_active_sell(gtt, exchange) or str(gtt.get("type") or "single") != "single"
            or len(triggers) != 1 or len(legs(gtt)) != 1):
        return False
    try:
        return float(triggers[0]) < float(cond["last_price"])
    except (KeyError, TypeError, ValueError):
        return False  # no direction on record: not provably a stop, so not ours to touch


def _as_id(value: Any) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


@dataclass(frozen=True)
class StopOwnership:
    """``owned_ids``: GTT ids the bot placed or adopted; ``known_symbols``: symbols it has any
    stop record of (no adoption there)."""

    owned_ids: frozenset[int] = frozenset()
    known_symbols: frozenset[str] = frozenset()


def stop_ownership(state: Mapping[str, Any]) -> StopOwnership:
    """The bot's stop GTTs, from the state: ``stops[S].gtt_id`` (the one home of a stop's GTT
    id) and update_cnc_stoploss's sent GTT intents (the record of a GTT sent but not yet in
    ``stops``: a run killed right after the send). ``positions[S].gtt_order_id`` is a derived
    legacy field and is not read; a legacy id there is folded into ``stops`` on load
    (kitefleet.state_migrations.fold_legacy_stop_ids)."""
    owned: set[int] = set()
    known: set[str] = set()
    for sym, rec in (state.get("stops") or {}).items():
        known.add(str(sym).upper())
        if (gid := _as_id((rec or {}).get("gtt_id"))) is not None:
            owned.add(gid)
    for intent in (state.get("intents") or {}).values():
        if intent.get("kind") == "gtt" and intent.get("job") == STOP_JOB:
            known.add(str(intent.get("symbol", "")).upper())
            if (gid := _as_id(intent.get("broker_id"))) is not None:
                owned.add(gid)
    return StopOwnership(frozenset(owned), frozenset(known))


def bot_stops(gtts: Iterable[Mapping[str, Any]], ownership: StopOwnership, adopt_on: Collection[str] = (),
              exchange: str = EXCHANGE) -> dict[str, list[Mapping[str, Any]]]:
    """Symbol -> the bot's stop GTTs, lowest id first: stop-shaped ones it owns, and on a symbol
    of ``adopt_on`` (held) that it has no stop record of, every stop-shaped one (adopted)."""
    adopt = {s.upper() for s in adopt_on} - set(ownership.known_symbols)
    out: dict[str, list[Mapping[str, Any]]] = {}
    for g in gtts:
        if not is_stop_shaped(g, exchange):
            continue
        sym = gtt_symbol(g)
        if gtt_id(g) in ownership.owned_ids or sym in adopt:
            out.setdefault(sym, []).append(g)
    return {s: sorted(gs, key=gtt_id) for s, gs in out.items()}


def _sells_more_than(gtt: Mapping[str, Any], held: int) -> bool:
    return any(int(leg.get("quantity") or 0) > held for leg in legs(gtt))


def _describe(gtt: Mapping[str, Any]) -> str:
    kind = "OCO" if len(legs(gtt)) > 1 else ("stop" if is_stop_shaped(gtt) else "single")
    qty = "/".join(str(int(leg.get("quantity") or 0)) for leg in legs(gtt))
    return f"GTT {gtt_id(gtt)} ({kind}, sells {qty})"


def oversized_person_gtts(gtts: Iterable[Mapping[str, Any]], held: Mapping[str, int], ownership: StopOwnership,
                          adopt_on: Collection[str] = (), exchange: str = EXCHANGE) -> dict[str, list[str]]:
    """Symbol -> descriptions of a person's active SELL GTTs (not bot stops) that would sell
    more than is held now (``held``: workers.portfolio.held_quantities). Reported, never changed."""
    gtts = list(gtts)
    mine = {gtt_id(g) for gs in bot_stops(gtts, ownership, adopt_on, exchange).values() for g in gs}
    out: dict[str, list[str]] = {}
    for g in gtts:
        if not is_active_sell(g, exchange) or gtt_id(g) in mine:
            continue
        sym = gtt_symbol(g)
        have = int(held.get(sym, 0))
        if _sells_more_than(g, have):
            out.setdefault(sym, []).append(f"{sym}: {_describe(g)} is not the bot's and sells more than the "
                                           f"{have} held; left as it is, a person should look")
    return out


@dataclass(frozen=True)
class StopCut:
    """The watchdog's tidy after an exit filled: ``delete`` a bot stop GTT (nothing left) or
    ``reduce`` its leg to ``quantity`` (the shares still held)."""

    gtt_id: int
    action: str  # DELETE | REDUCE
    quantity: int
    gtt: Mapping[str, Any]


def cuts_after_exit(gtts: Iterable[Mapping[str, Any]], symbol: str, held: int, ownership: StopOwnership,
                    exchange: str = EXCHANGE) -> tuple[list[StopCut], list[str]]:
    """(cuts to the symbol's bot stops, reports of a person's GTTs) once ``held`` shares are
    left after an exit: every bot stop is deleted when none are, else a leg above ``held`` is cut
    down to it. The symbol was held until the exit, so its stop-shaped GTTs are adopted when the
    state has no stop record of it. A person's GTT on the symbol that sells more than ``held`` is
    only reported."""
    sym = symbol.upper()
    gtts = [g for g in gtts if gtt_symbol(g) == sym]
    cuts: list[StopCut] = []
    for g in bot_stops(gtts, ownership, adopt_on=(sym,), exchange=exchange).get(sym, []):
        if held <= 0:
            cuts.append(StopCut(gtt_id(g), DELETE, 0, g))
        elif _sells_more_than(g, held):
            cuts.append(StopCut(gtt_id(g), REDUCE, held, g))
    reports = oversized_person_gtts(gtts, {sym: max(held, 0)}, ownership, adopt_on=(sym,),
                                    exchange=exchange).get(sym, [])
    return cuts, reports


def reduced_legs(gtt: Mapping[str, Any], held: int) -> list[dict[str, Any]]:
    """The GTT's legs, each selling at most ``held`` (a full replacement for ``modify_gtt``)."""
    return [{"exchange": leg.get("exchange", EXCHANGE), "tradingsymbol": leg["tradingsymbol"],
             "transaction_type": leg["transaction_type"], "quantity": min(int(leg["quantity"]), held),
             "order_type": leg.get("order_type", "LIMIT"), "product": leg.get("product", "CNC"),
             "price": leg["price"]} for leg in legs(gtt)]


def coverage_gaps(held: Mapping[str, int], gtts: Sequence[Mapping[str, Any]],
                  exchange: str = EXCHANGE) -> dict[str, str]:
    """Symbol -> problem, for every held symbol without an active stop covering it (doctor). A
    stop is a stop-shaped single GTT, the bot's or a person's, or a two-leg OCO of SELL legs (its
    lower leg is a stop); a take-profit above the price protects nothing on a fall."""
    cover: dict[str, int] = {}
    for g in gtts:
        if not (is_stop_shaped(g, exchange) or (str(g.get("type") or "") == "two-leg"
                                                and is_active_sell(g, exchange))):
            continue
        sym = gtt_symbol(g)
        cover[sym] = max(cover.get(sym, 0), max(int(leg.get("quantity") or 0) for leg in legs(g)))
    problems: dict[str, str] = {}
    for sym, qty in sorted(held.items()):
        if qty <= 0:
            continue
        covered = cover.get(sym, 0)
        if covered == 0:
            problems[sym] = f"{sym}: {qty} held, no active GTT stop"
        elif covered < qty:
            problems[sym] = f"{sym}: {qty} held, the GTT stop covers only {covered}"
    return problems
