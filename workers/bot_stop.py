"""Every bot stop GTT is placed here, whichever job asks: update_cnc_stoploss (its daily trail),
place_orders_daily (the fills it sees right after sending) and the watchdog (fills it sees later).

Why one place: a stop GTT is the only protection a filled share has while no job runs. Before
this, the first stop of an entry came from the 14:00 stop run, hours after the fill; and a stop
placed by some other path would not be recognised as the bot's (workers.gtt ownership reads the
stop job's GTT intents and ``stops[S]``), so it would be neither trailed nor tidied after an exit.

The contract every caller gets:

* the GTT goes through the intent protocol (workers.intents.send_gtt_once) under the stop job's
  tag scheme: ``make_tag(user, "update_cnc_stoploss", session, symbol, "stop:<trigger>:<qty>")``,
  ``...:<n>`` for the n-th GTT of that purpose the same day (:func:`fresh_stop_tag`); the intent's
  job is ``update_cnc_stoploss``, so ``workers.gtt.stop_ownership`` owns the GTT from the moment
  it is sent, even before ``stops[S]`` names it (a kill right after the send);
* :func:`protect_fills` takes the user's GTT lock (kitefleet.locks.gtt_lock), reads the GTT list
  inside it, and records each stop in ``stops[S]`` (the one home of a stop's GTT id) at once, in
  its own state transaction, with ``positions[S].gtt_order_id`` derived from it.

Stop at the first fill (:func:`protect_fills`; rule: workers.strategy.stops.stop_at_fill): each
bot entry of the session (an ``entry`` intent of place_orders_daily) whose order shows filled
shares not yet covered by its symbol's recorded stop gets a single-leg SELL GTT for the filled
quantity at the scan's ``stop_loss`` (the entry plan's, floored to the tick), source
``scan_stop``; without a valid one below the fill and ``STOP_MIN_GAP_PERCENT`` below the LTP (a
``--from`` list), the stop job's rule (the previous session's low, or the fallback). A later
partial fill modifies the GTT's quantity (trigger and limit kept). A bot stop already at the
broker for the symbol (placed by a run killed before its record) is recorded, not duplicated.
update_cnc_stoploss then trails the recorded stop up to the previous session's low, never down.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from kitefleet.home import Home
from kitefleet.locks import gtt_lock
from kitefleet.settings import Settings
from kitefleet.states import INTENT_TAG_USED
from workers import events
from workers.broker_errors import BrokerRejected
from workers.gtt import STOP_JOB, bot_stops, gtt_id, legs, stop_ownership, trigger
from workers.intents import IntentLog, make_tag, send_gtt_once
from workers.portfolio import FINAL_ORDER_STATUSES
from workers.strategy.stops import (
    SCAN_STOP,
    fixed_band_percent,
    gtt_limit_price,
    gtt_params,
    stop_at_fill,
)

EXCHANGE = "NSE"
ENTRY_JOB = "place_orders_daily"
#: a GTT found for an intent but no longer active: try the next tag at most this often
CREATE_ATTEMPTS = 3
#: calendar days of daily candles read to find the previous completed session (holidays included)
CANDLE_LOOKBACK_DAYS = 14
#: ``positions[S].stop_loss_source``: the legacy names (as update_cnc_stoploss writes them)
LEGACY_SOURCE = {"prev_session_low": "previous_day_low_gtt", "fallback": "fallback_gtt", SCAN_STOP: "scan_stop_gtt"}


def stop_purpose(trigger_price: float, quantity: int, attempt: int = 1) -> str:
    base = f"stop:{trigger_price:.2f}:{quantity}"
    return base if attempt <= 1 else f"{base}:{attempt}"


def fresh_stop_tag(user: str, session: date, symbol: str, trigger_price: float, quantity: int,
                   intents: Mapping[str, Mapping[str, Any]]) -> tuple[str, str]:
    """(tag, purpose) for a new stop GTT: the first purpose of the sequence whose intent was never
    sent. An open or failed intent keeps its tag (the intent protocol checks the broker first);
    a sent, resolved or unresolved one named a GTT that is gone now, so it gets a successor."""
    attempt = 1
    while True:
        purpose = stop_purpose(trigger_price, quantity, attempt)
        tag = make_tag(user, STOP_JOB, session, symbol, purpose)
        if (intents.get(tag) or {}).get("status") not in INTENT_TAG_USED:
            return tag, purpose
        attempt += 1


@dataclass(frozen=True)
class StopSent:
    """A stop GTT create: the active GTT's id, or ``error`` (none became active)."""

    gtt_id: int | None
    tag: str
    sent_now: bool
    error: str | None = None


