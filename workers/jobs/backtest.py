"""``backtest``: replay the rules over a range of NSE sessions with this user's settings (issue 21).

    python -m workers backtest --user Som --from DATE --to DATE [--rule hourly_low|atr_trailing|all]
        [--source paper|live] [--seed N] [--scenario FILE] [--out DIR] [--json]

Runs in a process of the user (``orchestrator.py backtest``), so it reads that user's settings
(MIN_SCORE, sizing, limits, MANAGE_SCOPE, WATCHDOG_POLL_SECONDS, the SCHEDULE_* slots of the entry, stop
and watchdog jobs: :data:`SETTINGS_KEYS`, handed to the engine in ``BacktestSpec.settings``) and, for
the initial cash and live history, that user's session through a client that cannot write
(workers.kite_readonly). The initial cash is the account's available cash from ``margins()`` at the
start of the run.

On-disk contract: writes only its output folder (default ``data/<User>/backtests/<YYYYMMDD-HHMMSS>/``
by the clock), first as ``<out>.partial/`` then renamed, so a killed run leaves no ``<out>``; a
leftover ``.partial`` is removed by the rerun. An existing ``<out>`` is refused (exit 2), nothing
written. No state, no intents, no broker writes. Prints the side-by-side table (``--json``: the
summaries as one JSON document) and a progress bar on stderr when stderr is a terminal.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from kitefleet import clock
from kitefleet.calendar import NseCalendar
from kitefleet.errors import ConfigError, TokenError, UsageError
from kitefleet.exitcodes import ExitCode
from workers.backtest.model import RULES, SOURCES, BacktestSpec, RuleResult
from workers.context import JobContext
from workers.faults import fault_point

TAKES_JOB_LOCK = True
LOG_TO_CONSOLE = False

#: The user's settings the replay decides with (their values go into BacktestSpec.settings).
SETTINGS_KEYS: tuple[str, ...] = (
    "UNIVERSE", "MANAGE_SCOPE", "MIN_SCORE", "MAX_CNC_POSITIONS", "MAX_NEW_ENTRIES_PER_DAY", "MAX_CAPITAL",
    "MAX_POSITION_PERCENT", "MAX_DAILY_LOSS_PERCENT", "CAPITAL_DEPLOYMENT_PERCENT", "RISK_PER_TRADE_PERCENT",
    "MAX_ORDER_VALUE", "LOSS_LIMIT_ACTION", "PRICE_BAND_PERCENT", "ENTRY_SLIPPAGE_PERCENT",
    "ENTRY_MAX_GAP_PERCENT", "ENTRY_TIMEOUT_MINUTES", "GTT_LIMIT_BUFFER_PERCENT", "STOP_MIN_GAP_PERCENT",
    "WATCHDOG_POLL_SECONDS", "WATCHDOG_RULE", "ENTRY_CUTOFF",
    "SCHEDULE_PLACE_ORDERS_DAILY", "SCHEDULE_UPDATE_CNC_STOPLOSS", "SCHEDULE_HOURLY_CANDLE_WATCHDOG",
)
#: Calendar days of sessions before the range the calendar must hold (the scan's lookback).
CALENDAR_LOOKBACK_DAYS = 400


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give a date as YYYY-MM-DD") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--from", dest="start", type=_day, required=True, help="first session (YYYY-MM-DD)")
    parser.add_argument("--to", dest="end", type=_day, required=True, help="last session (YYYY-MM-DD)")
    parser.add_argument("--rule", choices=(*RULES, "all"), default=None,
                        help="exit rule to replay (default: the user's WATCHDOG_RULE; all: side by side)")
    parser.add_argument("--source", choices=SOURCES, default="paper", help="paper market or Kite history")
    parser.add_argument("--seed", type=int, default=None, help="paper market seed (default 1)")
    parser.add_argument("--scenario", type=Path, default=None, help="paper market scenario file")
    parser.add_argument("--out", type=Path, default=None, help="output folder (must not exist)")
    parser.add_argument("--json", action="store_true", help="print the summaries as JSON, not the table")


def check_arguments(args: argparse.Namespace) -> None:
    """What can be refused before any file, session or data: UsageError, one line."""
    if args.start > args.end:
        raise UsageError(f"--from {args.start} is after --to {args.end}: give the earlier date first")
    if args.source == "live" and (args.seed is not None or args.scenario is not None):
        raise UsageError("--seed and --scenario choose the paper market: they do not apply to --source live")
    if args.scenario is not None and not Path(args.scenario).is_file():
        raise UsageError(f"--scenario {args.scenario}: no such file")


def rules_of(choice: str | None, setting: object) -> tuple[str, ...]:
    if choice == "all":
        return RULES
    rule = choice or str(setting or RULES[0])
    if rule not in RULES:
        raise UsageError(f"--rule {rule!r}: give one of {', '.join(RULES)} or all")
    return (rule,)


def sessions_of(calendar: NseCalendar, start: date, end: date) -> list[date]:
    days = calendar.trading_days_between(start, end)
    if not days:
        raise UsageError(f"{start}..{end} holds no NSE session: widen the range")
    return days


def out_folder(home: Any, user: str, given: Path | None) -> Path:
    if given is not None:
        return Path(given).resolve()
    return home.user_data_dir(user) / "backtests" / clock.now().strftime("%Y%m%d-%H%M%S")


def refuse_existing(out: Path) -> None:
    if out.exists():
        raise UsageError(f"{out}: already exists; give another --out or move it away (nothing was written)")


@dataclass
class Parts:
    """The three calls into the engine and the report (swappable in tests)."""

    run: Callable[..., list[RuleResult]]
    summarize: Callable[[RuleResult, BacktestSpec], dict[str, Any]]
    side_by_side: Callable[[dict[str, dict[str, Any]]], str]
    write_outputs: Callable[[Path, BacktestSpec, list[RuleResult], dict[str, dict[str, Any]]], None]


def real_parts() -> Parts:
    from workers.backtest import engine, metrics, report

    return Parts(run=engine.run, summarize=metrics.summarize, side_by_side=metrics.side_by_side,
                 write_outputs=report.write_outputs)


def execute(spec: BacktestSpec, source: Any, calendar: NseCalendar, out: Path, parts: Parts, *,
            progress: Callable[[int, int], None] | None = None,
            log: Any = None) -> tuple[list[RuleResult], dict[str, dict[str, Any]]]:
    """Run, summarise, write ``<out>.partial/`` and rename it to ``out``."""
    refuse_existing(out)
    partial = out.with_name(out.name + ".partial")
    if partial.exists():
        # A killed run's leftovers: never a result, so the rerun starts clean.
        if log is not None:
            log.warning("%s: removing a killed run's partial output", partial)
        shutil.rmtree(partial)
    results = parts.run(spec, source, calendar, progress=progress)
    summaries = {r.rule: parts.summarize(r, spec) for r in results}
    partial.mkdir(parents=True)
    parts.write_outputs(partial, spec, results, summaries)
    fault_point("backtest_written")  # tests: a kill here must leave no <out>
    partial.rename(out)
    return results, summaries


def _progress_bar(total_hint: int) -> tuple[Callable[[int, int], None] | None, Callable[[], None]]:
    if not sys.stderr.isatty():
        return None, lambda: None
    from tqdm import tqdm

    bar = tqdm(total=total_hint, unit="session", file=sys.stderr, leave=False)

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()

    return progress, bar.close


def run(ctx: JobContext, parts: Parts | None = None) -> int:
    from kitefleet.calendar import build_from_library
    from workers.kite_readonly import build_readonly_kite
    from workers.universe import resolve_universe

    args = ctx.args
    check_arguments(args)
    rules = rules_of(args.rule, ctx.settings.get("WATCHDOG_RULE"))
    calendar, _ = build_from_library(args.start - timedelta(days=CALENDAR_LOOKBACK_DAYS),
                                     args.end + timedelta(days=10))
    sessions = sessions_of(calendar, args.start, args.end)
    out = out_folder(ctx.home, ctx.user, args.out)
    refuse_existing(out)
    _, symbols = resolve_universe(ctx.home, ctx.settings.get("UNIVERSE"))
    try:
        kite = build_readonly_kite(ctx.home, ctx.settings, ctx.log)
    except TokenError as exc:
        raise ConfigError(f"backtest needs {ctx.user}'s session for the cash and history: {exc}") from None
    cash = float(kite.margins()["equity"]["available"]["cash"])
    settings = {key: _plain(key, ctx.settings.get(key)) for key in SETTINGS_KEYS}
    spec = BacktestSpec(user=ctx.user, start=args.start, end=args.end, rules=rules, source=args.source,
                        seed=1 if args.seed is None else args.seed,
                        scenario=None if args.scenario is None else str(args.scenario),
                        initial_cash=cash, settings=settings)
    if args.source == "live":
        from workers.backtest.live import LiveSource
        from workers.marketdata import MarketData

        source: Any = LiveSource(MarketData(ctx.home, ctx.settings.data_source, kite, calendar=calendar),
                                 calendar, symbols, ctx.log)
        needed = source.requests_needed(spec)
        line = f"live history: {needed} historical requests for {len(symbols)} symbols (cached data costs none)"
        ctx.log.info("%s", line)
        print(line, file=sys.stderr, flush=True)
    else:
        from workers.backtest.paper import PaperSource

        source = PaperSource(calendar, spec.seed, args.scenario, symbols)
    ctx.log.info("backtest %s..%s (%d sessions), rules %s, source %s, cash %.2f -> %s", args.start, args.end,
                 len(sessions), ",".join(rules), args.source, cash, out)
    parts = parts or real_parts()
    progress, close = _progress_bar(len(sessions))
    try:
        _, summaries = execute(spec, source, calendar, out, parts, progress=progress, log=ctx.log)
    finally:
        close()
    if args.json:
        print(json.dumps({"out": str(out), "summaries": summaries}, sort_keys=True, default=str), flush=True)
    else:
        print(parts.side_by_side(summaries), flush=True)
        print(f"written to {out}", flush=True)
    return ExitCode.OK


def _plain(key: str, value: object) -> object:
    if key.startswith("SCHEDULE_"):
        # the scheduler's own text form ("off" stays off); the engine parses it with the settings' parser
        from workers.schedule import format_schedule

        return format_schedule(value)  # type: ignore[arg-type]
    return value if value is None or isinstance(value, bool | int | float | str) else str(value)
