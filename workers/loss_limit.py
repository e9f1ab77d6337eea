"""The daily loss limit at work: read the day's figures of the bot's shares, halt the user when they
fall below ``MAX_DAILY_LOSS_PERCENT`` of the bot's equity at the previous close.

Who checks: the watchdog on each positions refresh; when the watchdog is not scheduled
(``SCHEDULE_WATCHDOG=off``) each stop run (update_cnc_stoploss) and each entry run
(place_orders_daily) instead (doctor says which). The figures are workers.strategy.limits's.

A trip writes the halt flag (kitefleet.halt, ``by: "loss limit"``, ``until``: the next session's
open, with the figures as the reason) and a ``loss_limit`` event. It never replaces a halt a
person set, and after a person lifts a loss-limit halt (``unhalt``) the same session does not halt
again: lifting it was a decision.

``LOSS_LIMIT_ACTION=flatten``: while this session's loss-limit halt stands (:func:`flatten_due`),
every share the bot owns is sold as ``halt USER --flatten`` sells it (workers.flatten; a person's
holdings never): by the watchdog's own exits when it runs (its polls reprice them), else by the
stop run and the entry run (:func:`flatten_when_unwatched`, waiting at most UNWATCHED_FLATTEN_WAIT).
Outside the session nothing is sold ("market closed"); the halt stays.

State (``data/trading_state_<User>.json``, key ``loss_limit``)::

    {"session": "YYYY-MM-DD", "base_equity": float, "base_source": "equity_history" | "computed",
     "tripped_at": ISO | null}

``base_equity`` is fixed at the session's first check, so the floor does not move through the
day: ``equity_history[previous session]["bot_equity"]`` when a report recorded it, else cash
before today's trades + the shares owned at the previous close x the previous close.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from kitefleet import halt
from kitefleet.calendar import NseCalendar
from kitefleet.home import Home
from kitefleet.settings import KEYS
from workers import events, ledger
from workers.gtt import stop_ownership
from workers.portfolio import AccountSnapshot, available_cash, held_quantities, reconcile_ledger
from workers.strategy.limits import DayPnl, Sell, bot_equity, breached, day_pnl, loss_floor

if TYPE_CHECKING:
    from workers.flatten import FlattenReport

STATE_KEY = "loss_limit"
#: LOSS_LIMIT_ACTION values
HALT, FLATTEN = "halt", "flatten"
#: how long (market clock) a stop or entry run waits for a loss-limit flatten's fills: no watchdog
#: reprices its exits afterwards, and at floor(LTP x 0.995) they normally fill at once
UNWATCHED_FLATTEN_WAIT = timedelta(minutes=5)
#: what a loss-limit flatten's exits say asked for them
FLATTEN_BY = "daily loss limit (LOSS_LIMIT_ACTION=flatten)"


def percent_of(settings: Any) -> float:
    default = KEYS["MAX_DAILY_LOSS_PERCENT"].default  # the schema is the one source of defaults
    assert isinstance(default, float)
    value = settings.get("MAX_DAILY_LOSS_PERCENT", default)
    return float(value if value is not None else default)


def watchdog_scheduled(settings: Any) -> bool:
    """True when the scheduler runs the watchdog (it checks the limit on each positions refresh);
    False (``SCHEDULE_HOURLY_CANDLE_WATCHDOG=off``): the stop and entry runs check it."""
    return settings.get("SCHEDULE_HOURLY_CANDLE_WATCHDOG", "session") is not None


def who_checks(settings: Any) -> str:
    """One line for doctor: who enforces the daily loss limit for this user."""
    pct = percent_of(settings)
    if watchdog_scheduled(settings):
        return f"daily loss limit {pct:g} %: checked by the watchdog on each positions refresh"
    return (f"daily loss limit {pct:g} %: the watchdog is not scheduled (SCHEDULE_HOURLY_CANDLE_WATCHDOG=off), "
            "so each stop run and entry run checks it")


#: what a check below the floor does (:func:`trip_action`)
TRIP, ALREADY_HALTED, LIFTED = "halt", "already halted", "lifted today"


def trip_action(over: bool, halted: bool, tripped_at: str | None) -> str | None:
    """What one check does (pure; the backtest calls it too): None when the day P&L is not below
    the floor; else TRIP (halt now), ALREADY_HALTED (a halt stands: a person's is never
    replaced) or LIFTED (a person lifted this session's loss-limit halt: that was a decision)."""
    if not over:
        return None
    if halted:
        return ALREADY_HALTED
    if tripped_at:
        return LIFTED
    return TRIP


@dataclass(frozen=True)
class LossCheck:
    pnl: DayPnl
    base_equity: float
    floor: float
    breached: bool
    halted_now: bool
    text: str


def _num(value: Any) -> float:
    try:
        return float(value or 0)
    except (TypeError, ValueError):
        return 0.0


def _filled(o: Mapping[str, Any]) -> int:
    return int(_num(o.get("filled_quantity")))


def prices(account: AccountSnapshot) -> tuple[dict[str, float], dict[str, float]]:
    """(symbol -> LTP, symbol -> previous close) from the NSE holdings and positions rows."""
    ltp: dict[str, float] = {}
    close: dict[str, float] = {}
    for row in [*account.holdings, *account.positions_net]:
        if str(row.get("exchange") or "NSE").upper() != "NSE":
            continue
        sym = str(row.get("tradingsymbol", "")).upper()
        if _num(row.get("last_price")) > 0:
            ltp[sym] = _num(row.get("last_price"))
        if _num(row.get("close_price")) > 0:
            close[sym] = _num(row.get("close_price"))
    return ltp, close


def _base_equity(kite: Any, state: Mapping[str, Any], account: AccountSnapshot, lots: Mapping[str, Any],
                 sold: dict[str, int], close: Mapping[str, float], today: date, previous: date) -> tuple[float, str]:
    history = (state.get("equity_history") or {}).get(previous.isoformat()) or {}
    if isinstance(history.get("bot_equity"), int | float):
        return float(history["bot_equity"]), "equity_history"
    # Cash before today's trades: what today's CNC buys took out is put back, sells' proceeds out.
    cash = available_cash(kite.margins("equity") or {})
    for o in account.orders:
        if str(o.get("product") or "").upper() != "CNC" or _filled(o) <= 0:
            continue
        value = _filled(o) * _num(o.get("average_price"))
        cash += value if str(o.get("transaction_type")).upper() == "BUY" else -value
    # Shares owned at the previous close: the lots from before today, plus what the bot sold
    # today (the ledger takes a sale off the oldest lots first).
    owned_prev: dict[str, int] = dict(sold)
    for sym, sym_lots in lots.items():
        older = sum(int(rec.get("quantity") or 0) for rec in sym_lots or [] if rec.get("date") != today.isoformat())
        owned_prev[sym] = owned_prev.get(sym, 0) + older
    return bot_equity(cash, owned_prev, close), "computed"


def check(kite: Any, home: Home, user: str, store: Any, account: AccountSnapshot, percent: float,
          calendar: NseCalendar, now: datetime, log: logging.Logger, *, gtts: list[Any] | None = None,
          dry_run: bool = False) -> LossCheck:
    """Compute the day P&L of the bot's shares and halt the user when it is below the floor.
    ``gtts``: the GTT list when the caller read it (a fired bot stop's SELL is told from a
    person's sale by it); dry run: nothing written, nobody halted."""
    today = now.date()
    state = store.read()
    view: dict[str, Any] = {"ledger": copy.deepcopy(state.get("ledger")), "intents": state.get("intents") or {},
                            "stops": state.get("stops") or {}}
    gtt_list = list(gtts) if gtts is not None else []
    reconcile_ledger(view, account, gtt_list, today)
    intents = view["intents"]
    bot_sells = ledger.bot_sell_order_ids(intents, account.orders, gtt_list, stop_ownership(view).owned_ids)
    entries = ledger.entry_order_ids(intents)
    sells: list[Sell] = []
    sold: dict[str, int] = {}
    buys: dict[str, list[float]] = {}
    charged: list[Mapping[str, Any]] = []
    for o in account.orders:
        oid, sym, q = str(o.get("order_id")), str(o.get("tradingsymbol", "")).upper(), _filled(o)
        if q <= 0:
            continue
        side = str(o.get("transaction_type") or "").upper()
        if side == "SELL" and oid in bot_sells:
            sells.append(Sell(sym, q, _num(o.get("average_price"))))
            sold[sym] = sold.get(sym, 0) + q
            charged.append(o)
        elif side == "BUY" and oid in entries:
            b = buys.setdefault(sym, [0.0, 0.0])
            b[0] += q
            b[1] += q * _num(o.get("average_price"))
            charged.append(o)
    charges = _charges(kite, charged)
    ltp, close = prices(account)
    lots = (view["ledger"] or {}).get("lots") or {}
    pnl = day_pnl(lots, ltp, close, today.isoformat(), held=held_quantities(account), sells=sells,
                  today_buy_price={s: v / q for s, (q, v) in buys.items() if q}, charges=charges)
    record = state.get(STATE_KEY) or {}
    if record.get("session") == today.isoformat() and isinstance(record.get("base_equity"), int | float):
        base, source = float(record["base_equity"]), str(record.get("base_source") or "computed")
    else:
        previous = calendar.previous_trading_day(today)
        base, source = _base_equity(kite, state, account, lots, sold, close, today, previous)
        record = {"session": today.isoformat(), "base_equity": base, "base_source": source, "tripped_at": None}
        if not dry_run:
            with store.transaction() as st:
                st[STATE_KEY] = dict(record)
    floor = loss_floor(base, percent)
    over = breached(pnl, base, percent)
    text = (f"day P&L of the bot's shares {pnl.total:,.2f} (unrealised {pnl.unrealised:,.2f}, realised "
            f"{pnl.realised:,.2f}, charges " + (f"{pnl.charges:,.2f}" if pnl.charges_known else "unknown: the broker "
                                                "gave no contract note, counted 0")
            + f") against a floor of {floor:,.2f} (MAX_DAILY_LOSS_PERCENT={percent:g} of bot equity {base:,.2f} at "
            "the previous close)")
    if pnl.missing:
        text += f"; no price for {', '.join(pnl.missing)} (left out)"
    if not over or dry_run:
        return LossCheck(pnl, base, floor, over, False, text)
    current = halt.halt_info(home, user, now)
    action = trip_action(over, current is not None, record.get("tripped_at"))
    if action == ALREADY_HALTED:
        log.warning("daily loss limit reached (%s); already halted (%s)", text, halt.describe(current))
        return LossCheck(pnl, base, floor, True, False, text)
    if action == LIFTED:
        log.warning("daily loss limit reached (%s); a person lifted today's loss-limit halt at or after %s, "
                    "so it is not set again this session", text, record["tripped_at"])
        return LossCheck(pnl, base, floor, True, False, text)
    until = calendar.session_bounds(calendar.next_trading_day(today))[0]
    halt.halt(home, user, reason=f"daily loss limit: {text}", by=halt.BY_LOSS_LIMIT, until=until)
    with store.transaction() as st:
        rec = st.get(STATE_KEY) if isinstance(st.get(STATE_KEY), dict) else dict(record)
        rec["tripped_at"] = now.isoformat()
        st[STATE_KEY] = rec
    log.error("HALTED until %s: daily loss limit reached: %s", until.isoformat(), text)
    events.loss_limit(home, user, text, until, today)
    return LossCheck(pnl, base, floor, True, True, text)


def _charges(kite: Any, orders: list[Mapping[str, Any]]) -> float | None:
    from workers.jobs.daily_report import charges_of

    return charges_of(kite, orders)


def check_when_unwatched(ctx: Any, kite: Any, store: Any, account: AccountSnapshot, calendar: NseCalendar,
                         now: datetime, gtts: list[Any] | None = None) -> LossCheck | None:
    """The stop run's and the entry run's check: only when the watchdog is not scheduled (it
    checks on each positions refresh otherwise). A broker hiccup here never fails the run."""
    if watchdog_scheduled(ctx.settings):
        return None
    from kitefleet.errors import BrokerTemporaryError

    try:
        result = check(kite, ctx.home, ctx.user, store, account, percent_of(ctx.settings), calendar, now, ctx.log,
                       gtts=gtts, dry_run=ctx.dry_run)
    except BrokerTemporaryError as exc:
        ctx.log.warning("daily loss limit not checked this run (%s)", exc)
        return None
    ctx.log.info("daily loss limit: %s", result.text)
    return result


def action_of(settings: Any) -> str:
    return str(settings.get("LOSS_LIMIT_ACTION") or HALT)


def flatten_due(home: Home, user: str, state: Mapping[str, Any], now: datetime) -> bool:
    """True while this session's loss-limit halt stands (tripped today, not lifted, not replaced
    by a person's halt): with ``LOSS_LIMIT_ACTION=flatten`` the bot's shares are to be sold. A
    killed flatten is finished by the next look; it sells nothing twice (workers.flatten)."""
    return flatten_standing(halt.halt_info(home, user, now), state.get(STATE_KEY) or {}, now.date())


def flatten_standing(info: Mapping[str, Any] | None, record: Mapping[str, Any], today: date) -> bool:
    """:func:`flatten_due` on plain data (the backtest calls it): the halt flag's content (None:
    not halted) is the loss limit's, and ``record`` (``state["loss_limit"]``) says it tripped today."""
    return (info is not None and info.get("by") == halt.BY_LOSS_LIMIT
            and record.get("session") == today.isoformat() and bool(record.get("tripped_at")))


def flatten_line(report: FlattenReport) -> str:
    """The one line a loss-limit flatten logs."""
    head = "daily loss limit, LOSS_LIMIT_ACTION=flatten: "
    sold = ", ".join(f"{s.sold} {s.symbol}" for s in report.symbols if s.sold)
    left = "; ".join(f"{s.left} {s.symbol} still open: {s.why}" for s in report.symbols if s.left)
    if report.market_closed and not sold:
        return head + "market closed: nothing sold (no AMOs); the halt stays"
    text = head + (f"sold {sold}" if sold else "nothing the bot owns was left to sell")
    return text + " (a person's holdings are never sold)" + (f"; {left}" if left else "")


def flatten_when_unwatched(ctx: Any, kite: Any, store: Any, now: datetime) -> FlattenReport | None:
    """The stop run's and the entry run's flatten when the watchdog is not scheduled and
    :func:`flatten_due`: workers.flatten.flatten_for, at most UNWATCHED_FLATTEN_WAIT. Call it
    outside the GTT lock: the flatten takes it to tidy the stops after the fills."""
    if watchdog_scheduled(ctx.settings) or ctx.dry_run or action_of(ctx.settings) != FLATTEN:
        return None
    if not flatten_due(ctx.home, ctx.user, store.read(), now):
        return None
    from workers.flatten import flatten_for

    report = flatten_for(ctx, kite, wait=UNWATCHED_FLATTEN_WAIT, by=FLATTEN_BY)
    ctx.log.warning("%s", flatten_line(report))
    return report
