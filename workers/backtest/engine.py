"""The backtest engine (issue 21): every NSE session of a range replayed through the jobs' own pure
functions (the scan, selection and sizing, the stop at fill, the stop job's trailing, the
watchdog's per-poll decision, the daily loss limit's trip and flatten) and the shared simulation's
fill and charges model. Pure apart from reading the source: no clock, no files, no broker.

Over 400 lines because one session is one time loop whose parts (entries, the minute's fills and
stops, the polls, the loss limit and its flatten) share the session's state; the schedule is apart
(workers.backtest.timing).

What one session replays, on the user's own schedule (SCHEDULE_PLACE_ORDERS_DAILY,
SCHEDULE_UPDATE_CNC_STOPLOSS, SCHEDULE_HOURLY_CANDLE_WATCHDOG, parsed by the settings' own parser:
workers.backtest.timing) in ONE time loop over the session's minutes, every held symbol at the
same minute (the daily loss limit looks across all of them):

* the evening scan of the previous session (pattern_daily), entered at each entry slot
  (place_orders_daily: book-priced limit, filled on arrival and minute by minute until
  ENTRY_TIMEOUT_MINUTES), unless the user is halted; the stop at fill;
* each minute, per held symbol: the open exit meets that minute's book, the stop job at its slots
  (the stop only rises), the GTT trigger on the minute's low;
* the watchdog's polls every WATCHDOG_POLL_SECONDS from its start slot (a poll sees the last
  completed minute's close as the LTP; a poll that sees the same close as the poll before, which
  decided nothing for a symbol, decides nothing again and is skipped for it): decide_symbol, the
  exits it sends and reprices;
* the daily loss limit (MAX_DAILY_LOSS_PERCENT) at the watchdog's positions refreshes (its first
  poll, every POSITIONS_REFRESH_SECONDS, and before each exit it sends), or at the stop and entry
  runs when the watchdog is off: workers.strategy.limits's day P&L, workers.loss_limit's
  trip_action and flatten_standing; a trip halts entries until the next session, and with
  LOSS_LIMIT_ACTION=flatten every held share is sold as the watchdog sells it (flatten_reprices,
  marketable limits);
* the equity at the close. Positions held after the last session are reported (open_positions,
  marked at the last close), never dropped.

Minute paths are read only for symbols held or being entered that day.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from kitefleet.calendar import NseCalendar
from kitefleet.halt import BY_LOSS_LIMIT
from kitefleet.settings import KEYS
from kitefleet.sim import charges as sim_charges
from kitefleet.sim import fills as sim_fills
from kitefleet.sim.book import Book, to_price, to_ticks, typical_spread_ticks
from kitefleet.states import ExitStatus, OrderStatus
from workers import loss_limit
from workers.backtest.data import CandleSource
from workers.backtest.model import BacktestSpec, EquityRow, OpenPosition, OrderRow, RuleResult, TradeRow
from workers.backtest.timing import SessionTimes, plan_of, session_times
from workers.flatten import flatten_reprices
from workers.portfolio import HELD, SOLD_TODAY
from workers.schedule import format_schedule
from workers.strategy import entries, limits, patterns, stops, watchdog_rules
from workers.strategy.patterns import Candle
from workers.strategy.watchdog_rules import RULE_ATR_TRAILING, clamp_to_band, marketable_limit
from workers.watchdog import POSITIONS_REFRESH_SECONDS, AtrTrail, SymbolView, decide_symbol

#: history (the live source) has no book: orders meet the last close plus or minus this (ticks)
HALF_SPREAD_TICKS = max(1, -(-typical_spread_ticks() // 2))
HISTORY_FILLS = (
    f"history has no order book: an order meets the last completed minute's close plus (buy) or minus (sell) "
    f"half the spread model's typical spread ({typical_spread_ticks()} ticks: {HALF_SPREAD_TICKS} tick), or its "
    "limit when the minute traded through it; an entry is re-priced at that ask; no partial fills, no circuit bands")
LOOKBACK_CALENDAR_DAYS = 183  # workers/jobs/pattern_daily.py LOOKBACK_CALENDAR_DAYS
DEFAULT_INITIAL_CASH = 1_000_000.0
ASSUMPTIONS = (
    "the jobs run at the user's SCHEDULE_* slots; a slot before the open runs at the open, one at or after the "
    "close not at all; an entry needs one completed minute for its LTP (an entry slot at 09:15 runs at 09:16)",
    "the watchdog polls every WATCHDOG_POLL_SECONDS from its start; a poll's LTP is the close of the last "
    "completed minute (a poll inside a minute sees the minute before's close); a poll before the first minute "
    "completes decides nothing",
    "events inside a minute: the open exits meet its book, the stop job, the GTT trigger on its low; then the "
    "polls that see its close",
    "an order meets the book of the minute it is sent in and of each following minute (fill_on_arrival); an "
    "entry's fills up to ENTRY_TIMEOUT_MINUTES are taken when it is sent (a halt later does not cancel it)",
    "a CNC share bought today may be sold today (charged as intraday), as the broker allows",
    "the daily loss limit is checked at the watchdog's positions refreshes (or the stop and entry runs when the "
    "watchdog is off), on the base of the previous close's equity; no person halts or lifts a halt",
    "positions held after the last session are marked at its close (open_positions), not sold",
)


@dataclass
class _Position:
    symbol: str
    quantity: int
    entry_time: datetime
    entry_price: float
    entry_session: date
    entry_charges: float
    stop: float | None
    tick: float
    sessions: int = 0
    trail: AtrTrail | None = None
    mark: float = 0.0  # the last session close it was valued at


@dataclass
class _Account:
    cash: float
    positions: dict[str, _Position] = field(default_factory=dict)
    result: RuleResult = field(default_factory=lambda: RuleResult(rule=""))
    day_charges: float = 0.0
    #: the stop job's GTT_LIMIT_BUFFER_PERCENT and STOP_MIN_GAP_PERCENT (the user's settings)
    buffer_percent: float = 5.0
    min_gap_percent: float = 1.0


@dataclass
class _Live:
    """A held symbol during one session."""

    pos: _Position
    path: list[Candle]
    lower: float | None
    start: int  # the first minute managed (a position entered today: its entry minute)
    since: datetime
    prev_low: float | None
    trail: AtrTrail | None
    order: dict[str, Any] | None = None
    trail_fed: bool = False  # fed an LTP since its candles were set (an LTP at or below the anchor: no change)
    hours_upto: int = -1
    level: float | None = None
    #: the completed-minute count of the last poll that changed nothing (a poll on the same close repeats it)
    quiet: int = -1


@dataclass
class _Day:
    """The account's loss-limit figures of one session."""

    base: float  # the equity at the previous close (the limit's base)
    previous: date
    opening: datetime
    sells: list[limits.Sell] = field(default_factory=list)
    buys: dict[str, float] = field(default_factory=dict)  # symbol -> today's entry price
    halted: bool = False
    tripped_at: str | None = None
    flatten_due: bool = False
    next_refresh: int = 0  # seconds from the open of the watchdog's next positions refresh
    unwatched_from: int = -1  # minutes of an unwatched flatten's looks (stop or entry run): [from, until]
    unwatched_until: int = -1
    #: the session's entry plan, fixed by the first entry slot with entries (workers.entry_plan)
    plan: _EntryPlan | None = None
    entered: list[str] = field(default_factory=list)  # symbols whose entry was sent this session


