"""The hourly-candle watchdog's loop: poll LTPs, apply the exit rule, exit once, then tidy the GTT.

One process per user (workers.jobs.hourly_candle_watchdog is the job glue). Per poll
(``WATCHDOG_POLL_SECONDS`` of simulated time) it makes **one** batched ``ltp`` call for every
tracked position. Everything else is paced separately:

* tracked positions (holdings ``quantity + t1_quantity`` plus today's CNC net position,
  workers.portfolio) are re-read every POSITIONS_REFRESH_SECONDS, and freshly before each exit;
* the hourly levels are re-read once per completed hour (``hourly_low``), the daily candles for
  the ATR once per session (``atr_trailing``), by a background thread (LevelRefresher) so that an
  hour boundary with many positions never delays a poll; until a symbol's new level arrives the
  previous one stays in use;
* the order book is read only while an exit is pending; the GTT list only after an exit filled.

When the clock runs so fast that one poll interval is less than a wall second (Kite allows one
quote request per second), the polls come as fast as the shared limiter lets them, and a warning
says so once. A failed poll (broker unreachable after the client's retries) is logged and the
loop goes on: the GTT stays the backstop meanwhile. A failed *start* (the first reconcile or
positions read) is retried the same way, with back-off (START_RETRY_SECONDS doubling to
START_RETRY_MAX_SECONDS of simulated time) until the close; a TokenError still ends the job.

Exits go through workers.intents (tag = make_tag(user, JOB, session, symbol, "exit"|"exit2"|
"exit3")): at most MAX_EXIT_ATTEMPTS per symbol and session, never while one is pending, each
sized as held minus the CNC sells already open. No tag ever names two orders: a tag is sent again
only when it provably never reached the broker. An unresolved intent of another purpose (e.g.
yesterday's entry) does not stop an exit (workers.intents lets protective writes through). A
send that fails does not leave the symbol pending for the session:

* refused before it was processed (429 after the client's retries, connection refused: the
  intent is still ``pending``, or was never recorded because the reconcile read before it
  failed): ``not_sent`` at once, intent failed; the next poll may send the same tag;
* outcome unknown (WriteOutcomeUnknown: intent ``unknown``), or a ``sending`` record left by a
  killed process: while its tag is not in the book, after EXIT_SETTLE_GRACE_S wall seconds (and
  at least one more poll) it is settled: never recorded or ``pending`` → ``not_sent`` (same tag);
  ``unknown`` → intent failed, record ``lost`` (the next exit uses the next purpose's tag). A
  ``lost`` exit that shows up in the book after all is adopted as sent.

Exit prices come from watchdog_rules (marketable after a gap through the level). An exit that is
OPEN while the LTP has fallen below its limit is modified (one full replacement of type, quantity
and price) down to LTP × 0.995 floored to the tick, at most MAX_EXIT_MODIFICATIONS times
(Kite refuses the 26th); the modification counts are in the record.

After an exit fills, every **bot stop** GTT of the symbol (workers.gtt: the one predicate shared
with update_cnc_stoploss and doctor) is deleted (nothing left) or its leg reduced to the quantity
still held, so the broker-side stop cannot sell shares already sold. A person's GTT (OCO,
take-profit, a stop the bot did not place) is never changed: one that now sells more than is held
is reported with a WARNING (and by doctor). That step runs under kitefleet.locks.gtt_lock
(update_cnc_stoploss takes it around its plan-and-apply) and reads the holdings, the GTT list and
the stop record inside it.

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
session (the stop only moves up). Restart behaviour:

    situation at restart                          outcome
    -------------------------------------------   -------------------------------------------------
    levels of the current hour in the state       used as they are: no candle request
    exit sent, id recorded                        pending until the book shows it done; not resent
    killed after the send, before the record      reconcile finds the order by tag; not resent
    killed after the intent, before the send      intent marked failed (not in the book); the rule
                                                  decides again, the same tag is reused if it fires
    killed during the pre-send reconcile (no      record "sending" without an intent: not_sent
      intent yet)                                 after the grace; the same tag is reused
    write outcome unknown, not in the book        intent failed, record lost; a new tag if it fires
    exit open above the market                    modified down to the marketable limit
    exit filled, GTT not yet tidied               GTT tidied at start
    broker failing at start                       start retried with back-off until the close
"""

