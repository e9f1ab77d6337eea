"""``hourly_candle_watchdog``: intraday exits on hourly-candle lows (or an ATR trailing stop),
coordinated with the GTT stops. Runs from the session open (or its own start, if later) until the
close, then exits 0; outside a session it exits 0 at once. The loop, the rules it applies and its
state (``state["watchdog"]``) are described in workers.watchdog; this module runs the loop
(:func:`watch`): start, then one ``poll(now)`` per WATCHDOG_POLL_SECONDS until the close.

    python -m workers hourly_candle_watchdog --user Som [--dry-run] [--json]

Settings: WATCHDOG_RULE (hourly_low | atr_trailing), WATCHDOG_POLL_SECONDS (simulated seconds
between LTP polls), MANAGE_SCOPE (own: only the shares the bot owns are watched and sold,
workers.watchdog_scope; all: every NSE CNC holding, with a warning at the start).
``--dry-run`` logs the exits it would place and writes nothing: no order, no GTT change,
no state. ``--json`` prints a one-line summary (polls, API calls by route, exits) at the end.

A broker that fails while the watchdog starts (the paper login, the first reconcile or positions
read: BrokerTemporaryError) does not end the job: it tries again with back-off until the close,
since the scheduler reruns a failed job only a few times a day. A token error still exits 5. If
it never started by the close it exits 7 (outcome "never started"). A failed poll (broker
unreachable after the client's retries) is logged and the loop goes on: the GTT stays the
backstop meanwhile. When the clock runs so fast that one poll interval is less than a wall second
(Kite allows one quote request per second), the polls come as fast as the shared limiter lets
them, and a warning says so once.
"""

from __future__ import annotations

import argparse
import json
import threading
from dataclasses import asdict
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from kitefleet import clock
from kitefleet.calendar import load_calendar
from kitefleet.errors import BrokerTemporaryError
from kitefleet.exitcodes import ExitCode
from kitefleet.state import StateStore
from workers.context import STOP, JobContext

if TYPE_CHECKING:
    from workers.watchdog import Stats, Watchdog

TAKES_JOB_LOCK = True
HANDLES_STOP = True
#: back-off between failed starts (simulated seconds), doubling up to the cap
START_RETRY_SECONDS = 5.0
START_RETRY_MAX_SECONDS = 60.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print a one-line JSON summary when done")


def _summary(ctx: JobContext, outcome: str, **extra: object) -> None:
    if getattr(ctx.args, "json", False):
        print(json.dumps({"user": ctx.user, "outcome": outcome, **extra}, separators=(",", ":"), default=str),
              flush=True)


def _connect(ctx: JobContext, clk: clock.Clock, closing: datetime) -> Any | None:
    """The Kite client, retried with back-off (simulated seconds) until the close or STOP."""
    from workers.kite_client import get_kite

    backoff = START_RETRY_SECONDS
    while not STOP.is_set() and clk.now() < closing:
        try:
            return get_kite(ctx)
        except BrokerTemporaryError as exc:
            ctx.log.warning("no Kite session yet (%s); trying again in %g s", exc, backoff)
            clk.sleep_until(min(clk.now() + timedelta(seconds=backoff), closing), stop=STOP)
            backoff = min(backoff * 2, START_RETRY_MAX_SECONDS)
    return None


