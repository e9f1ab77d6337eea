"""The backtest engine (issue 21): every NSE session of a range replayed through the jobs' own pure
functions (the scan, selection and sizing, the stop at fill, the watchdog's hourly-low rule) and the
shared simulation's fill and charges model. Pure apart from reading the source: no clock, no files,
no broker.

Step 1 of the replay (what this module does so far): the evening scan on completed sessions, the
next morning's entries at the entry slot (book-priced limit, filled on arrival and minute by minute
until ENTRY_TIMEOUT_MINUTES), the stop at fill with its GTT trigger on the minute lows, the hourly-low
exit polled once per minute (the LTP is the last completed minute's close), and the equity at each
close. Minute paths are read only for symbols held or being entered that day.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any

from kitefleet.calendar import NseCalendar
from kitefleet.settings import KEYS
from kitefleet.sim import charges as sim_charges
from kitefleet.sim import fills as sim_fills
from kitefleet.sim.book import Book, to_price, to_ticks
from kitefleet.states import ExitStatus, OrderStatus
from workers.backtest.data import CandleSource
from workers.backtest.model import BacktestSpec, EquityRow, OrderRow, RuleResult, TradeRow
from workers.strategy import patterns, sizing, stops, watchdog_rules
from workers.strategy.patterns import Candle
from workers.strategy.watchdog_rules import RULE_ATR_TRAILING
from workers.watchdog import AtrTrail, SymbolView, decide_symbol

LOOKBACK_CALENDAR_DAYS = 183  # workers/jobs/pattern_daily.py LOOKBACK_CALENDAR_DAYS
ENTRY_SLOT = time(9, 20)  # SCHEDULE_PLACE_ORDERS_DAILY's paper default
STOP_SLOTS = (time(9, 15), time(14, 0))  # SCHEDULE_UPDATE_CNC_STOPLOSS 09:00,14:00 (09:00: at the open)
DEFAULT_INITIAL_CASH = 1_000_000.0
ASSUMPTIONS = (
    "entries at 09:20 (SCHEDULE_PLACE_ORDERS_DAILY's paper default); the stop job at the open and 14:00",
    "the watchdog polls once per completed minute, the LTP being that minute's close",
    "an order meets the book of the minute it is sent in and of each following minute (fill_on_arrival)",
    "a CNC share bought today may be sold today (charged as intraday), as the broker allows",
    "not replayed yet: the daily loss limit (MAX_DAILY_LOSS_PERCENT, LOSS_LIMIT_ACTION) and the halt",
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


@dataclass
class _Account:
    cash: float
    positions: dict[str, _Position] = field(default_factory=dict)
    result: RuleResult = field(default_factory=lambda: RuleResult(rule=""))
    day_charges: float = 0.0
    #: the stop job's GTT_LIMIT_BUFFER_PERCENT and STOP_MIN_GAP_PERCENT (the user's settings)
    buffer_percent: float = 5.0
    min_gap_percent: float = 1.0


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


def _depth(book: Book) -> dict[str, list[dict[str, Any]]]:
    return {"sell": [{"price": to_price(lv.price, book.tick), "quantity": lv.quantity, "orders": lv.orders}
                     for lv in book.asks]}


def _charges(symbol: str, side: str, quantity: int, price: float, intraday: int) -> float:
    fill = sim_charges.Fill("bt", symbol, side, quantity, price)
    return round(float(sim_charges.order_charges(fill, intraday).total), 2)


def _fill(source: CandleSource, symbol: str, day: date, minute: int, buy: bool, limit: float,
          quantity: int, tick: float, last_minute: int) -> tuple[int, float, int]:
    """Shares filled, average price and the minute the order finished, trying the book on arrival
    and then each following minute's book up to ``last_minute``."""
    lim = to_ticks(limit, tick)
    filled, value, m = 0, 0.0, minute
    for m in range(minute, last_minute + 1):
        book = source.book(symbol, day, m)
        if book is None:
            break
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
    symbols = source.symbols()
    ticks = {s: source.tick(s) for s in symbols}
    min_score = int(_setting(spec, "MIN_SCORE"))
    max_positions = int(_setting(spec, "MAX_CNC_POSITIONS"))
    percent = float(_setting(spec, "CAPITAL_DEPLOYMENT_PERCENT"))
    slippage = float(_setting(spec, "ENTRY_SLIPPAGE_PERCENT"))
    max_gap = float(_setting(spec, "ENTRY_MAX_GAP_PERCENT"))
    timeout = int(_setting(spec, "ENTRY_TIMEOUT_MINUTES"))
    stop_minutes = tuple(t.hour * 60 + t.minute - (9 * 60 + 15) for t in STOP_SLOTS)
    slot = ENTRY_SLOT.hour * 60 + ENTRY_SLOT.minute - (9 * 60 + 15)

    # the daily candles, read once for the whole range (the scan's window slides over them)
    first = calendar.previous_trading_day(sessions[0]) if sessions else spec.start
    history: dict[str, list[Candle]] = {}
    missing: list[str] = []
    for s in symbols:
        rows = source.daily(s, first - timedelta(days=LOOKBACK_CALENDAR_DAYS), spec.end)
        if rows is None:
            missing.append(f"{s}: no daily candles")
            rows = []
        history[s] = rows

    accounts = {rule: _Account(cash=spec.initial_cash or DEFAULT_INITIAL_CASH,
                               buffer_percent=float(_setting(spec, "GTT_LIMIT_BUFFER_PERCENT")),
                               min_gap_percent=float(_setting(spec, "STOP_MIN_GAP_PERCENT")),
                               result=RuleResult(rule=rule, missing=list(missing), assumptions=list(ASSUMPTIONS)))
                for rule in spec.rules}
    scan: list[patterns.ScanResult] = []
    for i, day in enumerate(sessions):
        minutes_cache: dict[str, list[Candle] | None] = {}

        def minutes(symbol: str, day: date = day, cache: dict[str, list[Candle] | None] = minutes_cache
                    ) -> list[Candle] | None:
            if symbol not in cache:
                cache[symbol] = source.minutes(symbol, day)
            return cache[symbol]

        for rule, acct in accounts.items():
            acct.day_charges = 0.0
            _enter(spec, source, acct, rule, day, scan, ticks, minutes, min_score=min_score,
                   max_positions=max_positions, percent=percent, slippage=slippage, max_gap=max_gap,
                   slot=slot, timeout=timeout, history=history)
            _manage(source, acct, rule, day, minutes, history, stop_minutes)
            _close_day(acct, rule, day, minutes)
        # the evening scan on the completed session, as pattern_daily runs it
        window_start = day - timedelta(days=LOOKBACK_CALENDAR_DAYS)
        scan = patterns.scan_many({s: [c for c in history[s] if window_start <= _day(c) <= day]
                                   for s in symbols}, ticks)
        if progress is not None:
            progress(i + 1, len(sessions))
    return [acct.result for acct in accounts.values()]