from __future__ import annotations

import contextlib
import copy
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from kitefleet.calendar import NseCalendar
from kitefleet.clock import IST, Clock
from kitefleet.errors import BrokerTemporaryError, KitefleetError, ReconcileError
from kitefleet.locks import gtt_lock
from kitefleet.states import TERMINAL, ExitStatus, OrderStatus
from workers.broker_errors import BrokerRejected
from workers.exit_records import (
    PENDING_STATUSES,
    exit_pending,
    move,
    new_record,
    next_exit_purpose,
)
from workers.gtt import DELETE, cuts_after_exit, reduced_legs, stop_ownership
from workers.intents import (
    FAILED,
    PENDING,
    RESOLVED,
    SENT,
    UNKNOWN,
    UNRESOLVED,
    IntentLog,
    make_tag,
    send_order_once,
)
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
    completed_hourly_candles,
    exit_order_params,
    exit_reprice,
    hourly_low_exit,
    hourly_low_level,
)

JOB = "hourly_candle_watchdog"
STATE_KEY = "watchdog"
EXCHANGE = "NSE"
POSITIONS_REFRESH_SECONDS = 300
KEEP_SESSIONS = 10
ATR_LOOKBACK_DAYS = 45
#: a refresh that does not yet show the expected newest candle is retried this often, then accepted
LEVEL_TRIES = 3
LEVEL_RETRY_SECONDS = 10
#: an exit whose send failed and whose tag the order book still does not show this many wall
#: seconds later (and at least one poll later) is given up: resent under its own tag if it never
#: reached the broker, under the next purpose's tag if it may have
EXIT_SETTLE_GRACE_S = 3.0
#: modifications of one exit order at most (Kite refuses the 26th)
MAX_EXIT_MODIFICATIONS = 10
#: back-off between failed starts (simulated seconds), doubling up to the cap
START_RETRY_SECONDS = 5.0
START_RETRY_MAX_SECONDS = 60.0
#: how long the GTT tidy step waits for update_cnc_stoploss to finish with the GTT list
GTT_LOCK_TIMEOUT_S = 60.0
HOUR = timedelta(hours=1)


# --- pure helpers ----------------------------------------------------------------------------
def hourly_starts(calendar: NseCalendar, day: date) -> list[datetime]:
    """Kite's 60minute candle starts of a session: open, open + 1 h, ... before the close."""
    opening, closing = calendar.session_bounds(day)
    starts, at = [], opening
    while at < closing:
        starts.append(at)
        at += HOUR
    return starts


def last_completed_hour(calendar: NseCalendar, now: datetime) -> datetime:
    """Start of the newest hourly candle complete at ``now`` (each ends an hour after its start,
    the last at the close); before today's first one completes, the previous session's last."""
    day = now.astimezone(IST).date()
    if calendar.is_trading_day(day):
        closing = calendar.session_bounds(day)[1]
        done = [s for s in hourly_starts(calendar, day) if min(s + HOUR, closing) <= now]
        if done:
            return done[-1]
    return hourly_starts(calendar, calendar.previous_trading_day(day))[-1]


def pending_sell_quantity(orders: Iterable[Mapping[str, Any]], symbol: str) -> int:
    """Shares of ``symbol`` already on their way out: open CNC SELL orders (a fired GTT's, a
    manual one). Selling them again would be refused by the broker or oversell."""
    total = 0
    for o in orders:
        if str(o.get("tradingsymbol", "")).upper() != symbol or o.get("transaction_type") != "SELL":
            continue
        if o.get("product") != "CNC" or o.get("status") in TERMINAL:
            continue
        total += int(o.get("pending_quantity") or 0) or (int(o.get("quantity") or 0)
                                                         - int(o.get("filled_quantity") or 0))
    return max(total, 0)


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


# --- the candle refresher --------------------------------------------------------------------
@dataclass(frozen=True)
class LevelResult:
    symbol: str
    kind: str  # "hourly" | "daily"
    as_of: str
    lows: list[list[Any]] = field(default_factory=list)
    level: float | None = None
    complete: bool = True
    candles: list[Any] = field(default_factory=list)
    error: str | None = None


