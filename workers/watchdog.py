"""The hourly-candle watchdog's decisions: poll LTPs, apply the exit rule, exit once, then tidy the GTT.

Over 400 lines because the Watchdog class holds one process's whole poll (positions, levels,
entry timeouts, the loss limit and its flatten, ownership netting) around the pure per-poll
decision (decide_symbol, which the backtest calls); its exits (watchdog_exits), records
(exit_records), level thread (level_refresher) and scope (watchdog_scope) are already split off.

One process per user (workers.jobs.hourly_candle_watchdog is the job and runs the loop). Per poll
(``WATCHDOG_POLL_SECONDS`` of simulated time) it makes **one** batched ``ltp`` call for every
tracked position. Everything else is paced separately:

* tracked positions (holdings ``quantity + t1_quantity`` plus today's CNC net position,
  workers.portfolio) are re-read every POSITIONS_REFRESH_SECONDS, and freshly before each exit;
* the hourly levels are re-read once per completed hour of the current session (``hourly_low``;
  none before the first hourly candle completes, and for a position entered today none before a
  full candle after its first fill), spread over one poll interval; the daily candles for the ATR
  once per session from the shared cache (``atr_trailing``); both by a background thread
  (workers.level_refresher);
* the order book is read only while an exit is pending; the GTT list only after an exit filled;
* the daily loss limit (``MAX_DAILY_LOSS_PERCENT``, workers.loss_limit) is checked on each
  positions refresh: below it the user is halted until the next session's open; with
  ``LOSS_LIMIT_ACTION=flatten`` the same poll (and each positions refresh while that halt stands)
  sells every owned share through this watchdog's own exits (workers.flatten.sell_symbol), which
  its later polls reprice.

What to do with one symbol at one poll is a pure function, :func:`decide_symbol` (and
:func:`decide_poll` for all of them, which the backtest calls): inputs are the LTP, the tick, the
level, the symbol's exit records and now; outputs the reprices and the exit to make. Carrying
them out against the broker is workers.watchdog_exits; the exit records' state table is
workers.exit_records. The restart behaviour is the hourly_candle_watchdog table of
docs/restart-behaviour.md.

On-disk contract: ``state["watchdog"]`` in ``data/trading_state_<User>.json`` (StateStore),
written by this job only, and only when something changed (a level, a stop, an exit)::

    {"YYYY-MM-DD": {"rule": "hourly_low"|"atr_trailing", "updated_at": ISO,
      "poll_gaps": [[ISO from, ISO to], ...] (polls further apart than 3 intervals and 60 s),
      "symbols": {SYMBOL: {
        "entry": {"at": ISO first fill today, "price": float} (positions entered today only),
        "hourly": {"as_of": ISO start of the newest completed candle, "since": ISO (the open, or
                   the entry's first fill), "lows": [[ISO start, low], ...] (at most two),
                   "level": float|null, "applied_at": ISO (the poll from which this level is used)},
        "atr": {"atr": float|null, "anchor": float (entry price, then the highest LTP seen),
                "stop": float|null, "carried_from": date|null},
        "quotes": [[ISO, ltp], ...] (the fresh quotes read before an exit or a reprice, newest 20),
        "exits": [{"purpose", "tag", "rule", "level", "ltp", "price", "quantity", "decided_at",
                   "previous_poll_at": ISO (the poll before the deciding one), "quoted_at": ISO
                   (when the quote it was decided on was read),
                   "status": "sending"|"sent"|"unknown"|"rejected"|"blocked"|"not_sent"|"lost",
                   "order_id", "order_status", "filled", "note", "retry_after",
                   "modifications": int (reprice attempts), "repriced_at": ISO,
                   "gtt": {"synced_filled": int, "actions": [{"id", "action", "quantity", "at"}]}}]}}}}

KEEP_SESSIONS sessions are kept. The ATR anchor of a new position is its entry price; the anchor
and stop of a position held from before carry over from the newest earlier session (the stop only
moves up); a position entered today never inherits an earlier position's trail.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from kitefleet.calendar import NseCalendar, last_completed_hour
from kitefleet.clock import IST, Clock
from kitefleet.errors import BrokerTemporaryError
from kitefleet.halt import halt_file, halt_info
from kitefleet.states import ExitStatus, OrderStatus
from workers.bot_stop import FillGuard, StopSettings
from workers.entry_cancel import Deadline, cancel_open_entries, entry_deadlines
from workers.exit_records import exit_pending, merge_exit_records, next_exit_purpose
from workers.intents import IntentLog
from workers.level_refresher import LevelRefresher
from workers.marketdata import UnknownInstrument
from workers.portfolio import AccountSnapshot, snapshot
from workers.ratelimit import PER_SECOND, QUOTE, WINDOW_MARGIN_S
from workers.strategy.watchdog_rules import (
    RULE_ATR_TRAILING,
    RULE_HOURLY_LOW,
    ExitDecision,
    atr,
    atr_exit,
    atr_trailing_stop,
    clamp_to_band,
    exit_reprice,
    hourly_low_exit,
)
from workers.watchdog_exits import EXCHANGE, JOB, MAX_EXIT_MODIFICATIONS, ExitDesk, Reprice, Stats
from workers.watchdog_scope import ALL, OWN, OwnedView, needs_gtts, owned_view

__all__ = ["JOB", "STATE_KEY", "AtrTrail", "Stats", "SymbolActions", "SymbolView", "Watchdog", "decide_poll",
           "decide_symbol"]

STATE_KEY = "watchdog"
POSITIONS_REFRESH_SECONDS = 300
KEEP_SESSIONS = 10
#: a poll later than this many intervals (and at least POLL_GAP_MIN_SECONDS) after the one before
#: is a gap: recorded in the session's ``poll_gaps`` (at most MAX_POLL_GAPS) and logged
POLL_GAP_FACTOR = 3
POLL_GAP_MIN_SECONDS = 60
MAX_POLL_GAPS = 50
#: the fresh quotes a symbol's decisions were made on, kept per session (the newest)
QUOTES_KEPT = 20
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
    #: the lower circuit limit (``quote()``); None: not known (no clamp)
    lower: float | None = None


@dataclass(frozen=True)
class SymbolActions:
    symbol: str
    reprices: list[Reprice] = field(default_factory=list)
    exit: ExitDecision | None = None


def decide_symbol(rule: str, symbol: str, view: SymbolView, now: datetime) -> SymbolActions:
    """The reprices and the exit one poll makes for one symbol, from plain data. Every open
    SELL of the symbol that the watchdog follows (its exits, the bot's GTT child) is repriced
    when it rests above the market; prices never go below ``view.lower``."""
    reprices = []
    for e in view.exits:
        if e.get("status") != ExitStatus.SENT or e.get("order_status") != OrderStatus.OPEN or not e.get("order_id"):
            continue
        new = exit_reprice(float(e.get("price") or 0.0), view.ltp, view.tick, view.lower)
        if new is not None:
            capped = int(e.get("modifications") or 0) >= MAX_EXIT_MODIFICATIONS
            reprices.append(Reprice(str(e["tag"]), str(e["order_id"]), new, capped))
    if rule == RULE_ATR_TRAILING:
        decision = atr_exit(view.ltp, view.level, view.tick)
    else:
        decision = hourly_low_exit(view.ltp, view.level, view.tick)
    if decision is not None:
        decision = dataclasses.replace(decision, limit_price=clamp_to_band(decision.limit_price, view.lower,
                                                                           view.tick))
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


# --- positions entered today (pure) -----------------------------------------------------------
def entered_today(account: AccountSnapshot) -> set[str]:
    """Symbols held only through today's CNC buys: no holdings row with quantity or t1_quantity
    on NSE, and a positive NSE CNC net position."""
    before = {str(h.get("tradingsymbol", "")).upper() for h in account.holdings
              if str(h.get("exchange") or EXCHANGE).upper() == EXCHANGE
              and int(h.get("quantity") or 0) + int(h.get("t1_quantity") or 0) > 0}
    today = {str(p.get("tradingsymbol", "")).upper() for p in account.positions_net
             if p.get("product") == "CNC" and str(p.get("exchange") or EXCHANGE).upper() == EXCHANGE
             and int(p.get("quantity") or 0) > 0}
    return today - before


def _ist(value: Any) -> datetime | None:
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return None
    if not isinstance(value, datetime):
        return None
    return value.replace(tzinfo=IST) if value.tzinfo is None else value.astimezone(IST)


def first_buy_fills(trades: Sequence[Mapping[str, Any]]) -> dict[str, datetime]:
    """Symbol -> the ``exchange_timestamp`` of its first CNC BUY fill among ``trades`` (today's)."""
    out: dict[str, datetime] = {}
    for t in trades:
        if t.get("transaction_type") != "BUY" or t.get("product") not in (None, "CNC"):
            continue
        at = _ist(t.get("exchange_timestamp") or t.get("fill_timestamp"))
        sym = str(t.get("tradingsymbol", "")).upper()
        if at is not None and (sym not in out or at < out[sym]):
            out[sym] = at
    return out


# --- the watchdog ------------------------------------------------------------------------------
class Watchdog(ExitDesk):
    """The loop for one user and one session. ``kite`` is a workers.kite_client.KiteApi,
    ``market`` a workers.marketdata.MarketData, ``store`` a kitefleet.state.StateStore."""

    def __init__(self, *, user: str, kite: Any, market: Any, store: Any, calendar: NseCalendar,
                 clock: Clock, rule: str, poll_seconds: float, dry_run: bool, log: logging.Logger,
                 stop: threading.Event, positions_refresh_seconds: float = POSITIONS_REFRESH_SECONDS,
                 settle_grace_s: float = EXIT_SETTLE_GRACE_S, manage_scope: str = OWN,
                 loss_limit_percent: float | None = None, stop_settings: StopSettings | None = None,
                 loss_limit_action: str = "halt") -> None:
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
        #: the poll before the current one: an exit records it, with the time of the fresh quote
        #: it was decided on (the symbol's ``quotes``), so a replay can be checked against it
        #: (workers.backtest.compare)
        self.previous_poll_at: str | None = None
        self._last_look: datetime | None = None  # the last poll's start, whatever it found
        self._would_exit: set[tuple[str, float]] = set()
        self._carry: dict[str, Any] = {}
        self._loaded = False
        #: exit tag -> wall time (monotonic) its failed send was first seen unsettled by this process
        self._unsettled: dict[str, float] = {}
        self._said_mod_cap: set[str] = set()
        #: open SELL orders already looked up in the GTT list (a person's manual sell: once)
        self._sells_seen: set[str] = set()
        self.refresher = LevelRefresher(market, calendar, log, stop, clock.now)
        # Ownership (workers.watchdog_scope): what the bot may watch and sell of each symbol.
        self.scope_mode = manage_scope
        self.scope: OwnedView | None = None
        self._account: AccountSnapshot | None = None
        self._ledger_gtts: list[Any] = []
        self._state_sig: tuple[int, int] | None = None
        self._said_unmanaged: set[str] = set()
        #: (halt flag, state file) signatures when a halted poll last found no open bot entry
        self._halt_clean: tuple[Any, Any] | None = None
        #: MAX_DAILY_LOSS_PERCENT, checked on each positions refresh (workers.loss_limit); None: not here
        self.loss_limit_percent = loss_limit_percent
        #: LOSS_LIMIT_ACTION; True from a positions refresh that finds a loss-limit flatten due
        #: until the poll that sells (workers.loss_limit.flatten_due)
        self.loss_limit_action = loss_limit_action
        self._flatten_due = False
        self._said_flatten = False
        #: the session's entry deadlines (order id -> cancel_after), read again when the state file
        #: changes; the order ids whose timeout cancel is done (or that the book shows final)
        self._deadlines: tuple[Any, dict[str, Deadline]] = (None, {})
        self._timed_out: set[str] = set()
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
            # halt --flatten (workers.flatten) writes exit records of this session too: keep them.
            if merge_exit_records(snapshot_, wd.get(self.session.isoformat())):
                merge_exit_records(self.day, snapshot_)
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
        self._account = account
        # A fired bot stop's SELL carries no tag: only the GTT list tells it from a person's sale.
        state = self._read_state()
        self._ledger_gtts = (list(self.kite.get_gtts()) if self.scope_mode != ALL
                             and needs_gtts(account.orders, state.get("intents") or {}) else [])
        self._apply_scope(state, account)
        self._adopt_gtt_children(account.orders)
        self._update_exits(account.orders, now)
        self.next_positions = now + self.positions_refresh
        self._check_loss_limit(account, now)
        return account

    def _check_loss_limit(self, account: AccountSnapshot, now: datetime) -> None:
        if self.loss_limit_percent is None:
            return
        from workers import loss_limit

        try:
            loss_limit.check(self.kite, self.store.home, self.user, self.store, account, self.loss_limit_percent,
                             self.calendar, now, self.log, gtts=self._ledger_gtts or None, dry_run=self.dry_run)
            self._flatten_due = (self.loss_limit_action == loss_limit.FLATTEN and not self.dry_run
                                 and loss_limit.flatten_due(self.store.home, self.user, self.store.read(), now))
        except (BrokerTemporaryError, OSError) as exc:  # the next refresh looks again
            self.log.warning("daily loss limit not checked this refresh (%s)", exc)

    def _read_state(self) -> dict[str, Any]:
        try:
            st = self.store.path.stat()
            self._state_sig = (st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            self._state_sig = None
        state = self.store.read()
        # Exits another process of the user made (halt --flatten) are followed like our own.
        merge_exit_records(self.day, (state.get(STATE_KEY) or {}).get(self.session.isoformat()))
        return state

    def reread_scope_if_changed(self) -> None:
        """A ledger change (adopt, release, a stop or entry run) is seen at the next poll: the
        state file is looked at (one stat) every poll and re-read when it changed."""
        if self._account is None or self.scope_mode == ALL:
            return
        try:
            st = self.store.path.stat()
            sig: tuple[int, int] | None = (st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            sig = None
        if sig != self._state_sig:
            self._apply_scope(self._read_state(), self._account)

    def cancel_entries_if_halted(self, now: datetime) -> None:
        """A halted user's open bot entries are cancelled within one poll (workers.entry_cancel).
        The book is read while halted until a look finds none open, then again only when the
        halt flag or the state (a new entry intent) changes."""
        if self.dry_run:
            return
        path = halt_file(self.store.home, self.user)
        if halt_info(self.store.home, self.user, now) is None:
            self._halt_clean = None
            return
        try:
            st = path.stat()
            sig: tuple[Any, Any] = ((st.st_mtime_ns, st.st_size), self._state_sig)
        except FileNotFoundError:
            sig = (None, self._state_sig)
        if sig == self._halt_clean:
            return
        done = cancel_open_entries(self.kite, self.intents, self.user, self.session, self.log)
        if not any(c.error for c in done):
            self.reread_scope_if_changed()
            self._halt_clean = (sig[0], self._state_sig)

    def flatten_for_loss_limit(self, now: datetime) -> None:
        """LOSS_LIMIT_ACTION=flatten: every owned share still held is sold as halt --flatten sells
        it, by this watchdog's exits (the poll does not wait for the fills: its next polls reprice
        them, and the next positions refresh looks again at what is still held)."""
        from workers import loss_limit
        from workers.flatten import sell_symbol

        held = {s: q for s, q in sorted(self.tracked.items()) if q > 0}
        if held and not self._said_flatten:
            self._said_flatten = True
            self.log.warning("daily loss limit, LOSS_LIMIT_ACTION=flatten: selling every share the bot owns (%s) "
                             "through the watchdog's exits; a person's holdings are never sold",
                             ", ".join(f"{q} {s}" for s, q in held.items()))
        if now < self.closing:
            for symbol in held:
                sell_symbol(self, symbol, now, by=loss_limit.FLATTEN_BY)
        self._flatten_due = False  # after the sells: their own refreshes found it due again

    def cancel_entries_past_timeout(self, now: datetime) -> None:
        """An entry still open past its ``cancel_after`` (place_orders_daily was killed during its
        wait, or could not cancel) is cancelled on this poll (workers.entry_wait). The state is
        looked at with one stat a poll; the order book is read only when an entry is due."""
        if self.dry_run:
            return
        try:
            st = self.store.path.stat()
            sig: Any = (st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            sig = None
        if sig != self._deadlines[0]:
            self._deadlines = (sig, entry_deadlines(self.store.read().get("intents") or {}, self.session))
        due = {oid for oid, d in self._deadlines[1].items() if d.cancel_after <= now and oid not in self._timed_out}
        if not due:
            return
        done = cancel_open_entries(self.kite, self.intents, self.user, self.session, self.log, due_at=now)
        self._timed_out |= due - {c.order_id for c in done if c.error}
        if done:
            self.reread_scope_if_changed()

    def _apply_scope(self, state: Mapping[str, Any], account: AccountSnapshot) -> None:
        view = owned_view(state, account, self._ledger_gtts, self.session, self.scope_mode)
        self.scope = view
        for symbol in sorted(set(view.unmanaged) - self._said_unmanaged):
            self.log.info("not managing %d %s shares: not the bot's (MANAGE_SCOPE=own; adopt hands them over)",
                          view.unmanaged[symbol], symbol)
        self._said_unmanaged = set(view.unmanaged)
        self._track(dict(view.managed))

    def _track(self, held: dict[str, int]) -> None:
        for symbol in sorted(set(held) - set(self.tracked)):
            self.log.info("tracking %s: %d shares", symbol, held[symbol])
        for symbol in sorted(set(self.tracked) - set(held)):
            self.log.info("no longer tracking %s: nothing the bot manages is held", symbol)
        for symbol in list(held):
            if symbol not in self.ticks:
                try:
                    self.ticks[symbol] = self.market.tick_size(symbol)
                except UnknownInstrument as exc:
                    self.log.warning("not watching %s: %s", symbol, exc)
                    del held[symbol]
                    continue
        if self._account is not None:
            self._note_entries(self._account, held, self.clock.now())
            for symbol in held:
                self._init_trail(symbol, self._account)
        self.tracked = held

    def _note_entries(self, account: AccountSnapshot, held: Mapping[str, int], now: datetime) -> None:
        """Record, once, when and at what price each position entered today was first filled
        (``trades()``: read only when a new one appears). The hourly rule reads no candle that
        started before it; the ATR trail is anchored at the price."""
        new = [s for s in sorted(entered_today(account)) if s in held and not self.sym(s).get("entry")]
        if not new:
            return
        first = first_buy_fills(self.kite.trades())
        for symbol in new:
            at = first.get(symbol)
            if at is None:  # not in today's trades (cannot be, but then: no candle before now)
                self.log.warning("%s: entered today but no fill in today's trades; hourly candles from now", symbol)
            self.sym(symbol)["entry"] = {"at": (at or now).isoformat(), "price": account.average_price(symbol)}
            self.dirty = True

    def since(self, symbol: str) -> datetime:
        """The first instant an hourly candle of ``symbol`` may start at: the session open, or
        for a position entered today its first fill."""
        entry = (self.sym(symbol).get("entry") or {}).get("at")
        return max(self.opening, datetime.fromisoformat(entry)) if entry else self.opening

    def _init_trail(self, symbol: str, account: AccountSnapshot) -> None:
        if self.rule != RULE_ATR_TRAILING:
            return
        rec = self.sym(symbol)
        if rec.get("atr") is None:
            entry = rec.get("entry") or {}
            # A position entered today never inherits the trail of an earlier one in the symbol.
            prev = {} if entry else \
                ((next(iter(self._carry.values()), None) or {}).get("symbols") or {}).get(symbol) or {}
            prev_atr = prev.get("atr") or {}
            entry_price = entry.get("price") if entry else account.average_price(symbol)
            anchor = max(float(prev_atr.get("anchor") or 0.0), float(entry_price or 0.0))
            rec["atr"] = {"atr": None, "anchor": anchor, "stop": prev_atr.get("stop"),
                          "carried_from": next(iter(self._carry), None) if prev_atr else None}
            self.dirty = True

    # --- levels --------------------------------------------------------------------------------
    def schedule_levels(self, now: datetime) -> None:
        if self.rule == RULE_HOURLY_LOW:
            as_of = last_completed_hour(self.calendar, now)
            if as_of.date() != self.session:
                return  # no hourly candle of this session has completed: no level, nothing to read
            due = []
            for symbol in sorted(self.tracked):
                since = self.since(symbol)
                rec = self.sym(symbol)
                hourly = rec.get("hourly") or {}
                if hourly.get("as_of") == as_of.isoformat() and hourly.get("since") == since.isoformat():
                    continue
                if as_of < since:
                    # Entered after the newest completed candle began: none is eligible yet, and
                    # the broker stop protects the position meanwhile.
                    rec["hourly"] = {"as_of": as_of.isoformat(), "since": since.isoformat(), "lows": [],
                                     "level": None}
                    self.dirty = True
                    continue
                if now >= self.level_retry.get(symbol, (0, now))[1] and not self.refresher.busy(symbol, "hourly"):
                    due.append((symbol, since))
            # Spread over one poll interval rather than a burst at the hour (the historical limit
            # is shared with the user's other jobs).
            step = timedelta(seconds=self.poll_seconds / max(1, len(due)))
            for i, (symbol, since) in enumerate(due):
                self.refresher.submit(symbol, "hourly", as_of, since=since, not_before=now + i * step)
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
            old_hourly = rec.get("hourly") or {}
            # when this level took effect (it is first compared in this poll)
            applied = old_hourly.get("applied_at") if res.level == old else now.isoformat()
            rec["hourly"] = {"as_of": res.as_of, "since": res.since, "lows": res.lows, "level": res.level,
                             "applied_at": applied}
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

    def note_gap(self, now: datetime) -> None:
        """A poll that starts more than POLL_GAP_FACTOR intervals after the one before (a busy
        machine, a slow broker): for that time only the GTT stops watched the positions. Recorded
        (``poll_gaps``: [from, to]) so that a trader, or a replay checked against this session
        (workers.backtest.compare), can tell an exit the watchdog could not have seen."""
        last, self._last_look = self._last_look, now
        if last is None:
            return
        gap = (now - last).total_seconds()
        if gap <= max(POLL_GAP_FACTOR * self.poll_seconds, POLL_GAP_MIN_SECONDS):
            return
        gaps = self.day.setdefault("poll_gaps", [])
        if len(gaps) < MAX_POLL_GAPS:
            gaps.append([last.isoformat(), now.isoformat()])
            self.dirty = True
        self.log.warning("no poll from %s to %s (%.0f s; one every %g s expected): only the GTT stops watched "
                         "the positions meanwhile", last.strftime("%H:%M:%S"), now.strftime("%H:%M:%S"), gap,
                         self.poll_seconds)

    def poll(self, now: datetime) -> None:
        self.note_gap(now)
        self.apply_levels(now)
        if now >= self.next_positions:
            self.refresh_positions(now)
        else:
            self.reread_scope_if_changed()
        self.cancel_entries_if_halted(now)
        if self._flatten_due:
            self.flatten_for_loss_limit(now)
        self.cancel_entries_past_timeout(now)
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
            self.previous_poll_at, self.stats.last_poll_at = self.stats.last_poll_at, now.isoformat()
            for symbol in symbols:
                quote = quotes.get(f"{EXCHANGE}:{symbol}") or {}
                ltp = float(quote.get("last_price") or 0.0)
                if ltp <= 0:
                    continue
                # One symbol at a time: an exit refreshes the positions and the book, and the
                # next symbol is decided on what that refresh found.
                view = SymbolView(ltp, self.ticks[symbol], self.level(symbol, ltp), self.sym(symbol)["exits"])
                actions = decide_symbol(self.rule, symbol, view, self.clock.now())
                if actions.reprices or actions.exit is not None:
                    # About to write: decide again on a fresh quote, which has the circuit band
                    # (the LTP poll does not), so no sell is priced outside it.
                    view = self.quoted(symbol, view)
                    ltp = view.ltp
                    actions = decide_symbol(self.rule, symbol, view, self.clock.now())
                self.reprice(symbol, ltp, now, actions.reprices)
                if actions.exit is not None:
                    self.exit(symbol, actions.exit, now)
        self.flush()

    def quoted(self, symbol: str, view: SymbolView) -> SymbolView:
        """``view`` with the LTP and lower circuit limit of one ``quote()`` call."""
        row = self.kite.quote(f"{EXCHANGE}:{symbol}").get(f"{EXCHANGE}:{symbol}") or {}
        ltp = float(row.get("last_price") or 0.0) or view.ltp
        # what each decision was made on (the last QUOTES_KEPT): the poll's LTP can say "sell" and
        # this fresh quote "not now" (a replay checked against the session reads these)
        quotes = self.sym(symbol).setdefault("quotes", [])
        quotes.append([self.clock.now().isoformat(), ltp])
        del quotes[:-QUOTES_KEPT]
        self.dirty = True
        lower = float(row.get("lower_circuit_limit") or 0.0) or None
        return dataclasses.replace(view, ltp=ltp, lower=lower)

    def note_speed(self) -> None:
        speed = self.clock.speed
        if self.stats.rate_limited or speed == self._said_speed:
            return
        self._said_speed = speed
        # the limiter's quote window in wall seconds (workers.ratelimit: market seconds under a
        # clock faster than real time)
        window = 1.0 / PER_SECOND[QUOTE] / max(1.0, speed) + WINDOW_MARGIN_S
        if self.poll_seconds / speed < window:
            self.stats.rate_limited = True
            self.log.warning(
                "WATCHDOG_POLL_SECONDS=%g is %.2f wall s at clock speed %g, but Kite allows one quote "
                "request per second: polling as often as that allows (about every %.0f simulated s)",
                self.poll_seconds, self.poll_seconds / speed, speed, window * speed)