@dataclass(frozen=True)
class _EntryPlan:
    """What the first entry slot planned: a later slot completes it with the same basis."""

    basis: entries.Basis
    rows: list[patterns.ScanResult]
    quantities: dict[str, int]


def _ts(c: Candle) -> datetime:
    """An intraday candle's start (the sources give aware datetimes for minutes)."""
    assert isinstance(c.date, datetime), c
    return c.date


def _day(c: Candle) -> date:
    """A day candle's session date."""
    return c.date.date() if isinstance(c.date, datetime) else c.date


def _setting(spec: BacktestSpec, key: str) -> Any:
    """The user's value of ``key``, or the settings schema's default (the one source of defaults)."""
    default = KEYS[key].default
    value = spec.settings.get(key, default)
    return default if value in (None, "") else value


def _number(spec: BacktestSpec, key: str) -> float | None:
    value = _setting(spec, key)
    return None if value is None else float(value)


def _depth(book: Book) -> dict[str, list[dict[str, Any]]]:
    return {"sell": [{"price": to_price(lv.price, book.tick), "quantity": lv.quantity, "orders": lv.orders}
                     for lv in book.asks]}


def _charges(symbol: str, side: str, quantity: int, price: float, intraday: int) -> float:
    fill = sim_charges.Fill("bt", symbol, side, quantity, price)
    return round(float(sim_charges.order_charges(fill, intraday).total), 2)


def _reference(path: list[Candle], m: int, tick: float) -> int:
    """The price (ticks) a minute's orders meet when the source has no book: the last completed
    minute's close (the LTP the paper book is built around), or the first minute's open."""
    return to_ticks(path[m - 1].close if m else path[m].open, tick)