class LevelRefresher:
    """One background thread fetching candles (the historical class has its own rate limit, so
    it never slows the LTP polls). ``submit`` is idempotent while a request is in flight."""

    def __init__(self, market: Any, calendar: NseCalendar, log: logging.Logger,
                 stop: threading.Event, now: Callable[[], datetime]) -> None:
        self.market, self.calendar, self.log, self.stop, self.now = market, calendar, log, stop, now
        self._todo: queue.Queue[tuple[str, str, datetime]] = queue.Queue()
        self._done: queue.Queue[LevelResult] = queue.Queue()
        self._inflight: set[tuple[str, str]] = set()
        self._lock = threading.Lock()
        self._halt = threading.Event()
        self._thread = threading.Thread(target=self._run, name="level-refresher", daemon=True)
        self._thread.start()

    def submit(self, symbol: str, kind: str, as_of: datetime) -> bool:
        with self._lock:
            if (symbol, kind) in self._inflight:
                return False
            self._inflight.add((symbol, kind))
        self._todo.put((symbol, kind, as_of))
        return True

    def busy(self, symbol: str, kind: str) -> bool:
        with self._lock:
            return (symbol, kind) in self._inflight

    def drain(self) -> list[LevelResult]:
        out = []
        while True:
            try:
                result = self._done.get_nowait()
            except queue.Empty:
                return out
            with self._lock:
                self._inflight.discard((result.symbol, result.kind))
            out.append(result)

    def close(self, timeout: float) -> None:
        """Stop after the request in flight (a daemon thread: a hung request cannot hold the exit)."""
        self._halt.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        while not (self.stop.is_set() or self._halt.is_set()):
            try:
                symbol, kind, as_of = self._todo.get(timeout=0.2)
            except queue.Empty:
                continue
            try:
                result = self._hourly(symbol, as_of) if kind == "hourly" else self._daily(symbol, as_of)
            except (KitefleetError, OSError, ValueError, KeyError) as exc:
                result = LevelResult(symbol, kind, as_of.isoformat(), error=f"{type(exc).__name__}: {exc}")
            except Exception as exc:  # a bug here must not kill the thread silently
                self.log.exception("candle refresh of %s failed", symbol)
                result = LevelResult(symbol, kind, as_of.isoformat(), error=f"{type(exc).__name__}: {exc}")
            self._done.put(result)

    def _hourly(self, symbol: str, as_of: datetime) -> LevelResult:
        day = as_of.date()
        now = self.now()
        candles = self.market.hourly_candles(symbol, self.calendar.previous_trading_day(day), now.date(),
                                             now=now)
        done = [c for c in completed_hourly_candles(candles, now) if _start(c.date) <= as_of]
        last_two = done[-2:]
        lows = [[_start(c.date).isoformat(), c.low] for c in last_two]
        complete = bool(last_two) and _start(last_two[-1].date) == as_of and len(last_two) == 2
        return LevelResult(symbol, "hourly", as_of.isoformat(), lows, hourly_low_level(last_two), complete)

    def _daily(self, symbol: str, as_of: datetime) -> LevelResult:
        last = self.calendar.last_completed_session(self.now())
        candles = self.market.daily_candles(symbol, last - timedelta(days=ATR_LOOKBACK_DAYS), last,
                                            last_completed=last)
        return LevelResult(symbol, "daily", as_of.isoformat(), candles=candles)


def _start(when: datetime | date) -> datetime:
    if not isinstance(when, datetime):
        return datetime.combine(when, datetime.min.time(), IST)
    return when.replace(tzinfo=IST) if when.tzinfo is None else when.astimezone(IST)


# --- the watchdog ----------------------------------------------------------------------------
@dataclass
class Stats:
    started: bool = False
    polls: int = 0
    exits_placed: int = 0
    exits_planned: list[dict[str, Any]] = field(default_factory=list)
    gtt_actions: int = 0
    rate_limited: bool = False
    errors: int = 0
    first_poll_at: str | None = None
    last_poll_at: str | None = None


