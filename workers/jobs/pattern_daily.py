"""``pattern_daily``: score the user's universe on completed daily sessions and write the scan file.

    python -m workers pattern_daily --user Som [--dry-run] [--json] [--top N] [--no-shared-cache]

For each symbol of ``UNIVERSE`` (workers.universe: the NIFTY 50 by default, or a CSV of symbols) it
reads the daily candles of about six months of **completed** sessions, ending with the last
session completed by the shared clock and the exported NSE calendar, and scores them with
``workers.strategy.patterns.scan_symbol`` (seven-condition bullish reversal score, stop, targets,
risk-reward, SMA20-slope trend, growth pattern; the rules are in that module's docstring). The
window depends only on that last session, never on the time of day, so a scan at 18:00 and one at
09:16 the next morning (before that day's session has completed) write byte-identical files.

On-disk contract (written only by this job, under its per-(user, job) lock; the file format is
workers.scans's):

    data/<User>/scans/pattern_daily_<YYYYMMDD>.csv
        <YYYYMMDD> is the last completed session the scan used. One row per universe symbol, also
        for score 0, "insufficient data: N candles, need 60", "no valid stop: ...", a bad candle, or
        an instrument the broker does not list (``reason`` says which); rows ordered by score, then
        risk-reward (both descending), then symbol. Written atomically, so place_orders_daily never
        reads a half-written scan; a rerun for the same session replaces the file.

Candles come through the shared market-data cache (workers.marketdata: one fetch per symbol and
session range for all users of one data source). ``--no-shared-cache`` bypasses it and fetches
every symbol's candles from the broker in this process, as the legacy per-user scanners did: for
benchmarks and for comparing results, never needed in production. ``--dry-run`` scans and prints
the summary but writes no file (a scan sends no orders either way). ``--json`` prints one JSON
line (file, session, counts, top rows, this process's Kite calls) instead of the table.

Exit codes: 0 done; 5 Kite session missing or expired; 7 broker unavailable or still rate
limited after retries (nothing is written: a scan with holes would silently drop candidates);
4 a bad ``UNIVERSE`` setting or file.
"""

from __future__ import annotations

import argparse
import json
import zlib
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from kitefleet import clock
from kitefleet.errors import BrokerPermanentError
from workers.context import JobContext
from workers.scans import scan_file, write_scan
from workers.strategy.patterns import ScanResult, scan_sort_key, scan_symbol, session_date
from workers.universe import resolve_universe

TAKES_JOB_LOCK = True

#: "About six months" of daily candles: ~125 sessions, well above patterns.MIN_CANDLES (60).
LOOKBACK_CALENDAR_DAYS = 183
DEFAULT_TOP = 10


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-shared-cache", action="store_true",
                        help="fetch every symbol's candles in this process, bypassing the shared "
                             "market-data cache (legacy per-user behaviour; for benchmarks)")
    parser.add_argument("--json", action="store_true", help="print one JSON summary line instead of the table")
    parser.add_argument("--top", type=int, default=DEFAULT_TOP, metavar="N",
                        help=f"rows shown in the summary (default {DEFAULT_TOP})")


def scan_order(user: str, symbols: list[str]) -> list[str]:
    """The universe rotated by a stable per-user offset: users scanning at once then start on
    different symbols, each fetching a different part into the shared cache under its own API
    key's rate limit, instead of all queueing on the same symbol's lock."""
    if not symbols:
        return []
    offset = zlib.crc32(user.encode()) % len(symbols)
    return symbols[offset:] + symbols[:offset]


@dataclass
class _Candles:
    """Daily candles of completed sessions, through the shared cache or straight from Kite."""

    md: Any
    shared: bool
    historical_calls: int = 0
    failures: dict[str, str] = field(default_factory=dict)

    def daily(self, symbol: str, start: date, end: date, now: datetime) -> list[dict[str, Any]]:
        if self.shared:
            before = self.md.api_calls["historical"]
            try:
                return list(self.md.daily_candles(symbol, start, end, last_completed=end, now=now))
            finally:
                self.historical_calls += self.md.api_calls["historical"] - before
        self.historical_calls += 1
        return list(self.md.kite.historical_data(self.md.token(symbol), start, end, "day"))