def _bookless_fill(path: list[Candle], m: int, buy: bool, lim: int, tick: float) -> int | None:
    """History has no order book: a marketable order fills at the reference plus (BUY) or minus
    (SELL) half the spread model's typical spread; one beyond it fills at its limit when the
    minute traded through it (its low, or high, reached the limit less half the spread); else not
    in this minute (HISTORY_FILLS)."""
    ref = _reference(path, m, tick)
    if buy:
        if ref + HALF_SPREAD_TICKS <= lim:
            return ref + HALF_SPREAD_TICKS
        return lim if to_ticks(path[m].low, tick) + HALF_SPREAD_TICKS <= lim else None
    if ref - HALF_SPREAD_TICKS >= lim:
        return ref - HALF_SPREAD_TICKS
    return lim if to_ticks(path[m].high, tick) - HALF_SPREAD_TICKS >= lim else None


def _bookless_depth(path: list[Candle], m: int, tick: float) -> dict[str, list[dict[str, Any]]]:
    """The ask side an entry is re-priced at when the source has no book: one deep level at the
    reference plus half the typical spread."""
    return {"sell": [{"price": to_price(_reference(path, m, tick) + HALF_SPREAD_TICKS, tick),
                      "quantity": 10**12, "orders": 1}]}


def _fill(source: CandleSource, symbol: str, day: date, minute: int, buy: bool, limit: float,
          quantity: int, tick: float, last_minute: int, path: list[Candle]) -> tuple[int, float, int]:
    """Shares filled, average price and the minute the order finished, trying the book on arrival
    and then each following minute's book up to ``last_minute`` (no book: _bookless_fill)."""
    lim = to_ticks(limit, tick)
    filled, value, m = 0, 0.0, minute
    for m in range(minute, last_minute + 1):
        book = source.book(symbol, day, m)
        if book is None:
            price = _bookless_fill(path, m, buy, lim, tick) if m < len(path) else None
            if price is not None:
                value += (quantity - filled) * to_price(price, tick)
                filled = quantity
                break
            continue
        for f in sim_fills.fill_on_arrival(buy, lim, quantity - filled, book):
            filled += f.quantity
            value += f.quantity * to_price(f.price, tick)
        if filled >= quantity:
            break
    return filled, (round(value / filled, 2) if filled else 0.0), m


def _hourly(minutes: list[Candle], upto: int) -> list[Candle]:
    """Hourly candles (09:15, 10:15, ...) from the first ``upto`` minutes of the session."""
    out: list[Candle] = []
    for start in range(0, upto, 60):
        chunk = minutes[start:min(start + 60, upto)]
        if chunk:
            out.append(Candle(chunk[0].date, chunk[0].open, max(c.high for c in chunk),
                              min(c.low for c in chunk), chunk[-1].close, sum(c.volume for c in chunk)))
    return out


def run(spec: BacktestSpec, source: CandleSource, calendar: NseCalendar, *,
        progress: Callable[[int, int], None] | None = None) -> list[RuleResult]:
    sessions = calendar.trading_days_between(spec.start, spec.end)
    replay = Replay(spec, source, calendar)
    accounts = {rule: replay.account(rule) for rule in spec.rules}
    # the evening scan of the session before the range: its entries are the first session's
    scan = replay.scan(calendar.previous_trading_day(sessions[0])) if sessions else []
    for i, day in enumerate(sessions):
        minutes = replay.minutes_of(day)
        times = session_times(replay.plan, calendar, day)
        for rule, acct in accounts.items():
            replay.session(acct, rule, day, scan, minutes, times)
        # the evening scan on the completed session, as pattern_daily runs it
        scan = replay.scan(day)
        if progress is not None:
            progress(i + 1, len(sessions))
    for acct in accounts.values():
        _report_open(acct)
    return [acct.result for acct in accounts.values()]