def send_stop_gtt(kite: Any, intents: IntentLog, user: str, session: date, symbol: str, trigger_price: float,
                  limit_price: float, quantity: int, ltp: float, log: logging.Logger | None = None) -> StopSent:
    """Create one stop GTT at most once per tag. The caller holds the GTT lock and has checked
    that no bot stop of ``symbol`` is active: an earlier intent that reconciliation matches to a
    GTT no longer active (deleted, fired) has spent its tag, and the next tag is tried. A GTT in
    any state but active protects nothing: one just placed may come back disabled (a trigger
    within 0.25 % of the LTP), and is reported, not retried (the next run tries again)."""
    params = gtt_params(symbol, trigger_price, limit_price, quantity, ltp)
    tag = ""
    for _ in range(CREATE_ATTEMPTS):
        tag, purpose = fresh_stop_tag(user, session, symbol, trigger_price, quantity, intents.all())
        result = send_gtt_once(kite, intents, tag, purpose=purpose, job=STOP_JOB, session=session, **params)
        new_id = int(result.broker_id) if result.broker_id is not None else None
        status = str(kite.get_gtt(new_id).get("status")) if new_id is not None else "unknown"
        if status == "active":
            return StopSent(new_id, tag, result.sent_now)
        if result.sent_now:
            return StopSent(None, tag, True, f"stop GTT {new_id} was placed but the broker shows it {status}; "
                                             "the next run tries again")
        if log is not None:
            log.warning("%s: intent %s matched GTT %s, which is %s; placing under the next tag", symbol, tag,
                        new_id, status)
    return StopSent(None, tag, False, f"no active stop GTT after {CREATE_ATTEMPTS} attempts; the next run tries again")


def record_stop(state: dict[str, Any], symbol: str, *, stop: float, source: str, gtt: int, trigger_price: float,
                limit_price: float, quantity: int, now: datetime) -> None:
    """``stops[S]`` (inside a state transaction) and the legacy copies on ``positions[S]``."""
    state.setdefault("stops", {})[symbol] = {
        "stop": stop, "source": source, "gtt_id": gtt, "trigger": trigger_price, "limit_price": limit_price,
        "quantity": quantity, "updated_at": now.isoformat()}
    pos = (state.get("positions") or {}).get(symbol)
    if isinstance(pos, dict):
        pos["gtt_order_id"] = gtt
        legacy = LEGACY_SOURCE.get(source, source)
        if pos.get("stop_loss") != stop or pos.get("stop_loss_source") != legacy:
            pos.update({"stop_loss": stop, "stop_loss_source": legacy, "stop_loss_updated": now.isoformat()})


# --- the stop at the first fill ---------------------------------------------------------------
@dataclass(frozen=True)
class FilledEntry:
    """The session's bot entry fills of one symbol, and the scan's stop for them."""

    symbol: str
    filled: int
    average_price: float
    scan_stop: float | None
    #: some entry order of the symbol is still open (more fills may come)
    open: bool


def _plan_meta(state: Mapping[str, Any], session: date) -> dict[str, Mapping[str, Any]]:
    meta: dict[str, Mapping[str, Any]] = {}
    for plan in (state.get("entry_plans") or {}).values():
        if plan.get("session") != session.isoformat():
            continue
        for entry in (plan.get("entries") or {}).values():
            meta[str(entry.get("tag"))] = entry
    return meta


