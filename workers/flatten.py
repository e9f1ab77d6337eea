"""Sell every position the bot owns, now: ``orchestrator.py halt USER --flatten`` (through the
``flatten`` job) and the daily loss limit with ``LOSS_LIMIT_ACTION=flatten`` (workers.loss_limit:
:func:`flatten_for` from the stop and entry runs; the running watchdog calls :func:`sell_symbol`).

What is sold is what the watchdog may sell (workers.watchdog_scope): per symbol ``min(owned - the
bot's open SELLs, held - all open CNC SELLs)`` under ``MANAGE_SCOPE=own``. A person's holding in
the same account is never sold, nor is a person's open SELL or GTT child touched.

How, in a process of the user, on a workers.watchdog.Watchdog of its own (so every rule of the
watchdog's exits holds: the intent protocol, the exit records, the attempt cap, the circuit band):

1. start as the watchdog does: reconcile the intents, take in the exit records of the session
   (a killed earlier flatten's too), read the positions and the ledger, follow the bot's GTT
   children (a fired bot stop's SELL);
2. per owned symbol, one ``quote()``: the target is floor(LTP x 0.995) clamped to the lower
   circuit limit; every open SELL of the bot that rests above it (its exits, its GTT children) is
   modified down to it (intent kind ``modify``, at most MAX_EXIT_MODIFICATIONS per order), and a
   new exit at it is sent only for the rest (an ordinary watchdog exit record: its tag, its
   purpose ``exit``/``exit2``/..., ``rule`` ``flatten``), under the user's exit lock
   (kitefleet.locks.exit_lock), so a running watchdog never sizes an exit from the same book;
3. again every FLATTEN_POLL_SECONDS (market clock) until nothing owned is held or the wait is
   over; after a fill the bot's stop GTTs are deleted or cut to the owned shares still held (the
   watchdog's tidy, workers.gtt): the stops stand until the shares are gone.

A running watchdog takes the flatten's exit records in at its next poll (the state file changed:
workers.exit_records.merge_exit_records) and goes on repricing them after the flatten returns.
Outside the session nothing is sent (no AMOs): the report says "market closed".

Restart: a flatten killed after an exit's intent, or after its send, and run again sells once
(the exit's tag is found in the book, or provably never reached it: docs/restart-behaviour.md).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from kitefleet.calendar import NseCalendar
from kitefleet.clock import Clock
from kitefleet.errors import BrokerTemporaryError
from kitefleet.states import ExitStatus, OrderStatus
from workers.exit_records import GTT_CHILD, exit_pending, next_exit_purpose
from workers.strategy.watchdog_rules import ExitDecision, clamp_to_band, marketable_limit
from workers.watchdog import Watchdog
from workers.watchdog_exits import EXCHANGE, MAX_EXIT_MODIFICATIONS, Reprice

#: the ``rule`` of a flatten's exit record
RULE_FLATTEN = "flatten"
#: market-clock seconds between two looks while waiting for the fills
FLATTEN_POLL_SECONDS = 10.0
#: the default wait, in market-clock minutes
DEFAULT_WAIT_MINUTES = 10.0
MARKET_CLOSED = "market closed"


@dataclass
class SymbolOutcome:
    """One owned symbol: ``owned`` at the start (what the bot may sell), ``sold`` since, ``left``
    still owned and held, and why it is still open."""

    symbol: str
    owned: int
    sold: int = 0
    left: int = 0
    why: str = ""
    orders: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class FlattenReport:
    user: str
    market_closed: bool = False
    started_at: str | None = None
    ended_at: str | None = None
    symbols: list[SymbolOutcome] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def done(self) -> bool:
        return not self.market_closed and all(s.left == 0 for s in self.symbols)

    def as_dict(self) -> dict[str, Any]:
        return {"user": self.user, "market_closed": self.market_closed, "done": self.done,
                "started_at": self.started_at, "ended_at": self.ended_at,
                "symbols": [dataclasses.asdict(s) for s in self.symbols], "errors": self.errors}


def open_sells(exits: list[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The records of the bot's SELLs that the book shows open (exits and GTT children)."""
    return [e for e in exits if e.get("status") == ExitStatus.SENT and e.get("order_id")
            and e.get("order_status") not in (OrderStatus.COMPLETE, OrderStatus.CANCELLED, OrderStatus.REJECTED)]