def _enter(source: CandleSource, acct: _Account, rule: str, day: date, scan: list[patterns.ScanResult],
           ticks: dict[str, float], minutes: Callable[[str], list[Candle] | None], ds: _Day, *,
           entry_limits: entries.EntryLimits, slot: int, timeout: int, history: dict[str, list[Candle]],
           manual: bool = False, scored: bool = False) -> None:
    """place_orders_daily at minute ``slot``, through its own functions (workers.strategy.entries):
    the first slot with entries selects and fixes the session's plan; a later slot completes it
    (the same basis; a symbol already sent is not sent again). The LTP is the last completed
    minute's close. ``manual``: a person's list (``--from``), in its order; MIN_SCORE applies to it
    only when it has scores (``scored``), as in place_orders_daily."""
    if not scan:
        return

    def ltp(symbol: str) -> float:
        path = minutes(symbol)
        return path[slot - 1].close if path and len(path) >= slot else 0.0

    blocked = {s: HELD for s in acct.positions}
    for sell in ds.sells:
        blocked.setdefault(sell.symbol, SOLD_TODAY)
    sent = {s: entries.ALREADY_PLACED for s in ds.entered}
    if ds.plan is None:
        selected, _ = entries.select_entries(scan, {**sent, **blocked}, len(acct.positions), entry_limits,
                                             has_score=scored or not manual, manual=manual)
        held = sum(p.quantity * (ltp(s) or p.mark or p.entry_price) for s, p in acct.positions.items())
        basis, planned_qty = entries.Basis(acct.cash, entries.entry_equity(acct.cash, held), len(selected)), {}
    else:
        selected, _ = entries.complete_plan(ds.plan.rows, sent, blocked)
        basis, planned_qty = ds.plan.basis, ds.plan.quantities
    kept, _ = entries.cap_new_entries([r.symbol for r in selected], (), len(ds.entered), entry_limits.new_per_day)
    rows = [r for r in selected if r.symbol in kept]
    deployed = sum(p.quantity * p.entry_price for p in acct.positions.values())  # the owned lots at cost
    sized = entries.size_entries(rows, {r.symbol: ltp(r.symbol) for r in rows}, ticks, basis, entry_limits,
                                 planned_qty=planned_qty, deployed=deployed)
    if ds.plan is None and rows:
        ds.plan = _EntryPlan(basis, rows, {r.symbol: z.plan.quantity for r, z in zip(rows, sized, strict=True)})
    room = entries.capital_room(entry_limits, deployed)  # at the sends, as place_orders_daily._send
    for row, z in zip(rows, sized, strict=True):
        tick = ticks[row.symbol]
        path = minutes(row.symbol)
        if not path or len(path) <= slot:
            acct.result.missing.append(f"{row.symbol} {day}: no minute candles for the entry")
            continue
        circuit = source.circuit(row.symbol, day)
        book = source.book(row.symbol, day, slot)
        depth = _depth(book) if book is not None else _bookless_depth(path, slot, tick)
        plan = entries.check_at_send(z.plan, row, path[slot - 1].close, depth, circuit[1] if circuit else None,
                                     basis, entry_limits, capital_room=room).sendable
        if plan is None:
            continue
        ds.entered.append(row.symbol)
        if room is not None:
            room = max(0.0, room - plan.order_value)
        when = _ts(path[slot])
        filled, avg, _ = _fill(source, row.symbol, day, slot, True, plan.limit_price, plan.quantity, tick,
                               min(slot + timeout, len(path) - 1), path)
        cost = _charges(row.symbol, "BUY", filled, avg, 0) if filled else 0.0
        acct.result.orders.append(OrderRow(rule, when, row.symbol, "BUY", "entry", plan.quantity, plan.limit_price,
                                           filled, avg if filled else None,
                                           "COMPLETE" if filled == plan.quantity else "CANCELLED", round(cost, 2)))
        if not filled:
            continue
        acct.cash -= filled * avg + cost
        acct.day_charges += cost
        prev_low = stops.previous_session_low(history[row.symbol], when)
        decision = stops.stop_at_fill(row.stop_loss, avg, prev_low, path[slot - 1].close, tick,
                                      acct.buffer_percent, acct.min_gap_percent)
        acct.positions[row.symbol] = _Position(row.symbol, filled, when, avg, day, cost, decision.stop, tick)


def _book_exit(acct: _Account, rule: str, day: date, pos: _Position, order: dict[str, Any], when: datetime,
               final: bool) -> None:
    """Record an exit order's fills: the shares sold leave the position as one round trip."""
    filled = int(order["filled"])
    if final or filled >= int(order["quantity"]):
        avg = round(order["value"] / filled, 2) if filled else 0.0
        intraday = filled if pos.entry_session == day else 0
        cost = _charges(pos.symbol, "SELL", filled, avg, intraday) if filled else 0.0
        status = "COMPLETE" if filled >= int(order["quantity"]) else "CANCELLED"
        acct.result.orders.append(OrderRow(rule, order["sent"], pos.symbol, "SELL", order["purpose"],
                                           int(order["quantity"]), float(order["price"]), filled,
                                           avg if filled else None, status, cost, order["reason"]))
        order["order_status"] = status
        if not filled:
            return
        acct.cash += filled * avg - cost
        acct.day_charges += cost
        share = filled / pos.quantity
        entry_cost = round(pos.entry_charges * share, 2)
        acct.result.trades.append(TradeRow(rule, pos.symbol, pos.entry_time, pos.entry_price, when, avg, filled,
                                           round(entry_cost + cost, 2),
                                           round((avg - pos.entry_price) * filled - entry_cost - cost, 2),
                                           order["reason"], pos.sessions))
        pos.entry_charges -= entry_cost
        pos.quantity -= filled