def entry_order_ids(state: Mapping[str, Any], session: date) -> dict[str, str]:
    """Order id -> symbol of the session's bot entries sent so far (their intents)."""
    out: dict[str, str] = {}
    for intent in (state.get("intents") or {}).values():
        if (intent.get("kind") == "order" and intent.get("purpose") == "entry" and intent.get("job") == ENTRY_JOB
                and intent.get("session") == session.isoformat() and intent.get("broker_id")):
            out[str(intent["broker_id"])] = str(intent["symbol"]).upper()
    return out


def filled_entries(state: Mapping[str, Any], orders: Sequence[Mapping[str, Any]], session: date) -> list[FilledEntry]:
    """Per symbol, the session's bot entry orders with fills (from the order book)."""
    ids = entry_order_ids(state, session)
    meta = _plan_meta(state, session)
    tags = {str(i["broker_id"]): t for t, i in (state.get("intents") or {}).items() if i.get("broker_id")}
    acc: dict[str, dict[str, Any]] = {}
    for o in orders:
        oid = str(o.get("order_id"))
        if oid not in ids:
            continue
        sym = ids[oid]
        filled = int(o.get("filled_quantity") or 0)
        a = acc.setdefault(sym, {"filled": 0, "value": 0.0, "stop": None, "open": False})
        a["open"] = a["open"] or str(o.get("status")) not in FINAL_ORDER_STATUSES
        a["filled"] += filled
        a["value"] += filled * float(o.get("average_price") or 0.0)
        stop = (meta.get(tags.get(oid, "")) or {}).get("stop_loss")
        if isinstance(stop, int | float) and not isinstance(stop, bool):
            a["stop"] = float(stop)
    return [FilledEntry(s, a["filled"], round(a["value"] / a["filled"], 2), a["stop"], a["open"])
            for s, a in sorted(acc.items()) if a["filled"] > 0]


def uncovered(state: Mapping[str, Any], fills: Sequence[FilledEntry]) -> list[FilledEntry]:
    """The fills whose symbol has no recorded stop GTT covering the filled quantity."""
    stops = state.get("stops") or {}
    out = []
    for f in fills:
        rec = stops.get(f.symbol) or {}
        if rec.get("gtt_id") is None or int(rec.get("quantity") or 0) < f.filled:
            out.append(f)
    return out


@dataclass
class FillStop:
    """What :func:`protect_fills` did for one symbol: ``create``, ``modify``, ``record`` (a bot
    stop already at the broker) or ``none`` (not placed: ``error`` says why)."""

    symbol: str
    action: str
    gtt_id: int | None = None
    trigger: float | None = None
    quantity: int = 0
    source: str | None = None
    note: str | None = None
    error: str | None = None


def _schema_default(key: str) -> float:
    # A Settings without values reads every key as its schema default: the one source of defaults.
    return Settings(user="", env_file=Path(), values={}).number(key)


@dataclass(frozen=True)
class StopSettings:
    buffer_percent: float = field(default_factory=lambda: _schema_default("GTT_LIMIT_BUFFER_PERCENT"))
    min_gap_percent: float = field(default_factory=lambda: _schema_default("STOP_MIN_GAP_PERCENT"))

    @classmethod
    def of(cls, settings: Settings) -> StopSettings:
        return cls(settings.number("GTT_LIMIT_BUFFER_PERCENT"), settings.number("STOP_MIN_GAP_PERCENT"))


def prev_low_reader(md: Any, now: datetime) -> Callable[[str], float | None]:
    """symbol -> the previous completed session's low (workers.marketdata), read on demand: only a
    fill without a usable scan stop needs it."""
    from workers.strategy.stops import previous_session_low

    def read(symbol: str) -> float | None:
        last = md.calendar.last_completed_session(now)
        candles = md.daily_candles(symbol, last - timedelta(days=CANDLE_LOOKBACK_DAYS), last, last_completed=last,
                                   now=now)
        return previous_session_low(candles, now)

    return read