def flatten_reprices(exits: list[Mapping[str, Any]], target: float) -> list[Reprice]:
    """Every open SELL of the bot resting above ``target`` is modified down to it (pure)."""
    return [Reprice(str(e["tag"]), str(e["order_id"]), target,
                    int(e.get("modifications") or 0) >= MAX_EXIT_MODIFICATIONS)
            for e in open_sells(exits) if float(e.get("price") or 0.0) > target]


def why_open(exits: list[Mapping[str, Any]], ltp: float | None, lower: float | None, target: float | None) -> str:
    """Why an owned symbol is still held (pure; for the report)."""
    live = open_sells(exits)
    if live:
        e = live[-1]
        what = "the bot's fired stop" if e.get("purpose") == GTT_CHILD else f"exit {e.get('tag')}"
        at_band = lower is not None and abs(float(e.get("price") or 0.0) - lower) < 1e-6
        if at_band:
            return f"{what} queued at the lower circuit {lower} (LTP {ltp}): fills when the price leaves the band"
        if int(e.get("modifications") or 0) >= MAX_EXIT_MODIFICATIONS and target is not None \
                and float(e.get("price") or 0.0) > target:
            return f"{what} rests at {e.get('price')} above the LTP {ltp}, modified {MAX_EXIT_MODIFICATIONS} times"
        return f"{what} open at {e.get('price')} (LTP {ltp}), {e.get('filled') or 0} of {e.get('quantity')} filled"
    if exit_pending(exits):
        return "an exit's outcome is not known yet (the order book will tell)"
    if next_exit_purpose(exits) is None:
        return "no exit attempt left this session (the stop GTT stays in place)"
    last = next((e for e in reversed(exits) if e.get("note")), None)
    return f"not sold: {last.get('note')}" if last else "no exit open"


def flatten_owned(wd: Watchdog, *, wait: timedelta, stop: threading.Event,
                  progress: Callable[[str], None] | None = None, by: str = "halt --flatten") -> FlattenReport:
    """Sell the bot's owned shares through ``wd`` (a Watchdog of the user, not started), for at
    most ``wait`` of market clock; see the module docstring. The halt flag is the caller's;
    ``by`` names it in the exits' notes."""
    clk, log = wd.clock, wd.log
    say = progress or (lambda _line: None)
    report = FlattenReport(wd.user)
    now = clk.now()
    report.started_at = now.isoformat()
    if not wd.opening <= now < wd.closing:
        report.market_closed = True
        report.ended_at = now.isoformat()
        wd.refresher.close(2.0)
        log.warning("%s: nothing sold (no AMOs); the halt stays", MARKET_CLOSED)
        return report
    try:
        wd.start()
        started = dict(wd.tracked)
        report.symbols = [SymbolOutcome(s, q) for s, q in sorted(started.items())]
        if not started:
            say("nothing the bot owns is held")
        else:
            say("selling " + ", ".join(f"{q} {s}" for s, q in sorted(started.items())))
        deadline = now + wait
        quotes: dict[str, tuple[float, float | None, float]] = {}
        while True:
            now = clk.now()
            if now >= wd.closing:
                report.market_closed = True
                break
            wd.cancel_entries_if_halted(now)
            for symbol in sorted(wd.tracked):
                quotes[symbol] = sell_symbol(wd, symbol, now, by)
            wd.flush()
            left = {s: q for s, q in wd.tracked.items() if q > 0}
            sold = {s.symbol: s.owned - left.get(s.symbol, 0) for s in report.symbols}
            if not left:
                break
            say("still held: " + ", ".join(f"{q} {s}" for s, q in sorted(left.items()))
                + (f"; sold {', '.join(f'{q} {s}' for s, q in sorted(sold.items()) if q)}" if any(sold.values())
                   else ""))
            if now >= deadline or stop.is_set():
                break
            clk.sleep_until(min(now + timedelta(seconds=FLATTEN_POLL_SECONDS), deadline), stop=stop)
            wd.refresh_positions(clk.now())
        wd.refresh_positions(clk.now())  # the last fills in, the GTTs tidied after them
        wd.flush()
    except BrokerTemporaryError as exc:
        report.errors.append(str(exc))
        log.warning("flatten interrupted by the broker (%s); run it again: it sells nothing twice", exc)
    finally:
        wd.refresher.close(2.0)
    for s in report.symbols:
        s.left = max(0, wd.tracked.get(s.symbol, 0))
        s.sold = max(0, s.owned - s.left)
        exits = wd.sym(s.symbol)["exits"]
        s.orders = [{"order_id": e.get("order_id"), "tag": e.get("tag"), "rule": e.get("rule"),
                     "price": e.get("price"), "quantity": e.get("quantity"), "filled": e.get("filled"),
                     "status": e.get("order_status") or e.get("status")} for e in exits if e.get("order_id")]
        if s.left:
            ltp, lower, target = quotes.get(s.symbol, (None, None, None))
            s.why = MARKET_CLOSED if report.market_closed else why_open(exits, ltp, lower, target)
    report.ended_at = clk.now().isoformat()
    return report