def _try_fill(source: CandleSource, pos: _Position, day: date, minute: int, order: dict[str, Any],
              path: list[Candle]) -> None:
    book = source.book(pos.symbol, day, minute)
    left = int(order["quantity"]) - int(order["filled"])
    if book is None:
        price = _bookless_fill(path, minute, False, to_ticks(float(order["price"]), pos.tick), pos.tick)
        if price is not None and minute < len(path):
            order["filled"] += left
            order["value"] += left * to_price(price, pos.tick)
        return
    for f in sim_fills.fill_on_arrival(False, to_ticks(float(order["price"]), pos.tick), left, book):
        order["filled"] += f.quantity
        order["value"] += f.quantity * to_price(f.price, pos.tick)


ONE_MINUTE = timedelta(minutes=1)


class Replay:
    """One run's context (settings, schedule, candles) and one session's replay for one rule's
    account (:meth:`session`); :func:`run` drives it over the range, tests drive single sessions."""

    def __init__(self, spec: BacktestSpec, source: CandleSource, calendar: NseCalendar) -> None:
        self.spec, self.source, self.calendar = spec, source, calendar
        self.plan = plan_of(spec)
        self.symbols = source.symbols()
        self.ticks = {s: source.tick(s) for s in self.symbols}
        self.entry: dict[str, Any] = {
            "entry_limits": entries.EntryLimits.from_settings(lambda key: _number(spec, key)),
            "timeout": int(_setting(spec, "ENTRY_TIMEOUT_MINUTES"))}
        sessions = calendar.trading_days_between(spec.start, spec.end)
        # the daily candles, read once for the whole range (the scan's window slides over them)
        first = calendar.previous_trading_day(sessions[0]) if sessions else spec.start
        self.history: dict[str, list[Candle]] = {}
        self.missing: list[str] = []
        for s in self.symbols:
            rows = source.daily(s, first - timedelta(days=LOOKBACK_CALENDAR_DAYS), spec.end)
            if rows is None:
                self.missing.append(f"{s}: no daily candles")
                rows = []
            self.history[s] = rows
        self.closes = {s: {_day(c): c.close for c in rows} for s, rows in self.history.items()}

    def account(self, rule: str) -> _Account:
        p = self.plan
        line = (f"schedule: entries {format_schedule(p.entries)}, stop job {format_schedule(p.stops)}, watchdog "
                f"{format_schedule(p.watchdog)} polling every {p.poll_seconds} s; daily loss limit "
                f"{p.loss_percent:g} % ({p.loss_action})")
        return _Account(cash=self.spec.initial_cash or DEFAULT_INITIAL_CASH,
                        buffer_percent=float(_setting(self.spec, "GTT_LIMIT_BUFFER_PERCENT")),
                        min_gap_percent=float(_setting(self.spec, "STOP_MIN_GAP_PERCENT")),
                        result=RuleResult(rule=rule, missing=list(self.missing),
                                          assumptions=[line, *ASSUMPTIONS,
                                                       *([HISTORY_FILLS] if self.source.name == "live" else [])]))

    def scan(self, day: date) -> list[patterns.ScanResult]:
        window_start = day - timedelta(days=LOOKBACK_CALENDAR_DAYS)
        return patterns.scan_many({s: [c for c in self.history[s] if window_start <= _day(c) <= day]
                                   for s in self.symbols}, self.ticks)

    def minutes_of(self, day: date) -> Callable[[str], list[Candle] | None]:
        """The session's minute paths, each read once (and only for a symbol held or entered)."""
        cache: dict[str, list[Candle] | None] = {}

        def minutes(symbol: str) -> list[Candle] | None:
            if symbol not in cache:
                cache[symbol] = self.source.minutes(symbol, day)
            return cache[symbol]

        return minutes

    # --- one session ---------------------------------------------------------------------------
    def session(self, acct: _Account, rule: str, day: date, scan: list[patterns.ScanResult],
                minutes: Callable[[str], list[Candle] | None], times: SessionTimes, *, manual: bool = False,
                scored: bool = False) -> None:
        """One session of one rule's account in one time loop: minute by minute, every held symbol
        at that minute, the jobs at their slots and the watchdog's polls after the minute they see."""
        acct.day_charges = 0.0
        ds = _Day(base=acct.result.equity[-1].equity if acct.result.equity else acct.cash,
                  previous=self.calendar.previous_trading_day(day), opening=times.opening)
        lives: dict[str, _Live] = {}
        for symbol in sorted(acct.positions):
            self._watch(acct, rule, day, symbol, minutes, lives)
        entries, stop_slots = set(times.entries), set(times.stops)
        for k in range(times.minutes):
            if k in stop_slots and not times.watched:
                self._unwatched_run(acct, rule, day, ds, lives, k, stop_run=True)
            if k in entries:
                self._entry_run(acct, rule, day, scan, minutes, ds, lives, k, times.watched, manual, scored)
            stop_job = k in stop_slots
            for symbol in sorted(lives):
                lv = lives[symbol]
                if k < lv.start or k >= len(lv.path):
                    continue
                if lv.order is None and not stop_job and (lv.pos.stop is None or lv.path[k].low > lv.pos.stop):
                    continue  # nothing can happen to it in this minute
                if self._minute(acct, rule, day, ds, lv, k, stop_job):
                    del lives[symbol], acct.positions[symbol]
            if ds.unwatched_from < k + 1 <= ds.unwatched_until:
                self._flatten(lives, k + 1, ds.opening + (k + 1) * ONE_MINUTE)
            for s, when in times.polls.get(k + 1, ()):
                self._poll(acct, rule, day, ds, lives, k + 1, s, when)
        for symbol in sorted(lives):
            lv = lives[symbol]
            if lv.order is not None:  # a DAY order: what is unfilled at the close is cancelled
                self._booked(acct, rule, day, ds, lv, _ts(lv.path[-1]) + ONE_MINUTE)
            if lv.pos.quantity <= 0:
                del acct.positions[symbol]
        _close_day(acct, rule, day, minutes)

    def _watch(self, acct: _Account, rule: str, day: date, symbol: str,
               minutes: Callable[[str], list[Candle] | None], lives: dict[str, _Live]) -> None:
        pos = acct.positions[symbol]
        path = minutes(symbol)
        if not path:
            acct.result.missing.append(f"{symbol} {day}: no minute candles")
            return
        circuit = self.source.circuit(symbol, day)
        start = 0
        if pos.entry_session == day:
            start = next((k for k, c in enumerate(path) if _ts(c) >= pos.entry_time), len(path))
        since = path[start].date if start < len(path) else path[-1].date
        prev_low = stops.previous_session_low(self.history[symbol], path[0].date)  # type: ignore[arg-type]
        trail: AtrTrail | None = None
        if rule == RULE_ATR_TRAILING:
            daily = [c for c in self.history[symbol] if _day(c) < day]
            trail = pos.trail or AtrTrail(daily[-60:], pos.entry_price, None)
            trail.candles = daily[-60:]
            pos.trail = trail
        lives[symbol] = _Live(pos, path, circuit[0] if circuit else None, start, since,  # type: ignore[arg-type]
                              prev_low, trail)

    def _entry_run(self, acct: _Account, rule: str, day: date, scan: list[patterns.ScanResult],
                   minutes: Callable[[str], list[Candle] | None], ds: _Day, lives: dict[str, _Live], k: int,
                   watched: bool, manual: bool = False, scored: bool = False) -> None:
        """place_orders_daily at minute ``k``: without a watchdog it checks the loss limit first
        (and flattens when it trips); a halted user sends no entry."""
        if not watched:
            self._unwatched_run(acct, rule, day, ds, lives, k, stop_run=False)
        if ds.halted:
            return
        before = set(acct.positions)
        _enter(self.source, acct, rule, day, scan, self.ticks, minutes, ds, slot=k, history=self.history,
               manual=manual, scored=scored, **self.entry)
        for symbol in sorted(set(acct.positions) - before):
            ds.buys[symbol] = acct.positions[symbol].entry_price
            self._watch(acct, rule, day, symbol, minutes, lives)

    def _unwatched_run(self, acct: _Account, rule: str, day: date, ds: _Day, lives: dict[str, _Live], k: int,
                       stop_run: bool) -> None:
        """The loss limit in a stop or entry run when the watchdog is not scheduled
        (loss_limit.check_when_unwatched, flatten_when_unwatched): the stop run flattens for a
        halt that stands and then checks; the entry run checks and then flattens."""
        when = ds.opening + k * ONE_MINUTE
        if not stop_run:
            self._check(acct, day, ds, lives, k, when)
        if self._flatten_due(ds, day):
            self._flatten(lives, k, when)
            # the run waits UNWATCHED_FLATTEN_WAIT for the fills, looking again (repricing) meanwhile
            ds.unwatched_from = k
            ds.unwatched_until = k + int(loss_limit.UNWATCHED_FLATTEN_WAIT.total_seconds() // 60)
        if stop_run:
            self._check(acct, day, ds, lives, k, when)

    def _minute(self, acct: _Account, rule: str, day: date, ds: _Day, lv: _Live, k: int, stop_job: bool) -> bool:
        """Minute ``k`` of one held symbol: its open exit meets the book, the stop job at its slot,
        the GTT trigger on the low. True when the position is gone."""
        pos, path, bar = lv.pos, lv.path, lv.path[k]
        if lv.order is not None:
            _try_fill(self.source, pos, day, k, lv.order, lv.path)
            if lv.order["filled"] >= lv.order["quantity"]:
                self._booked(acct, rule, day, ds, lv, _ts(bar) + ONE_MINUTE)
                if pos.quantity <= 0:
                    return True
        if stop_job and pos.entry_session != day:
            decision = stops.decide_stop(lv.prev_low, pos.stop, path[k - 1].close if k else bar.open, pos.tick,
                                         has_stop_gtt=pos.stop is not None, buffer_percent=acct.buffer_percent,
                                         min_gap_percent=acct.min_gap_percent)
            if decision.place and decision.stop is not None and (pos.stop is None or decision.stop > pos.stop):
                pos.stop = decision.stop  # never lowered
        if lv.order is None and pos.stop is not None and bar.low <= pos.stop:
            when = _ts(bar) + ONE_MINUTE
            lv.order = {"quantity": pos.quantity, "filled": 0, "value": 0.0, "sent": when, "purpose": "stop",
                        "reason": "stop", "price": stops.gtt_limit_price(pos.stop, acct.buffer_percent, tick=pos.tick,
                                                                         lower_circuit=lv.lower)}
            pos.stop = None  # the GTT fired once
            lv.quiet = -1
            _try_fill(self.source, pos, day, k, lv.order, lv.path)
            if lv.order["filled"] >= lv.order["quantity"]:
                self._booked(acct, rule, day, ds, lv, when)
                return pos.quantity <= 0
        return False

    def _booked(self, acct: _Account, rule: str, day: date, ds: _Day, lv: _Live, when: datetime) -> None:
        """The open exit is done (filled, or cancelled at the close): booked, its fills counted
        among the day's sells for the loss limit."""
        order = lv.order
        assert order is not None
        _book_exit(acct, rule, day, lv.pos, order, when, True)
        filled = int(order["filled"])
        if filled:
            ds.sells.append(limits.Sell(lv.pos.symbol, filled, round(order["value"] / filled, 2)))
        lv.order = None
        lv.quiet = -1

    def _poll(self, acct: _Account, rule: str, day: date, ds: _Day, lives: dict[str, _Live], c: int, s: int,
              when: datetime) -> None:
        """One watchdog poll at ``s`` seconds from the open, seeing minute ``c - 1``'s close."""
        if s >= ds.next_refresh:  # the positions refresh: the loss limit is checked on it
            ds.next_refresh = s + POSITIONS_REFRESH_SECONDS
            self._check(acct, day, ds, lives, c, when)
        if ds.flatten_due:
            ds.flatten_due = False
            self._flatten(lives, c, when)
        for symbol in sorted(lives):
            lv = lives[symbol]
            if lv.quiet == c or c <= lv.start or c > len(lv.path):
                continue
            pos, path = lv.pos, lv.path
            ltp = path[c - 1].close
            if lv.trail is not None:
                if not lv.trail_fed or ltp > lv.trail.anchor:  # else the anchor and so the stop cannot move
                    lv.trail.update(ltp, pos.tick)
                    lv.trail_fed = True
                level = lv.trail.stop
            else:
                done = c // 60 * 60  # only whole hours can be completed candles; the rest waits
                if done != lv.hours_upto:
                    lv.hours_upto = done
                    hourly = watchdog_rules.eligible_hourly_candles(_hourly(path, done), when, lv.since)
                    lv.level = watchdog_rules.hourly_low_level(hourly[-2:])
                level = lv.level
            order = lv.order
            exits = [] if order is None or order["purpose"] == "stop" else [_record(order)]
            actions = decide_symbol(rule, symbol, SymbolView(ltp, pos.tick, level, exits, lv.lower), when)
            changed = False
            for r in actions.reprices:
                if order is not None and not r.capped:
                    order["price"] = r.price
                    order["modifications"] += 1
                    changed = True
            if actions.exit is not None and order is None and c < len(path):
                # the watchdog reads the positions afresh before each exit (and checks the limit on them)
                ds.next_refresh = s + POSITIONS_REFRESH_SECONDS
                self._check(acct, day, ds, lives, c, when)
                lv.order = {"quantity": pos.quantity, "filled": 0, "value": 0.0, "sent": when, "purpose": "exit",
                            "reason": actions.exit.rule, "price": actions.exit.limit_price, "modifications": 0}
                changed = True
            if not changed:
                lv.quiet = c

    # --- the daily loss limit ------------------------------------------------------------------
    def _check(self, acct: _Account, day: date, ds: _Day, lives: dict[str, _Live], c: int, when: datetime) -> None:
        """workers.loss_limit.check on the replay's books: the day P&L of the held shares at the
        last completed minute's close, today's sells and charges, against the previous close's
        equity. A trip halts entries for the rest of the session."""
        lots: dict[str, list[dict[str, Any]]] = {}
        ltp: dict[str, float] = {}
        for symbol, pos in acct.positions.items():
            lots[symbol] = [{"quantity": pos.quantity, "price": pos.entry_price, "date": pos.entry_session.isoformat()}]
            lv = lives.get(symbol)
            if lv is not None and 0 < c <= len(lv.path):
                ltp[symbol] = lv.path[c - 1].close
        prev: dict[str, float] = {}
        for symbol in [*lots, *(s.symbol for s in ds.sells)]:
            close = self.closes.get(symbol, {}).get(ds.previous)
            if close is not None:
                prev[symbol] = close
        pnl = limits.day_pnl(lots, ltp, prev, day.isoformat(), sells=ds.sells, today_buy_price=ds.buys,
                             charges=acct.day_charges)
        percent = self.plan.loss_percent
        if loss_limit.trip_action(limits.breached(pnl, ds.base, percent), ds.halted, None) == loss_limit.TRIP:
            ds.halted, ds.tripped_at = True, when.isoformat()
            acct.result.halts.append(
                f"{when:%Y-%m-%d %H:%M:%S}: daily loss limit: day P&L {pnl.total:,.2f} below the floor "
                f"{limits.loss_floor(ds.base, percent):,.2f} (MAX_DAILY_LOSS_PERCENT={percent:g} of "
                f"{ds.base:,.2f}): halted until the next session ({self.plan.loss_action})")
        ds.flatten_due = self._flatten_due(ds, day)

    def _flatten_due(self, ds: _Day, day: date) -> bool:
        return self.plan.loss_action == loss_limit.FLATTEN and loss_limit.flatten_standing(
            {"by": BY_LOSS_LIMIT} if ds.halted else None, {"session": day.isoformat(), "tripped_at": ds.tripped_at},
            day)

    def _flatten(self, lives: dict[str, _Live], c: int, when: datetime) -> None:
        """LOSS_LIMIT_ACTION=flatten, one look (workers.flatten.sell_symbol): every open SELL above
        floor(LTP x 0.995) (clamped to the band) is repriced down to it, a new exit at it sells
        the rest; the watchdog's later polls reprice it."""
        for symbol in sorted(lives):
            lv = lives[symbol]
            if not 0 < c < len(lv.path):
                continue
            pos = lv.pos
            target = clamp_to_band(marketable_limit(lv.path[c - 1].close, pos.tick), lv.lower, pos.tick)
            lv.quiet = -1
            if lv.order is not None:
                for r in flatten_reprices([_record(lv.order)], target):
                    if not r.capped:
                        lv.order["price"] = r.price
                        lv.order["modifications"] = int(lv.order.get("modifications") or 0) + 1
                continue
            lv.order = {"quantity": pos.quantity, "filled": 0, "value": 0.0, "sent": when, "purpose": "exit",
                        "reason": "flatten", "price": target, "modifications": 0}


def _record(order: dict[str, Any]) -> dict[str, Any]:
    """An open exit as the watchdog's exit record shows it (what decide_symbol and the flatten read)."""
    return {"status": ExitStatus.SENT, "order_status": OrderStatus.OPEN, "order_id": "bt", "tag": "bt",
            "price": order["price"], "modifications": int(order.get("modifications") or 0), "purpose": "exit1"}


def _close_day(acct: _Account, rule: str, day: date, minutes: Callable[[str], list[Candle] | None]) -> None:
    value = 0.0
    for pos in acct.positions.values():
        path = minutes(pos.symbol)
        pos.mark = path[-1].close if path else pos.entry_price
        value += pos.quantity * pos.mark
        pos.sessions += 1
    equity = acct.cash + value
    acct.result.equity.append(EquityRow(rule, day, round(acct.cash, 2), round(value, 2), round(equity, 2),
                                        round(acct.day_charges, 2), round(value / equity, 4) if equity else 0.0))


def _report_open(acct: _Account) -> None:
    """Positions held after the last session: marked at its close, as its equity row values them."""
    for symbol in sorted(acct.positions):
        pos = acct.positions[symbol]
        acct.result.open_positions.append(OpenPosition(
            acct.result.rule, symbol, pos.entry_time, pos.entry_price, pos.quantity, pos.mark,
            round(pos.entry_charges, 2), round((pos.mark - pos.entry_price) * pos.quantity - pos.entry_charges, 2),
            max(0, pos.sessions - 1)))