def scan_universe(ctx: JobContext, symbols: list[str], now: datetime,
                  shared: bool = True) -> tuple[date, list[ScanResult], _Candles]:
    """Scan ``symbols`` on the sessions completed at ``now``; results ordered by scan_sort_key."""
    from workers.marketdata import UnknownInstrument, market_data_for

    md = market_data_for(ctx)
    last = md.calendar.last_completed_session(now)
    start = last - timedelta(days=LOOKBACK_CALENDAR_DAYS)
    source = _Candles(md, shared)
    results: list[ScanResult] = []
    rejected: list[BrokerPermanentError] = []
    for symbol in scan_order(ctx.user, symbols):
        try:
            tick = md.tick_size(symbol)
            rows = source.daily(symbol, start, last, now)
        except UnknownInstrument:
            results.append(ScanResult(symbol, 0, reason=f"unknown instrument: {md.exchange} lists no {symbol}"))
            continue
        except BrokerPermanentError as exc:
            # One symbol refused (bad token, no data): the others still deserve a score. Temporary
            # failures and token errors propagate: a scan with holes must not look complete.
            rejected.append(exc)
            results.append(ScanResult(symbol, 0, reason=f"candles refused by the broker: {exc}"))
            ctx.log.warning("%s: candles refused: %s", symbol, exc)
            continue
        completed = [r for r in rows if start <= session_date(r["date"]) <= last]
        results.append(scan_symbol(symbol, completed, tick))
    if rejected and len(rejected) == len(symbols):
        raise rejected[0]  # every symbol refused: an account or setup problem, not the symbols
    results.sort(key=scan_sort_key)
    return last, results, source


def _fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def summary_table(results: list[ScanResult], top: int) -> list[str]:
    lines = [f"  {'symbol':<12} {'score':>5} {'r:r':>5} {'entry':>10} {'stop':>10} {'target1':>10} "
             f"{'trend':<8} growth"]
    for r in results[:max(top, 0)]:
        growth = r.growth_pattern or (r.reason or "")[:40]
        lines.append(f"  {r.symbol:<12} {r.score:>5} {_fmt(r.risk_reward):>5} {_fmt(r.entry):>10} "
                     f"{_fmt(r.stop_loss):>10} {_fmt(r.target_1):>10} {r.trend or '-':<8} {growth}")
    return lines


def run(ctx: JobContext) -> int:
    now = clock.now()
    universe, symbols = resolve_universe(ctx.home, ctx.settings.text("UNIVERSE"))
    shared = not ctx.args.no_shared_cache
    min_score = ctx.settings.integer("MIN_SCORE")
    ctx.log.info("scanning %d symbols of %s at %s (%s)", len(symbols), universe, now.isoformat(),
                 "shared cache" if shared else "no shared cache")
    last, results, source = scan_universe(ctx, symbols, now, shared=shared)

    path = scan_file(ctx.home, ctx.user, last)
    if not ctx.dry_run:
        write_scan(path, results)  # we hold the job lock (see write_scan)
    not_scored = [r for r in results if r.reason is not None and r.trend is None]
    counts = {
        "symbols": len(results),
        "qualifying": sum(r.score >= min_score for r in results),
        "scored": len(results) - len(not_scored),
        "insufficient_data": sum((r.reason or "").startswith("insufficient data") for r in results),
        "not_scored": len(not_scored),
    }
    rel = path.relative_to(ctx.home.root) if path.is_relative_to(ctx.home.root) else path
    ctx.log.info("%s %s: %s; %d historical calls by this process", "would write" if ctx.dry_run else "wrote",
                 rel, counts, source.historical_calls)
    if ctx.args.json:
        print(json.dumps({
            "user": ctx.user, "file": str(path), "written": not ctx.dry_run, "last_session": last.isoformat(),
            "universe": universe, "shared_cache": shared, "min_score": min_score, **counts,
            "historical_calls": source.historical_calls,
            "top": [{"symbol": r.symbol, "score": r.score, "risk_reward": r.risk_reward}
                    for r in results[:max(ctx.args.top, 0)]],
        }, separators=(",", ":")), flush=True)
        return 0
    print(f"pattern_daily {ctx.user}: {len(results)} symbols of {universe}, sessions up to {last} "
          f"(scanned at {now:%Y-%m-%d %H:%M})")
    print(f"{'dry run, not written' if ctx.dry_run else 'wrote'}: {rel}")
    print(f"score >= {min_score}: {counts['qualifying']}; scored: {counts['scored']}; "
          f"not scored: {counts['not_scored']} (insufficient data: {counts['insufficient_data']}); "
          f"historical calls: {source.historical_calls}{'' if shared else ' (shared cache off)'}")
    for line in summary_table(results, ctx.args.top):
        print(line)
    return 0