def protect_fills(kite: Any, store: Any, intents: IntentLog, home: Home, user: str,
                  orders: Sequence[Mapping[str, Any]], *, session: date, now: datetime,
                  tick_size: Callable[[str], float],
                  prev_low: Callable[[str], float | None], settings: StopSettings, log: logging.Logger,
                  lock_timeout: float = 60.0) -> list[FillStop]:
    """A stop GTT for every bot entry fill of ``orders`` that has none covering it (see the module
    docstring). Reads nothing more when every fill is covered; else takes the GTT lock (a
    LockTimeout reaches the caller: the next poll or run tries again)."""
    todo = uncovered(store.read(), filled_entries(store.read(), orders, session))
    if not todo:
        return []
    out: list[FillStop] = []
    with gtt_lock(home, user, timeout=lock_timeout):
        state = store.read()
        todo = uncovered(state, todo)  # the stop job may have covered them while we waited
        if not todo:
            return []
        gtts = list(kite.get_gtts())
        ownership = stop_ownership(state)
        # quote(), not ltp(): its circuit band prices the GTT leg as the stop job's does
        quotes = kite.quote(*[f"{EXCHANGE}:{f.symbol}" for f in todo])
        for f in todo:
            quote = quotes.get(f"{EXCHANGE}:{f.symbol}") or {}
            ltp = float(quote.get("last_price") or 0.0)
            mine = bot_stops(gtts, ownership, adopt_on=(f.symbol,)).get(f.symbol, [])
            try:
                result = _protect_one(kite, store, intents, user, f, mine, ltp, session, now, tick_size, prev_low,
                                      settings, state, quote)
            except BrokerRejected as exc:
                result = FillStop(f.symbol, "none", error=f"broker refused the stop: {exc.kite_message or exc}")
            out.append(result)
            _report(home, user, result, log)
    return out


def _protect_one(kite: Any, store: Any, intents: IntentLog, user: str, f: FilledEntry, mine: list[Mapping[str, Any]],
                 ltp: float, session: date, now: datetime, tick_size: Callable[[str], float],
                 prev_low: Callable[[str], float | None], settings: StopSettings,
                 state: Mapping[str, Any], quote: Mapping[str, Any]) -> FillStop:
    rec = (state.get("stops") or {}).get(f.symbol) or {}
    if mine:
        # A bot stop is already at the broker (this fill's earlier part, or a run killed before
        # its record): it is the one to keep; a later fill only raises its quantity.
        keep = next((g for g in mine if gtt_id(g) == rec.get("gtt_id")), mine[0])
        leg = legs(keep)[0]
        trig, limit, qty = trigger(keep), float(leg.get("price") or 0.0), int(leg.get("quantity") or 0)
        source = str(rec.get("source") or SCAN_STOP)
        stop = float(rec["stop"]) if isinstance(rec.get("stop"), int | float) else trig
        action = "record"
        if qty < f.filled:
            if not ltp > trig:
                return FillStop(f.symbol, "none", gtt_id(keep), trig, qty, source,
                                error=f"LTP {ltp} at or below the stop {trig}: quantity not raised to {f.filled}")
            params = gtt_params(f.symbol, trig, limit, f.filled, ltp)
            kite.modify_gtt(gtt_id(keep), params["trigger_type"], params["tradingsymbol"], params["exchange"],
                            params["trigger_values"], params["last_price"], params["orders"])
            qty, action = f.filled, "modify"
        with store.transaction() as st:
            record_stop(st, f.symbol, stop=stop, source=source, gtt=gtt_id(keep), trigger_price=trig,
                        limit_price=limit, quantity=qty, now=now)
        return FillStop(f.symbol, action, gtt_id(keep), trig, qty, source)
    tick = tick_size(f.symbol)
    decision = stop_at_fill(f.scan_stop, f.average_price, None, ltp or None, tick, settings.buffer_percent,
                            settings.min_gap_percent)
    if ltp > 0 and not (decision.place and decision.source == SCAN_STOP):
        # No usable scan stop: the stop job's rule, which needs the previous session's low.
        decision = stop_at_fill(f.scan_stop, f.average_price, prev_low(f.symbol), ltp, tick,
                                settings.buffer_percent, settings.min_gap_percent)
    if decision.stop is None or not decision.place:
        return FillStop(f.symbol, "none", error=decision.reason or "no stop to place")
    lower = quote.get("lower_circuit_limit")
    limit = gtt_limit_price(decision.stop, settings.buffer_percent, tick, band_percent=fixed_band_percent(quote),
                            lower_circuit=float(lower) if lower else None)
    sent = send_stop_gtt(kite, intents, user, session, f.symbol, decision.stop, limit, f.filled, ltp)
    if sent.gtt_id is None:
        return FillStop(f.symbol, "none", error=sent.error)
    with store.transaction() as st:
        record_stop(st, f.symbol, stop=decision.stop, source=decision.source, gtt=sent.gtt_id,
                    trigger_price=decision.stop, limit_price=limit, quantity=f.filled, now=now)
    return FillStop(f.symbol, "create", sent.gtt_id, decision.stop, f.filled, decision.source, decision.reason)