def run(ctx: JobContext) -> int:
    clk = clock.get_clock()
    now = clk.now()
    calendar = load_calendar(ctx.home.calendar_file, now.date())
    day = now.date()
    if not calendar.is_trading_day(day):
        ctx.log.info("%s is not an NSE trading day: nothing to watch", day)
        _summary(ctx, "no session")
        return 0
    opening, closing = calendar.session_bounds(day)
    if now >= closing:
        ctx.log.info("the session of %s closed at %s: nothing to watch", day, closing.strftime("%H:%M"))
        _summary(ctx, "no session")
        return 0
    if now < opening:
        ctx.log.info("waiting for the session open at %s", opening.strftime("%H:%M"))
        if not clk.sleep_until(opening, stop=STOP):
            _summary(ctx, "stopped")
            return 0

    from workers import loss_limit
    from workers.bot_stop import StopSettings
    from workers.marketdata import MarketData
    from workers.portfolio import ALL, OWN, SCOPE_ALL_WARNING
    from workers.watchdog import Watchdog

    kite = _connect(ctx, clk, closing)
    if kite is None:
        if STOP.is_set():
            _summary(ctx, "stopped")
            return 0
        ctx.log.error("the session closed before the watchdog could reach the broker")
        _summary(ctx, "never started")
        return int(ExitCode.BROKER_TEMPORARY)
    market = MarketData(ctx.home, ctx.settings.data_source, kite, calendar=calendar)
    store = StateStore(ctx.home, ctx.user, ctx.settings.mode)
    rule = str(ctx.settings["WATCHDOG_RULE"])
    poll = float(ctx.settings.integer("WATCHDOG_POLL_SECONDS"))
    ctx.log.info("watching %s's CNC positions until %s: rule %s, poll every %g s%s", ctx.user,
                 closing.strftime("%H:%M"), rule, poll, " (dry run)" if ctx.dry_run else "")
    scope = str(ctx.settings.get("MANAGE_SCOPE", OWN))
    if scope == ALL:
        ctx.log.warning("%s", SCOPE_ALL_WARNING)
    watchdog = Watchdog(user=ctx.user, kite=kite, market=market, store=store, calendar=calendar, clock=clk,
                        rule=rule, poll_seconds=poll, dry_run=ctx.dry_run, log=ctx.log, stop=STOP,
                        manage_scope=scope, loss_limit_percent=loss_limit.percent_of(ctx.settings),
                        stop_settings=StopSettings.of(ctx.settings),
                        loss_limit_action=loss_limit.action_of(ctx.settings))
    stats = watch(watchdog, STOP)
    if not stats.started and not STOP.is_set():
        ctx.log.error("the session closed before the watchdog could start: its exits did not run today")
        _summary(ctx, "never started", calls=kite.calls, **asdict(stats))
        return int(ExitCode.BROKER_TEMPORARY)
    ctx.log.info("done: %d polls, %d exits placed, %d GTT changes, API calls %s", stats.polls,
                 stats.exits_placed, stats.gtt_actions, kite.calls)
    _summary(ctx, "stopped" if STOP.is_set() else "closed", calls=kite.calls, **asdict(stats))
    return 0


# --- the loop ------------------------------------------------------------------------------------
def watch(wd: Watchdog, stop: threading.Event) -> Stats:
    """Watch until the close (or ``stop``); returns the counters."""
    try:
        if _start(wd, stop):
            _loop(wd, stop)
    finally:
        wd.refresher.close(2.0)
    wd.flush()
    return wd.stats


def _start(wd: Watchdog, stop: threading.Event) -> bool:
    """``wd.start()`` until it succeeds, the close or ``stop``; False if it never did. A broker
    that fails at the open must not cost the session its watchdog (the scheduler reruns a failed
    job only a few times a day); a TokenError (exit 5) and other errors still end the job."""
    backoff = START_RETRY_SECONDS
    failing_since: datetime | None = None
    while not stop.is_set():
        now = wd.clock.now()
        if now >= wd.closing:
            wd.log.error("session closed at %s before the watchdog could start", wd.closing.strftime("%H:%M"))
            return False
        try:
            wd.start()
        except BrokerTemporaryError as exc:
            wd.stats.errors += 1
            failing_since = failing_since or now
            wd.log.warning("start failed (%s); trying again in %g s, the GTT stays the backstop", exc, backoff)
            wd.flush()
            wd.clock.sleep_until(min(now + timedelta(seconds=backoff), wd.closing), stop=stop)
            backoff = min(backoff * 2, START_RETRY_MAX_SECONDS)
            continue
        if failing_since is not None:
            wd.log.info("started after failures since %s", failing_since.strftime("%H:%M:%S"))
        wd.stats.started = True
        return True
    return False


def _loop(wd: Watchdog, stop: threading.Event) -> None:
    next_poll = wd.clock.now()
    failing_since: datetime | None = None
    while not stop.is_set():
        now = wd.clock.now()
        if now >= wd.closing:
            wd.log.info("session closed at %s: stopping", wd.closing.strftime("%H:%M"))
            return
        if now < next_poll:
            wd.clock.sleep_until(min(next_poll, wd.closing), max_wall=1.0, stop=stop)
            continue
        wd.note_speed()
        try:
            wd.poll(now)
            if failing_since is not None:
                wd.log.info("polling again after failures since %s", failing_since.strftime("%H:%M:%S"))
            failing_since = None
        except BrokerTemporaryError as exc:
            # A watchdog that gives up leaves positions unwatched: keep trying (the GTT still stands).
            wd.stats.errors += 1
            if failing_since is None:
                failing_since = now
                wd.log.warning("poll failed (%s); the watchdog keeps polling", exc)
        # On time: the next slot of the grid. Behind (rate limit, slow broker): at once.
        next_poll = now + timedelta(seconds=wd.poll_seconds)
