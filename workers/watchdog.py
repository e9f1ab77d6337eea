"""The hourly-candle watchdog's decisions: poll LTPs, apply the exit rule, exit once, then tidy the GTT.

One process per user (workers.jobs.hourly_candle_watchdog is the job and runs the loop). Per poll
(``WATCHDOG_POLL_SECONDS`` of simulated time) it makes **one** batched ``ltp`` call for every
tracked position. Everything else is paced separately:

* tracked positions (holdings ``quantity + t1_quantity`` plus today's CNC net position,
  workers.portfolio) are re-read every POSITIONS_REFRESH_SECONDS, and freshly before each exit;
* the hourly levels are re-read once per completed hour (``hourly_low``), the daily candles for
  the ATR once per session (``atr_trailing``), by a background thread (workers.level_refresher);
* the order book is read only while an exit is pending; the GTT list only after an exit filled.

What to do with one symbol at one poll is a pure function, :func:`decide_symbol` (and
:func:`decide_poll` for all of them, which the backtest calls): inputs are the LTP, the tick, the
level, the symbol's exit records and now; outputs the reprices and the exit to make. Carrying
them out against the broker is workers.watchdog_exits; the exit records' state table is
workers.exit_records. The restart behaviour is the hourly_candle_watchdog table of
docs/restart-behaviour.md.

On-disk contract: ``state["watchdog"]`` in ``data/trading_state_<User>.json`` (StateStore),
written by this job only, and only when something changed (a level, a stop, an exit)::

    {"YYYY-MM-DD": {"rule": "hourly_low"|"atr_trailing", "updated_at": ISO,
      "symbols": {SYMBOL: {
        "hourly": {"as_of": ISO start of the newest completed candle used,
                   "lows": [[ISO start, low], [ISO start, low]], "level": float|null},
        "atr": {"atr": float|null, "anchor": float, "stop": float|null, "carried_from": date|null},
        "exits": [{"purpose", "tag", "rule", "level", "ltp", "price", "quantity", "decided_at",
                   "status": "sending"|"sent"|"unknown"|"rejected"|"blocked"|"not_sent"|"lost",
                   "order_id", "order_status", "filled", "note", "retry_after",
                   "modifications": int (reprice attempts), "repriced_at": ISO,
                   "gtt": {"synced_filled": int, "actions": [{"id", "action", "quantity", "at"}]}}]}}}}

KEEP_SESSIONS sessions are kept. The ATR anchor and stop carry over from the newest earlier
session (the stop only moves up).
"""

from __future__ import annotations

import copy
import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from kitefleet.calendar import NseCalendar, last_completed_hour
from kitefleet.clock import Clock
from kitefleet.states import ExitStatus, OrderStatus
from workers.bot_stop import FillGuard, StopSettings
from workers.exit_records import exit_pending, next_exit_purpose
from workers.intents import IntentLog
from workers.level_refresher import LevelRefresher
from workers.marketdata import UnknownInstrument
from workers.portfolio import AccountSnapshot, held_quantities, snapshot
from workers.ratelimit import PER_SECOND, QUOTE, WINDOW_MARGIN_S
from workers.strategy.watchdog_rules import (
    RULE_ATR_TRAILING,
    RULE_HOURLY_LOW,
    ExitDecision,
    atr,
    atr_exit,
    atr_trailing_stop,
    exit_reprice,
    hourly_low_exit,
)
from workers.watchdog_exits import EXCHANGE, JOB, MAX_EXIT_MODIFICATIONS, ExitDesk, Reprice, Stats

__all__ = ["JOB", "STATE_KEY", "AtrTrail", "Stats", "SymbolActions", "SymbolView", "Watchdog", "decide_poll",
           "decide_symbol"]

STATE_KEY = "watchdog"
POSITIONS_REFRESH_SECONDS = 300
KEEP_SESSIONS = 10
#: a refresh that does not yet show the expected newest candle is retried this often, then accepted
LEVEL_TRIES = 3
LEVEL_RETRY_SECONDS = 10
#: an exit whose send failed and whose tag the order book still does not show this many wall
#: seconds later (and at least one poll later) is given up: resent under its own tag if it never
#: reached the broker, under the next purpose's tag if it may have (Watchdog's ``settle_grace_s``)
EXIT_SETTLE_GRACE_S = 3.0