class Watchdog:
    """The loop for one user and one session. ``kite`` is a workers.kite_client.KiteApi,
    ``market`` a workers.marketdata.MarketData, ``store`` a kitefleet.state.StateStore."""

    def __init__(self, *, user: str, kite: Any, market: Any, store: Any, calendar: NseCalendar,
                 clock: Clock, rule: str, poll_seconds: float, dry_run: bool, log: logging.Logger,
                 stop: threading.Event, positions_refresh_seconds: float = POSITIONS_REFRESH_SECONDS,
                 settle_grace_s: float = EXIT_SETTLE_GRACE_S) -> None:
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
        self._failing_since: datetime | None = None
        self._carry: dict[str, Any] = {}
        self._loaded = False
        #: exit tag -> wall time (monotonic) its failed send was first seen unsettled by this process
        self._unsettled: dict[str, float] = {}
        self._said_mod_cap: set[str] = set()
        self.refresher = LevelRefresher(market, calendar, log, stop, clock.now)

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
        self._note_speed()

    def _adopt_exit_intents(self) -> None:
        """Make the exit records agree with the intents after a restart (see the module table)."""
        session = self.session.isoformat()
        mine = {t: i for t, i in self.intents.all().items()
                if i.get("job") == JOB and i.get("session") == session and i.get("kind") == "order"
                and str(i.get("purpose", "")).startswith("exit")}
        for tag, intent in mine.items():
            symbol = str(intent["symbol"]).upper()
            exits = self.sym(symbol)["exits"]
            rec = next((e for e in exits if e.get("tag") == tag), None)
            if rec is None:
                params = intent.get("params") or {}
                rec = new_record(str(intent.get("purpose")), tag)
                move(rec, ExitStatus.SENDING, rule=self.rule, level=None, ltp=None, price=params.get("price"),
                     quantity=params.get("quantity"), decided_at=intent.get("created_at"), order_id=None,
                     order_status=None, filled=0, note="recovered from the intent log")
                exits.append(rec)
                self.dirty = True
            status = intent.get("status")
            if status == SENT and rec.get("status") != ExitStatus.SENT:
                move(rec, ExitStatus.SENT, order_id=intent.get("broker_id"),
                     order_status=intent.get("order_status") or rec.get("order_status"))
                self.dirty = True
            elif status == PENDING:
                # Reconcile just looked: today's book does not have it, so it never reached the broker.
                self.intents.mark_failed(tag, "not sent: the watchdog stopped before sending; it re-decides")
                move(rec, ExitStatus.NOT_SENT, note="stopped before sending")
                self.dirty = True
            elif status == UNKNOWN:
                # Its write may have reached the broker: the tag is used up (no tag names two orders).
                self.intents.mark_failed(tag, "write outcome unknown and not in the order book at the restart: "
                                         "given up, the next exit uses a new tag")
                move(rec, ExitStatus.LOST, note="outcome unknown and not in the order book: given up")
                self.dirty = True
            elif status == FAILED and rec.get("status") in PENDING_STATUSES:
                move(rec, ExitStatus.REJECTED if intent.get("note") else ExitStatus.NOT_SENT,
                     note=intent.get("note", ""))
                self.dirty = True
        self.flush()

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
    def evaluate(self, symbol: str, ltp: float) -> ExitDecision | None:
        rec = self.sym(symbol)
        tick = self.ticks[symbol]
        if self.rule == RULE_ATR_TRAILING:
            trail = self.trails.get(symbol)
            if trail is None:
                return None
            if trail.update(ltp, tick):
                rec["atr"].update(anchor=trail.anchor, stop=trail.stop)
                self.dirty = True
                self.log.info("%s: ATR stop raised to %s (anchor %s)", symbol, trail.stop, trail.anchor)
            decision = atr_exit(ltp, trail.stop, tick)
        else:
            decision = hourly_low_exit(ltp, (rec.get("hourly") or {}).get("level"), tick)
        # An unresolved intent of another purpose (yesterday's entry) never stops an exit: exits are
        # sized as held minus the sells already open, which cannot oversell.
        if decision is None or exit_pending(rec["exits"]):
            return None
        retry_after = next((e.get("retry_after") for e in reversed(rec["exits"]) if e.get("retry_after")), None)
        if retry_after and self.clock.now().isoformat() < retry_after:
            return None
        if next_exit_purpose(rec["exits"]) is None:
            return None
        return decision

    def poll(self, now: datetime) -> None:
        self.apply_levels(now)
        if now >= self.next_positions:
            self.refresh_positions(now)
        self.schedule_levels(now)
        if exit_pending([e for s in self.day["symbols"].values() for e in s["exits"]]):
            self._update_exits(self.kite.orders(), now)
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
                self.reprice(symbol, ltp, now)
                decision = self.evaluate(symbol, ltp)
                if decision is not None:
                    self.exit(symbol, decision, now)
        self.flush()

    # --- exits ---------------------------------------------------------------------------------
    def exit(self, symbol: str, decision: ExitDecision, now: datetime) -> None:
        if self.dry_run:
            key = (symbol, decision.level)
            if key not in self._would_exit:
                self._would_exit.add(key)
                qty = self.tracked.get(symbol, 0)
                self.stats.exits_planned.append({"symbol": symbol, "quantity": qty, "price": decision.limit_price,
                                                 "level": decision.level, "ltp": decision.ltp})
                self.log.info("dry run: would SELL %d %s LIMIT %s CNC: %s", qty, symbol, decision.limit_price,
                              decision.reason)
            return
        account = self.refresh_positions(now)  # sell what is really held, net of sells already open
        held = held_quantities(account).get(symbol, 0)
        quantity = held - pending_sell_quantity(account.orders, symbol)
        rec = self.sym(symbol)
        if quantity <= 0:
            self.log.info("%s: exit level crossed but nothing left to sell (held %d, already being sold %d)",
                          symbol, held, held - quantity)
            return
        if exit_pending(rec["exits"]):
            return
        purpose = next_exit_purpose(rec["exits"])
        if purpose is None:
            return
        tag = make_tag(self.user, JOB, self.session, symbol, purpose)
        params = exit_order_params(symbol, quantity, decision, EXCHANGE)
        record = next((e for e in rec["exits"] if e.get("tag") == tag), None)
        if record is None:
            record = new_record(purpose, tag)
            rec["exits"].append(record)
        move(record, ExitStatus.SENDING, rule=decision.rule, level=decision.level, ltp=decision.ltp,
             price=decision.limit_price, quantity=quantity, decided_at=now.isoformat(), order_id=None,
             order_status=None, filled=0, note=decision.reason, retry_after=None)
        self.dirty = True
        self.flush()
        self.log.info("%s: SELL %d LIMIT %s CNC (%s) tag %s", symbol, quantity, decision.limit_price,
                      decision.reason, tag)
        try:
            result = send_order_once(self.kite, self.intents, tag, params, purpose=purpose, job=JOB,
                                     session=self.session)
        except BrokerRejected as exc:
            move(record, ExitStatus.REJECTED, note=str(exc), retry_after=(now + self.positions_refresh).isoformat())
            self.log.error("%s: exit refused by the broker: %s", symbol, exc)
        except ReconcileError as exc:
            # SymbolBlocked. Only this exit's own tag being unreconcilable uses the tag up; either
            # way the symbol is looked at again later, never skipped for the rest of the session.
            own = (self.intents.get(tag) or {}).get("status") in (UNRESOLVED, RESOLVED)
            move(record, ExitStatus.BLOCKED if own else ExitStatus.NOT_SENT, note=str(exc),
                 retry_after=(now + self.positions_refresh).isoformat())
            self.log.error("%s: exit not sent: %s", symbol, exc)
        except BrokerTemporaryError as exc:
            intent = self.intents.get(tag)
            if intent is None or intent.get("status") in (PENDING, FAILED):
                # The intent is marked unknown before any write that may have reached the broker;
                # still pending (or never recorded: the reconcile read before it failed) means the
                # request was refused before it was processed (429 after retries, connection
                # refused, workers.broker_errors.never_sent): the next poll may send the same tag.
                if intent is not None and intent.get("status") == PENDING:
                    self.intents.mark_failed(tag, f"not sent: {exc}")
                move(record, ExitStatus.NOT_SENT, note=f"not sent: {exc}")
                self.log.warning("%s: exit not sent (%s); the next poll decides again", symbol, exc)
            else:
                move(record, ExitStatus.UNKNOWN, note=str(exc))
                self._unsettled[tag] = time.monotonic()
                self.log.warning("%s: exit outcome unknown (%s); the order book will tell", symbol, exc)
        else:
            move(record, ExitStatus.SENT, order_id=result.broker_id, order_status=result.order_status)
            if result.sent_now:
                self.stats.exits_placed += 1
        self.dirty = True
        self.flush()

    def _update_exits(self, orders: Sequence[Mapping[str, Any]], now: datetime) -> None:
        by_id = {str(o.get("order_id")): o for o in orders}
        by_tag: dict[str, Mapping[str, Any]] = {}
        for o in orders:
            for tag in {o.get("tag"), *(o.get("tags") or [])} - {None}:
                by_tag[str(tag)] = o
        for symbol, rec in self.day["symbols"].items():
            for e in rec["exits"]:
                status = e.get("status")
                if status == ExitStatus.LOST and e["tag"] in by_tag:
                    # Given up on, then it did arrive: it is an exit like any other (the next one,
                    # if any, is sized net of it).
                    order = by_tag[e["tag"]]
                    self.intents.mark_sent(e["tag"], str(order.get("order_id")), order_status=order.get("status"))
                    move(e, ExitStatus.SENT)
                    status = ExitStatus.SENT
                    self.log.warning("%s: exit %s given up on is in the book after all: %s", symbol, e["tag"],
                                     order.get("order_id"))
                if status not in PENDING_STATUSES:
                    continue
                order = by_id.get(str(e.get("order_id"))) if e.get("order_id") else by_tag.get(e["tag"])
                if order is None:
                    if not e.get("order_id"):
                        self._settle_unsent(symbol, e)
                    continue
                self._unsettled.pop(e["tag"], None)
                if status in (ExitStatus.UNKNOWN, ExitStatus.SENDING) and not e.get("order_id"):
                    # The write timed out (or the process died) but the book shows it: settle the intent too.
                    self.intents.reconcile(self.kite, tags=[e["tag"]])
                    move(e, ExitStatus.SENT)
                filled = int(order.get("filled_quantity") or 0)
                price = order.get("price")
                changed = (str(order.get("order_id")) != e.get("order_id")
                           or order.get("status") != e.get("order_status") or filled != e.get("filled")
                           or (price is not None and float(price) != e.get("price")))
                if changed:
                    move(e, ExitStatus.SENT, order_id=str(order.get("order_id")), order_status=order.get("status"),
                         filled=filled)
                    if price is not None and float(price) > 0:
                        e["price"] = float(price)  # the book's price (after a modification) is the truth
                    self.dirty = True
                    self.log.info("%s: exit %s is %s at %s, %d of %s filled", symbol, e["order_id"],
                                  order.get("status"), e.get("price"), filled, e.get("quantity"))
                    if order.get("status") in (OrderStatus.CANCELLED, OrderStatus.REJECTED):
                        e["retry_after"] = now.isoformat()
        self._tidy_gtts(now)

    def _settle_unsent(self, symbol: str, e: dict[str, Any]) -> None:
        """An exit whose send failed (or whose process died sending it) and whose tag the book
        does not show. Left pending, it would block the symbol for the rest of the session; after
        a grace it is given up: ``not_sent`` (same tag next time) when it never reached the
        broker, ``lost`` (the next purpose's tag: no tag may name two orders) when it may have."""
        tag = e["tag"]
        first = self._unsettled.setdefault(tag, time.monotonic())
        if time.monotonic() - first < self.settle_grace_s:
            return
        intent = self.intents.get(tag)
        status = (intent or {}).get("status")
        if status == PENDING:
            # Recorded, never marked unknown: the write was not made, or refused unprocessed.
            status = (self.intents.mark_failed(tag, "not in the order book: never sent") or {}).get("status")
            never_sent = status == FAILED
        elif status == UNKNOWN:
            status = (self.intents.mark_failed(tag, "write outcome unknown and not in the order book after "
                                               f"{self.settle_grace_s:g} s: given up, the next exit uses "
                                               "a new tag") or {}).get("status")
            never_sent = False
        else:
            never_sent = status in (None, FAILED)
        if status == SENT:  # another path recorded it meanwhile; the next book read shows it
            move(e, ExitStatus.SENT, order_id=(intent or {}).get("broker_id"))
        elif status in (UNRESOLVED, RESOLVED):
            move(e, ExitStatus.BLOCKED, note=(intent or {}).get("note", ""))
        elif never_sent:
            move(e, ExitStatus.NOT_SENT, note="not in the order book: never sent; the next poll may resend it")
        else:
            move(e, ExitStatus.LOST, note="outcome unknown and not in the order book: given up")
        self._unsettled.pop(tag, None)
        self.dirty = True
        self.log.warning("%s: exit %s not in the order book %g s after its send failed: %s", symbol, tag,
                         self.settle_grace_s, e["status"])

    def reprice(self, symbol: str, ltp: float, now: datetime) -> None:
        """An open exit whose limit the market has fallen below would never fill: modify it down
        to the marketable limit (watchdog_rules.exit_reprice). A modification is a full
        replacement of price, type and quantity, so repeating one is harmless."""
        if self.dry_run:
            return
        for e in self.sym(symbol)["exits"]:
            if e.get("status") != ExitStatus.SENT or e.get("order_status") != OrderStatus.OPEN or not e.get("order_id"):
                continue
            new = exit_reprice(float(e.get("price") or 0.0), ltp, self.ticks[symbol])
            if new is None:
                continue
            done = int(e.get("modifications") or 0)
            if done >= MAX_EXIT_MODIFICATIONS:
                if e["tag"] not in self._said_mod_cap:
                    self._said_mod_cap.add(e["tag"])
                    self.log.error("%s: exit %s rests at %s above the LTP %s, but it was modified %d times "
                                   "already: leaving it (the GTT stays the backstop)", symbol, e["order_id"],
                                   e.get("price"), ltp, done)
                continue
            e["modifications"] = done + 1  # attempts count: a refused one must not repeat without end
            self.dirty = True
            try:
                self.kite.modify_order("regular", str(e["order_id"]), order_type="LIMIT",
                                       quantity=int(e.get("quantity") or 0), price=new, validity="DAY")
            except BrokerRejected as exc:
                self.stats.errors += 1
                self.log.warning("%s: exit %s not repriced to %s: %s", symbol, e["order_id"], new, exc)
                continue
            except BrokerTemporaryError as exc:
                # Outcome unknown at worst: the next book read shows the price, the next poll decides.
                self.stats.errors += 1
                self.log.warning("%s: repricing exit %s to %s failed (%s); will look again", symbol,
                                 e["order_id"], new, exc)
                continue
            old = e.get("price")
            e.update(price=new, ltp=ltp, repriced_at=now.isoformat())
            self.log.warning("%s: exit %s rested at %s above the LTP %s: modified to %s", symbol, e["order_id"],
                             old, ltp, new)

    def _tidy_gtts(self, now: datetime) -> None:
        """After an exit filled (partly or wholly): no stop GTT may sell more than is still held."""
        due = [(s, e) for s, rec in self.day["symbols"].items() for e in rec["exits"]
               if int(e.get("filled") or 0) > int((e.get("gtt") or {}).get("synced_filled") or 0)]
        if not due or self.dry_run:
            return
        home = getattr(self.store, "home", None)
        lock = gtt_lock(home, self.user, timeout=GTT_LOCK_TIMEOUT_S) if home is not None else contextlib.nullcontext()
        try:
            with lock:
                # Holdings and GTTs read inside the lock: update_cnc_stoploss plans from them too.
                account = self._tidy_gtts_locked(due, now)
        except KitefleetError as exc:  # LockTimeout: the stop job held it too long; look again later
            self.stats.errors += 1
            self.log.warning("GTTs not tidied after the exit fill (%s); will look again", exc)
            return
        self.tracked = {s: q for s, q in held_quantities(account).items() if s in self.ticks}

    def _tidy_gtts_locked(self, due: list[tuple[str, dict[str, Any]]], now: datetime) -> AccountSnapshot:
        account = snapshot(self.kite)
        gtts = self.kite.get_gtts()
        ownership = stop_ownership(self.store.read())
        for symbol, e in due:
            held = held_quantities(account).get(symbol, 0)
            gtt = e.setdefault("gtt", {"synced_filled": 0, "actions": []})
            ok = True
            cuts, reports = cuts_after_exit(gtts, symbol, held, ownership)
            for line in reports:
                self.log.warning("%s", line)
            for action in cuts:
                try:
                    if action.action == DELETE:
                        self.kite.delete_gtt(action.gtt_id)
                    else:
                        cond = action.gtt.get("condition") or {}
                        self.kite.modify_gtt(action.gtt_id, str(action.gtt.get("type", "single")), symbol,
                                             cond.get("exchange", EXCHANGE), list(cond.get("trigger_values") or []),
                                             float(cond.get("last_price") or 0.0), reduced_legs(action.gtt, held))
                except KitefleetError as exc:
                    # Deleting/reducing is idempotent: the next look at the GTT list decides again.
                    ok = False
                    self.stats.errors += 1
                    self.log.warning("%s: GTT %d not %sd (%s); will look again", symbol, action.gtt_id,
                                     action.action, exc)
                    continue
                self.stats.gtt_actions += 1
                gtt["actions"].append({"id": action.gtt_id, "action": action.action,
                                       "quantity": action.quantity, "at": now.isoformat()})
                self.log.info("%s: GTT %d %s after the exit fill (%d shares still held)", symbol,
                              action.gtt_id, "deleted" if action.action == DELETE else "reduced", held)
            if ok:
                gtt["synced_filled"] = int(e.get("filled") or 0)
            self.dirty = True
        return account

    # --- the loop ------------------------------------------------------------------------------
    def _note_speed(self) -> None:
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

    def run(self) -> Stats:
        """Watch until the close (or STOP); returns the counters."""
        try:
            if self._start():
                self._loop()
        finally:
            self.refresher.close(2.0)
        self.flush()
        return self.stats

    def _start(self) -> bool:
        """``start()`` until it succeeds, the close or STOP; False if it never did. A broker that
        fails at the open must not cost the session its watchdog (the scheduler reruns a failed
        job only a few times a day); a TokenError (exit 5) and other errors still end the job."""
        backoff = START_RETRY_SECONDS
        failing_since: datetime | None = None
        while not self.stop.is_set():
            now = self.clock.now()
            if now >= self.closing:
                self.log.error("session closed at %s before the watchdog could start",
                               self.closing.strftime("%H:%M"))
                return False
            try:
                self.start()
            except BrokerTemporaryError as exc:
                self.stats.errors += 1
                failing_since = failing_since or now
                self.log.warning("start failed (%s); trying again in %g s, the GTT stays the backstop", exc, backoff)
                self.flush()
                self.clock.sleep_until(min(now + timedelta(seconds=backoff), self.closing), stop=self.stop)
                backoff = min(backoff * 2, START_RETRY_MAX_SECONDS)
                continue
            if failing_since is not None:
                self.log.info("started after failures since %s", failing_since.strftime("%H:%M:%S"))
            self.stats.started = True
            return True
        return False

    def _loop(self) -> None:
        next_poll = self.clock.now()
        while not self.stop.is_set():
            now = self.clock.now()
            if now >= self.closing:
                self.log.info("session closed at %s: stopping", self.closing.strftime("%H:%M"))
                return
            if now < next_poll:
                self.clock.sleep_until(min(next_poll, self.closing), max_wall=1.0, stop=self.stop)
                continue
            self._note_speed()
            try:
                self.poll(now)
                if self._failing_since is not None:
                    self.log.info("polling again after failures since %s", self._failing_since.strftime("%H:%M:%S"))
                self._failing_since = None
            except BrokerTemporaryError as exc:
                # A watchdog that gives up leaves positions unwatched: keep trying (the GTT still stands).
                self.stats.errors += 1
                if self._failing_since is None:
                    self._failing_since = now
                    self.log.warning("poll failed (%s); the watchdog keeps polling", exc)
            # On time: the next slot of the grid. Behind (rate limit, slow broker): at once.
            next_poll = now + timedelta(seconds=self.poll_seconds)