def sell_symbol(wd: Watchdog, symbol: str, now: datetime,
                by: str = "halt --flatten") -> tuple[float, float | None, float]:
    """One look at one owned symbol: reprice the bot's open SELLs above the target, then an exit
    for the rest (``by``: what asked, for the exit's note). Returns (LTP, lower circuit, target)."""
    row = wd.kite.quote(f"{EXCHANGE}:{symbol}").get(f"{EXCHANGE}:{symbol}") or {}
    ltp = float(row.get("last_price") or 0.0)
    lower = float(row.get("lower_circuit_limit") or 0.0) or None
    if ltp <= 0:
        return ltp, lower, 0.0
    tick = wd.ticks[symbol]
    target = clamp_to_band(marketable_limit(ltp, tick), lower, tick)
    exits = wd.sym(symbol)["exits"]
    wd.reprice(symbol, ltp, now, flatten_reprices(exits, target))
    if not exit_pending(exits):
        # Sized inside the exit lock from a fresh book: the bot's open SELLs (repriced above) are
        # netted out, so this sells only the rest.
        wd.exit(symbol, ExitDecision(RULE_FLATTEN, ltp, ltp, target,
                                     f"{by}: sell every owned share at {target} (LTP {ltp})"), now)
    return ltp, lower, target


def build_watchdog(*, user: str, kite: Any, market: Any, store: Any, calendar: NseCalendar, clock: Clock,
                   settings: Any, log: logging.Logger, stop: threading.Event) -> Watchdog:
    """The Watchdog a flatten sells through: the user's rule and scope, never a dry run."""
    return Watchdog(user=user, kite=kite, market=market, store=store, calendar=calendar, clock=clock,
                    rule=str(settings.get("WATCHDOG_RULE") or "hourly_low"), poll_seconds=FLATTEN_POLL_SECONDS,
                    dry_run=False, log=log, stop=stop, manage_scope=str(settings.get("MANAGE_SCOPE") or "own"))


def flatten_for(ctx: Any, kite: Any, *, wait: timedelta = timedelta(minutes=DEFAULT_WAIT_MINUTES),
                progress: Callable[[str], None] | None = None,
                stop: threading.Event | None = None, by: str = "halt --flatten") -> FlattenReport:
    """:func:`flatten_owned` for a job of the user (``ctx``: workers.context.JobContext, ``kite``
    its client): the loss limit with ``LOSS_LIMIT_ACTION=flatten`` calls this after writing the
    halt flag. Outside the session it sends nothing and says so (``market_closed``)."""
    from kitefleet import clock as clock_mod
    from kitefleet.calendar import load_calendar
    from kitefleet.state import StateStore
    from workers.context import STOP
    from workers.marketdata import MarketData

    clk = clock_mod.get_clock()
    calendar = load_calendar(ctx.home.calendar_file, clk.now().date())
    if not calendar.is_trading_day(clk.now().date()):
        report = FlattenReport(ctx.user, market_closed=True, started_at=clk.now().isoformat(),
                               ended_at=clk.now().isoformat())
        ctx.log.warning("%s (not a trading day): nothing sold (no AMOs); the halt stays", MARKET_CLOSED)
        return report
    market = MarketData(ctx.home, ctx.settings.data_source, kite, calendar=calendar)
    store = StateStore(ctx.home, ctx.user, ctx.settings.mode)
    wd = build_watchdog(user=ctx.user, kite=kite, market=market, store=store, calendar=calendar, clock=clk,
                        settings=ctx.settings, log=ctx.log, stop=stop or STOP)
    return flatten_owned(wd, wait=wait, stop=stop or STOP, progress=progress, by=by)