@dataclass
class AtrTrail:
    """The ATR trailing stop of one symbol: the anchor is the highest LTP seen, the stop only rises."""

    candles: list[Any]
    anchor: float = 0.0
    stop: float | None = None

    def update(self, ltp: float, tick: float) -> bool:
        """Feed one LTP; True when the stop moved (up)."""
        self.anchor = max(self.anchor, ltp)
        new = atr_trailing_stop(self.stop, self.candles, self.anchor, tick)
        if new is not None and (self.stop is None or new > self.stop):
            self.stop = new
            return True
        return False


# --- the per-poll decision (pure) --------------------------------------------------------------
@dataclass(frozen=True)
class SymbolView:
    """What one poll knows about one held symbol."""

    ltp: float
    tick: float
    #: the hourly-low level, or the ATR trailing stop after this LTP; None: no level yet
    level: float | None
    exits: Sequence[Mapping[str, Any]] = ()


@dataclass(frozen=True)
class SymbolActions:
    symbol: str
    reprices: list[Reprice] = field(default_factory=list)
    exit: ExitDecision | None = None


def decide_symbol(rule: str, symbol: str, view: SymbolView, now: datetime) -> SymbolActions:
    """The reprices and the exit one poll makes for one symbol, from plain data."""
    reprices = []
    for e in view.exits:
        if e.get("status") != ExitStatus.SENT or e.get("order_status") != OrderStatus.OPEN or not e.get("order_id"):
            continue
        new = exit_reprice(float(e.get("price") or 0.0), view.ltp, view.tick)
        if new is not None:
            capped = int(e.get("modifications") or 0) >= MAX_EXIT_MODIFICATIONS
            reprices.append(Reprice(str(e["tag"]), str(e["order_id"]), new, capped))
    if rule == RULE_ATR_TRAILING:
        decision = atr_exit(view.ltp, view.level, view.tick)
    else:
        decision = hourly_low_exit(view.ltp, view.level, view.tick)
    # An unresolved intent of another purpose (yesterday's entry) never stops an exit: exits are
    # sized as held minus the sells already open, which cannot oversell.
    if decision is not None and exit_pending(view.exits):
        decision = None
    retry_after = next((e.get("retry_after") for e in reversed(view.exits) if e.get("retry_after")), None)
    if decision is not None and retry_after and now.isoformat() < retry_after:
        decision = None
    if decision is not None and next_exit_purpose(view.exits) is None:
        decision = None
    return SymbolActions(symbol, reprices, decision)


def decide_poll(rule: str, views: Mapping[str, SymbolView], now: datetime) -> list[SymbolActions]:
    """:func:`decide_symbol` for every symbol with a price, in symbol order (what one poll does
    when no exit in it changes the book)."""
    return [decide_symbol(rule, s, views[s], now) for s in sorted(views) if views[s].ltp > 0]