def _enter(spec: BacktestSpec, source: CandleSource, acct: _Account, rule: str, day: date,
           scan: list[patterns.ScanResult], ticks: dict[str, float],
           minutes: Callable[[str], list[Candle] | None], *, min_score: int, max_positions: int,
           percent: float, slippage: float, max_gap: float, slot: int, timeout: int,
           history: dict[str, list[Candle]]) -> None:
    if not scan:
        return
    blocked = {s: "held" for s in acct.positions}
    selected, _ = sizing.select_candidates(scan, blocked, min_score=min_score, max_positions=max_positions)
    for row in selected:
        tick = ticks[row.symbol]
        path = minutes(row.symbol)
        if not path or len(path) <= slot:
            acct.result.missing.append(f"{row.symbol} {day}: no minute candles for the entry")
            continue
        ltp = path[slot - 1].close
        circuit = source.circuit(row.symbol, day)
        if sizing.entry_filter(ltp, row.entry, row.stop_loss, circuit[1] if circuit else None, max_gap):
            continue
        equity = acct.result.equity[-1].equity if acct.result.equity else acct.cash
        risk = _setting(spec, "RISK_PER_TRADE_PERCENT")
        max_value = _setting(spec, "MAX_ORDER_VALUE")
        band = _setting(spec, "PRICE_BAND_PERCENT")
        plan = sizing.size_entry(acct.cash, percent, len(selected), ltp, tick, row.stop_loss, equity,
                                 None if risk is None else float(risk), symbol=row.symbol)
        plan = sizing.fit_to_limits(plan, equity=equity,
                                    max_position_percent=float(_setting(spec, "MAX_POSITION_PERCENT")),
                                    max_order_value=None if max_value is None else float(max_value))
        if plan.quantity <= 0 or sizing.check_pre_trade(plan, ltp, None if max_value is None else float(max_value),
                                                        None if band is None else float(band)):
            continue
        book = source.book(row.symbol, day, slot)
        if book is not None:
            ask = sizing.limit_from_depth(_depth(book), plan.quantity, ltp, slippage, tick)
            if ask.limit is None:
                continue
            plan = sizing.size_entry(acct.cash, percent, len(selected), ltp, tick, row.stop_loss,
                                     symbol=row.symbol, limit=ask.limit, max_quantity=plan.quantity)
            if plan.quantity <= 0:
                continue
        when = _ts(path[slot])
        filled, avg, _ = _fill(source, row.symbol, day, slot, True, plan.limit_price, plan.quantity, tick,
                               min(slot + timeout, len(path) - 1))
        cost = _charges(row.symbol, "BUY", filled, avg, 0) if filled else 0.0
        acct.result.orders.append(OrderRow(rule, when, row.symbol, "BUY", "entry", plan.quantity, plan.limit_price,
                                           filled, avg if filled else None,
                                           "COMPLETE" if filled == plan.quantity else "CANCELLED", round(cost, 2)))
        if not filled:
            continue
        acct.cash -= filled * avg + cost
        acct.day_charges += cost
        prev_low = stops.previous_session_low(history[row.symbol], when)
        decision = stops.stop_at_fill(row.stop_loss, avg, prev_low, ltp, tick,
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


def _try_fill(source: CandleSource, pos: _Position, day: date, minute: int, order: dict[str, Any]) -> None:
    book = source.book(pos.symbol, day, minute)
    if book is None:
        return
    left = int(order["quantity"]) - int(order["filled"])
    for f in sim_fills.fill_on_arrival(False, to_ticks(float(order["price"]), pos.tick), left, book):
        order["filled"] += f.quantity
        order["value"] += f.quantity * to_price(f.price, pos.tick)


def _manage(source: CandleSource, acct: _Account, rule: str, day: date,  # noqa: C901 (one minute loop)
            minutes: Callable[[str], list[Candle] | None], history: dict[str, list[Candle]],
            stop_minutes: tuple[int, ...]) -> None:
    """One session of the held positions, minute by minute: the stop job's trailing at its slots,
    the GTT trigger on the minute's low, the watchdog's per-poll decision (decide_symbol) on the
    minute's close, and the fills of the exits it sends and reprices."""
    for symbol in sorted(acct.positions):
        pos = acct.positions[symbol]
        path = minutes(symbol)
        if not path:
            acct.result.missing.append(f"{symbol} {day}: no minute candles")
            continue
        circuit = source.circuit(symbol, day)
        lower = circuit[0] if circuit else None
        start = 0
        if pos.entry_session == day:
            start = next((k for k, c in enumerate(path) if _ts(c) >= pos.entry_time), len(path))
        since = path[start].date if start < len(path) else path[-1].date
        prev_low = stops.previous_session_low(history[symbol], path[0].date)  # type: ignore[arg-type]
        trail: AtrTrail | None = None
        if rule == RULE_ATR_TRAILING:
            daily = [c for c in history[symbol] if _day(c) < day]
            trail = pos.trail or AtrTrail(daily[-60:], pos.entry_price, None)
            trail.candles = daily[-60:]
            pos.trail = trail
        order: dict[str, Any] | None = None
        hours_upto, level = -1, None
        for k in range(start, len(path)):
            bar = path[k]
            when = _ts(bar) + timedelta(minutes=1)
            if order is not None:
                _try_fill(source, pos, day, k, order)
                if order["filled"] >= order["quantity"]:
                    _book_exit(acct, rule, day, pos, order, when, True)
                    order = None
                    if pos.quantity <= 0:
                        break
            if k in stop_minutes and pos.entry_session != day:
                decision = stops.decide_stop(prev_low, pos.stop, path[k - 1].close if k else bar.open, pos.tick,
                                             has_stop_gtt=pos.stop is not None,
                                             buffer_percent=acct.buffer_percent,
                                             min_gap_percent=acct.min_gap_percent)
                if decision.place and decision.stop is not None and (pos.stop is None or decision.stop > pos.stop):
                    pos.stop = decision.stop  # never lowered
            if order is None and pos.stop is not None and bar.low <= pos.stop:
                order = {"quantity": pos.quantity, "filled": 0, "value": 0.0, "sent": when, "purpose": "stop",
                         "reason": "stop", "price": stops.gtt_limit_price(pos.stop, acct.buffer_percent, tick=pos.tick,
                                                                          lower_circuit=lower)}
                pos.stop = None  # the GTT fired once
                _try_fill(source, pos, day, k, order)
                if order["filled"] >= order["quantity"]:
                    _book_exit(acct, rule, day, pos, order, when, True)
                    order = None
                    break
                continue
            ltp = bar.close
            if trail is not None:
                trail.update(ltp, pos.tick)
                level = trail.stop
            else:
                done = (k + 1) // 60 * 60  # only whole hours can be completed candles; the rest waits
                if done != hours_upto:
                    hours_upto = done
                    hourly = watchdog_rules.eligible_hourly_candles(_hourly(path, done), when, since)  # type: ignore[arg-type]
                    level = watchdog_rules.hourly_low_level(hourly[-2:])
            exits = [] if order is None or order["purpose"] == "stop" else [{
                "status": ExitStatus.SENT, "order_status": OrderStatus.OPEN, "order_id": "bt", "tag": "bt",
                "price": order["price"], "modifications": order["modifications"], "purpose": "exit1"}]
            actions = decide_symbol(rule, symbol, SymbolView(ltp, pos.tick, level, exits, lower), when)
            for r in actions.reprices:
                if order is not None and not r.capped:
                    order["price"] = r.price
                    order["modifications"] += 1
            if actions.exit is not None and order is None and k + 1 < len(path):
                order = {"quantity": pos.quantity, "filled": 0, "value": 0.0, "sent": when, "purpose": "exit",
                         "reason": actions.exit.rule, "price": actions.exit.limit_price, "modifications": 0}
        if order is not None:  # a DAY order: what is unfilled at the close is cancelled
            _book_exit(acct, rule, day, pos, order, _ts(path[-1]) + timedelta(minutes=1), True)
        if pos.quantity <= 0:
            del acct.positions[symbol]


def _close_day(acct: _Account, rule: str, day: date, minutes: Callable[[str], list[Candle] | None]) -> None:
    value = 0.0
    for pos in acct.positions.values():
        path = minutes(pos.symbol)
        value += pos.quantity * (path[-1].close if path else pos.entry_price)
        pos.sessions += 1
    equity = acct.cash + value
    acct.result.equity.append(EquityRow(rule, day, round(acct.cash, 2), round(value, 2), round(equity, 2),
                                        round(acct.day_charges, 2), round(value / equity, 4) if equity else 0.0))