def _report(home: Home, user: str, r: FillStop, log: logging.Logger) -> None:
    if r.error is not None:
        log.warning("%s: stop at the fill not placed: %s", r.symbol, r.error)
        events.stop(home, user, "stop_not_placed", r.symbol, f"stop at the fill not placed: {r.error}", daily=True)
        return
    if r.action == "record":
        log.info("%s: stop GTT %s at %.2f for %d shares already at the broker; recorded", r.symbol, r.gtt_id,
                 r.trigger or 0.0, r.quantity)
        return
    what = "placed" if r.action == "create" else "raised to"
    log.info("%s: stop GTT %s %s %d shares at %.2f (%s)%s", r.symbol, r.gtt_id, what, r.quantity, r.trigger or 0.0,
             r.source, f": {r.note}" if r.note else "")
    if r.source == "fallback":
        events.stop(home, user, "stop_fallback", r.symbol, str(r.note), daily=True)
    events.stop(home, user, "stop_placed" if r.action == "create" else "stop_moved", r.symbol,
                f"stop GTT at {r.trigger or 0.0:.2f} for {r.quantity} shares (at the fill)",
                key=f"fill|{r.gtt_id}|{r.quantity}")


class FillGuard:
    """The watchdog's part of the stop at the fill: on every poll while a bot entry of the session
    is open (or filled without a covering stop) it reads the order book and protects new fills
    (:func:`protect_fills`), so a fill seen after the entry run has its stop within one poll. An
    entry whose order is final and whose fills are covered is not looked at again; with none to
    watch, a poll costs one state read and no broker call. The GTT lock is waited for briefly
    (LOCK_TIMEOUT_S): the stop job may hold it for its whole run, and the next poll tries again."""

    LOCK_TIMEOUT_S = 5.0

    def __init__(self, *, kite: Any, store: Any, intents: IntentLog, market: Any, session: date,
                 settings: StopSettings, log: logging.Logger) -> None:
        self.kite, self.store, self.intents, self.market = kite, store, intents, market
        self.session, self.settings, self.log = session, settings, log
        self.done: set[str] = set()

    def poll(self, now: datetime) -> list[FillStop]:
        from kitefleet.errors import LockTimeout

        state = self.store.read()
        ids = entry_order_ids(state, self.session)
        watch = set(ids) - self.done
        if not watch:
            return []
        orders = list(self.kite.orders())
        try:
            result = protect_fills(self.kite, self.store, self.intents, self.store.home, self.store.user, orders,
                                   session=self.session, now=now, tick_size=self.market.tick_size,
                                   prev_low=prev_low_reader(self.market, now), settings=self.settings, log=self.log,
                                   lock_timeout=self.LOCK_TIMEOUT_S)
        except LockTimeout as exc:
            self.log.info("stop at the fill waits for the GTT lock (%s); next poll", exc)
            return []
        state = self.store.read()
        open_symbols = {f.symbol for f in uncovered(state, filled_entries(state, orders, self.session))}
        for o in orders:
            oid = str(o.get("order_id"))
            if oid in watch and o.get("status") in FINAL_ORDER_STATUSES and ids[oid] not in open_symbols:
                self.done.add(oid)
        return result