# --- the watchdog ------------------------------------------------------------------------------
class Watchdog(ExitDesk):
    """The loop for one user and one session. ``kite`` is a workers.kite_client.KiteApi,
    ``market`` a workers.marketdata.MarketData, ``store`` a kitefleet.state.StateStore."""

    def __init__(self, *, user: str, kite: Any, market: Any, store: Any, calendar: NseCalendar,
                 clock: Clock, rule: str, poll_seconds: float, dry_run: bool, log: logging.Logger,
                 stop: threading.Event, positions_refresh_seconds: float = POSITIONS_REFRESH_SECONDS,
                 settle_grace_s: float = EXIT_SETTLE_GRACE_S, stop_settings: StopSettings | None = None) -> None:
        if rule not in (RULE_HOURLY_LOW, RULE_ATR_TRAILING):
            raise ValueError(f"unknown watchdog rule {rule!r}")
        self.user, self.kite, self.market, self.store = user, kite, market, store
        self.calendar, self.clock, self.rule = calendar, clock, rule
        self.poll_seconds = float(poll_seconds)
        self.dry_run, self.log, self.stop = dry_run, log, stop
        self.positions_refresh = timedelta(seconds=positions_refresh_seconds)
        self.settle_grace_s = settle_grace_s
        self.intents = IntentLog(store)
        self.stats = Stats()
        now = clock.now()
        self.session = now.date()
        self.opening, self.closing = calendar.session_bounds(self.session)
        self.day: dict[str, Any] = {"rule": rule, "symbols": {}}
        self.tracked: dict[str, int] = {}
        self.ticks: dict[str, float] = {}
        self.trails: dict[str, AtrTrail] = {}
        self.level_retry: dict[str, tuple[int, datetime]] = {}
        self.dirty = False
        self.next_positions: datetime = now
        self._said_speed: float | None = None
        self._would_exit: set[tuple[str, float]] = set()
        self._carry: dict[str, Any] = {}
        self._loaded = False
        #: exit tag -> wall time (monotonic) its failed send was first seen unsettled by this process
        self._unsettled: dict[str, float] = {}
        self._said_mod_cap: set[str] = set()
        self.refresher = LevelRefresher(market, calendar, log, stop, clock.now)
        # Fills of the session's entries seen after the entry run get their broker stop here.
        self.fill_guard = FillGuard(kite=kite, store=store, intents=self.intents, market=market,
                                    session=self.session, settings=stop_settings or StopSettings(), log=log)

    # --- state ---------------------------------------------------------------------------------
    def sym(self, symbol: str) -> dict[str, Any]:
        return self.day["symbols"].setdefault(symbol, {"hourly": None, "atr": None, "exits": []})

    def load(self) -> None:
        data = self.store.read().get(STATE_KEY) or {}
        today = data.get(self.session.isoformat())
        if isinstance(today, dict):
            self.day = copy.deepcopy(today)
            self.day.setdefault("symbols", {})
        self.day["rule"] = self.rule
        earlier = sorted(k for k in data if k < self.session.isoformat())
        self._carry = {k: data[k] for k in earlier[-1:]}  # newest earlier session, for ATR carry-over

    def flush(self, force: bool = False) -> None:
        if self.dry_run or not (self.dirty or force):
            return
        self.day["updated_at"] = self.clock.now().isoformat()
        snapshot_ = copy.deepcopy(self.day)
        with self.store.transaction() as state:
            wd = state.get(STATE_KEY)
            if not isinstance(wd, dict):
                wd = state[STATE_KEY] = {}
            wd[self.session.isoformat()] = snapshot_
            for old in sorted(wd)[:-KEEP_SESSIONS]:
                del wd[old]
        self.dirty = False

    # --- start ---------------------------------------------------------------------------------
    def start(self) -> None:
        """Load the state, reconcile, read the positions. Safe to call again after a failure
        (the state is loaded once; what was changed since is flushed, not re-read)."""
        if not self._loaded:
            self.load()
            self._loaded = True
        if not self.dry_run:
            report = self.intents.reconcile(self.kite)
            if report.checked:
                self.log.info("%s", report.summary())
            self._adopt_exit_intents()
        self.refresh_positions(self.clock.now())
        self.note_speed()

    # --- positions -----------------------------------------------------------------------------
    def refresh_positions(self, now: datetime, account: AccountSnapshot | None = None) -> AccountSnapshot:
        account = account or snapshot(self.kite)
        held = held_quantities(account)
        for symbol in sorted(set(held) - set(self.tracked)):
            self.log.info("tracking %s: %d shares", symbol, held[symbol])
        for symbol in sorted(set(self.tracked) - set(held)):
            self.log.info("no longer tracking %s: nothing held", symbol)
        for symbol in list(held):
            if symbol not in self.ticks:
                try:
                    self.ticks[symbol] = self.market.tick_size(symbol)
                except UnknownInstrument as exc:
                    self.log.warning("not watching %s: %s", symbol, exc)
                    del held[symbol]
                    continue
            self._init_trail(symbol)
        self.tracked = held
        self._update_exits(account.orders, now)
        self.next_positions = now + self.positions_refresh
        return account

    def _init_trail(self, symbol: str) -> None:
        if self.rule != RULE_ATR_TRAILING:
            return
        rec = self.sym(symbol)
        if rec.get("atr") is None:
            prev = ((next(iter(self._carry.values()), {}) or {}).get("symbols") or {}).get(symbol) or {}
            prev_atr = prev.get("atr") or {}
            rec["atr"] = {"atr": None, "anchor": float(prev_atr.get("anchor") or 0.0),
                          "stop": prev_atr.get("stop"),
                          "carried_from": next(iter(self._carry), None) if prev_atr else None}
            self.dirty = True

    # --- levels --------------------------------------------------------------------------------
    def schedule_levels(self, now: datetime) -> None:
        if self.rule == RULE_HOURLY_LOW:
            as_of = last_completed_hour(self.calendar, now)
            for symbol in self.tracked:
                hourly = self.sym(symbol).get("hourly") or {}
                if hourly.get("as_of") == as_of.isoformat():
                    continue
                if now >= self.level_retry.get(symbol, (0, now))[1]:
                    self.refresher.submit(symbol, "hourly", as_of)
        else:
            for symbol in self.tracked:
                if symbol not in self.trails and now >= self.level_retry.get(symbol, (0, now))[1]:
                    self.refresher.submit(symbol, "daily", now)

    def apply_levels(self, now: datetime) -> None:
        for res in self.refresher.drain():
            if res.error is not None:
                self.stats.errors += 1
                self.log.warning("candles of %s not refreshed (%s); the previous level stays in use",
                                 res.symbol, res.error)
                self.level_retry[res.symbol] = (0, now + timedelta(seconds=LEVEL_RETRY_SECONDS))
                continue
            if res.kind == "daily":
                rec = self.sym(res.symbol)
                trail_state = rec.get("atr") or {}
                value = atr(res.candles)
                self.trails[res.symbol] = AtrTrail(res.candles, float(trail_state.get("anchor") or 0.0),
                                                   trail_state.get("stop"))
                if value is None:
                    self.log.warning("%s: fewer than 21 daily candles; no ATR stop", res.symbol)
                trail_state["atr"] = value
                rec["atr"] = trail_state
                self.dirty = True
                continue
            tries = self.level_retry.get(res.symbol, (0, now))[0] + 1
            if not res.complete and tries < LEVEL_TRIES:
                self.level_retry[res.symbol] = (tries, now + timedelta(seconds=LEVEL_RETRY_SECONDS))
                self.log.debug("%s: candle of %s not served yet; retrying", res.symbol, res.as_of)
                continue
            self.level_retry.pop(res.symbol, None)
            rec = self.sym(res.symbol)
            old = (rec.get("hourly") or {}).get("level")
            rec["hourly"] = {"as_of": res.as_of, "lows": res.lows, "level": res.level}
            self.dirty = True
            if res.level != old:
                self.log.info("%s: hourly low level %s (lows %s)", res.symbol, res.level,
                              ", ".join(f"{t[11:16]} {low}" for t, low in res.lows))

    # --- the poll ------------------------------------------------------------------------------
    def level(self, symbol: str, ltp: float) -> float | None:
        """The level the rule compares this LTP with: the hourly-low level, or the ATR trailing
        stop after feeding it this LTP (the anchor is the highest LTP seen; the stop only rises)."""
        rec = self.sym(symbol)
        if self.rule != RULE_ATR_TRAILING:
            return (rec.get("hourly") or {}).get("level")
        trail = self.trails.get(symbol)
        if trail is None:
            return None
        if trail.update(ltp, self.ticks[symbol]):
            rec["atr"].update(anchor=trail.anchor, stop=trail.stop)
            self.dirty = True
            self.log.info("%s: ATR stop raised to %s (anchor %s)", symbol, trail.stop, trail.anchor)
        return trail.stop

    def poll(self, now: datetime) -> None:
        self.apply_levels(now)
        if now >= self.next_positions:
            self.refresh_positions(now)
        self.schedule_levels(now)
        if exit_pending([e for s in self.day["symbols"].values() for e in s["exits"]]):
            self._update_exits(self.kite.orders(), now)
        if not self.dry_run and self.fill_guard.poll(now):
            self.refresh_positions(now)  # newly filled shares are tracked from this poll on
        symbols = sorted(self.tracked)
        if symbols:
            quotes = self.kite.ltp(*[f"{EXCHANGE}:{s}" for s in symbols])
            self.stats.polls += 1
            self.stats.first_poll_at = self.stats.first_poll_at or now.isoformat()
            self.stats.last_poll_at = now.isoformat()
            for symbol in symbols:
                quote = quotes.get(f"{EXCHANGE}:{symbol}") or {}
                ltp = float(quote.get("last_price") or 0.0)
                if ltp <= 0:
                    continue
                # One symbol at a time: an exit refreshes the positions and the book, and the
                # next symbol is decided on what that refresh found.
                view = SymbolView(ltp, self.ticks[symbol], self.level(symbol, ltp), self.sym(symbol)["exits"])
                actions = decide_symbol(self.rule, symbol, view, self.clock.now())
                self.reprice(symbol, ltp, now, actions.reprices)
                if actions.exit is not None:
                    self.exit(symbol, actions.exit, now)
        self.flush()

    def note_speed(self) -> None:
        speed = self.clock.speed
        if self.stats.rate_limited or speed == self._said_speed:
            return
        self._said_speed = speed
        window = (1.0 + WINDOW_MARGIN_S) / PER_SECOND[QUOTE]
        if self.poll_seconds / speed < window:
            self.stats.rate_limited = True
            self.log.warning(
                "WATCHDOG_POLL_SECONDS=%g is %.2f wall s at clock speed %g, but Kite allows one quote "
                "request per second: polling as often as that allows (about every %.0f simulated s)",
                self.poll_seconds, self.poll_seconds / speed, speed, window * speed)
