"""Benchmark of the backtest (issue 21): months of sessions in seconds, in one process.

    .venv/bin/python bench/bench_backtest.py [--sessions 250] [--symbols 50] [--seed 1]
        [--demo-seconds-per-day 140] [--top 12] [--smoke]

The paper source (the shared simulated market, in process) over the last ``--sessions`` NSE
sessions ending ``END``, the first ``--symbols`` symbols of the universe, both exit rules, through
the same calls the backtest job makes: ``PaperSource``, ``engine.run``, ``metrics.summarize``,
``report.write_outputs`` (into a throw-away folder, removed afterwards).

Printed: one table with the wall seconds of each phase (calendar, source, engine, summary, report)
and the total, the peak RSS (``resource.getrusage``, the process's high-water mark, imports
included), the engine's seconds per session, the cProfile top entries by cumulative time of a separate
profiled engine run over the range's last ``--profile-sessions`` sessions (where the time goes;
the profiler's overhead stays out of the timed run), and the ratio to a demo-style replay of the real jobs over
the same range: ``make demo`` replays one trading day in about ``--demo-seconds-per-day`` wall
seconds (its printed "demo finished in N s"), so the same range would take sessions x that.
Goals (issue 21): 250 sessions of the 50-symbol universe, both rules, under 60 s wall and under
500 MB peak RSS on the 2-core machine. ``--smoke``: 5 sessions of 5 symbols, no goal checked.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import resource
import shutil
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
if str(PROJECT_ROOT) not in sys.path:
    sys.path.insert(0, str(PROJECT_ROOT))

#: the last session of the benchmarked range (fixed, so that runs compare)
END = date(2026, 11, 27)
#: ``make demo``'s wall seconds for one replayed day (the demo's own "demo finished in" line)
DEMO_SECONDS_PER_DAY = 140.0
GOAL_WALL_S = 60.0
GOAL_RSS_MB = 500.0


def _rss_mb() -> float:
    # ru_maxrss is in KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sessions", type=int, default=250)
    ap.add_argument("--symbols", type=int, default=50)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--demo-seconds-per-day", type=float, default=DEMO_SECONDS_PER_DAY)
    ap.add_argument("--top", type=int, default=12, help="cProfile entries to print")
    ap.add_argument("--profile-sessions", type=int, default=25, help="sessions of the separate profiled run")
    ap.add_argument("--smoke", action="store_true", help="5 sessions of 5 symbols")
    args = ap.parse_args(argv)
    if args.smoke:
        args.sessions, args.symbols, args.top, args.profile_sessions = 5, 5, 5, 2

    phases: list[tuple[str, float]] = []
    t = time.perf_counter()
    from kitefleet.calendar import build_from_library
    from kitefleet.sim.universe import nifty50_universe
    from workers.backtest import engine, metrics, paper, report
    from workers.backtest.model import RULES, BacktestSpec

    # a year and a half of calendar around the range: the scan's lookback reads before the first session
    calendar, _ = build_from_library(date(END.year - 2, 1, 1), date(END.year + 1, 12, 31))
    days = [d for d in calendar.trading_days if d <= END]
    sessions = days[-args.sessions:]
    phases.append(("imports + calendar", time.perf_counter() - t))

    t = time.perf_counter()
    symbols = [i.tradingsymbol for i in nifty50_universe() if i.tradable and i.segment == "NSE"][: args.symbols]
    source = paper.PaperSource(calendar, seed=args.seed, scenario=None, symbols=symbols)
    phases.append(("paper source", time.perf_counter() - t))

    spec = BacktestSpec(user="Bench", start=sessions[0], end=sessions[-1], rules=RULES, source="paper",
                        seed=args.seed, initial_cash=1_000_000.0, settings={})
    t = time.perf_counter()
    results = engine.run(spec, source, calendar)
    engine_s = time.perf_counter() - t
    phases.append(("engine.run", engine_s))

    t = time.perf_counter()
    summaries = {r.rule: metrics.summarize(r, spec) for r in results}
    phases.append(("metrics.summarize", time.perf_counter() - t))

    t = time.perf_counter()
    out = Path(tempfile.mkdtemp(prefix="bench_backtest_"))
    try:
        report.write_outputs(out, spec, results, summaries)
        html_kb = (out / "report.html").stat().st_size / 1024.0
    finally:
        shutil.rmtree(out, ignore_errors=True)
    phases.append(("report.write_outputs", time.perf_counter() - t))

    total = sum(s for _, s in phases)
    rss = _rss_mb()
    n = len(sessions)
    demo_s = n * args.demo_seconds_per_day
    print(f"backtest: {n} sessions {sessions[0]}..{sessions[-1]}, {len(symbols)} symbols, "
          f"rules {', '.join(spec.rules)}, paper source seed {args.seed}")
    print()
    print(f"{'phase':<24}{'wall s':>10}")
    for name, secs in phases:
        print(f"{name:<24}{secs:>10.2f}")
    print(f"{'total':<24}{total:>10.2f}")
    print()
    print(f"engine per session      {engine_s / max(n, 1) * 1000:.1f} ms")
    print(f"peak RSS                {rss:.0f} MB")
    print(f"report.html             {html_kb:.0f} KiB")
    for r in results:
        s = summaries[r.rule]
        print(f"{r.rule:<24}trades {s['trades']}, net P&L {s['net_pnl']:,.2f}, charges {s['charges']:,.2f}")
    print(f"demo-style replay       {n} x {args.demo_seconds_per_day:.0f} s = {demo_s:,.0f} s; "
          f"ratio {demo_s / total:,.0f}x faster" if total > 0 else "")
    if not args.smoke:
        ok = total < GOAL_WALL_S and rss < GOAL_RSS_MB
        print(f"goal (< {GOAL_WALL_S:.0f} s, < {GOAL_RSS_MB:.0f} MB): {'met' if ok else 'NOT met'}")
    print()
    # cProfile roughly doubles the engine's time, so it runs apart from the timed run, on the last
    # sessions of the range with a fresh source (the timed run's caches would hide the data reads)
    prof_sessions = sessions[-min(args.profile_sessions, n):]
    prof_spec = BacktestSpec(user="Bench", start=prof_sessions[0], end=prof_sessions[-1], rules=RULES,
                             source="paper", seed=args.seed, initial_cash=1_000_000.0, settings={})
    prof_source = paper.PaperSource(calendar, seed=args.seed, scenario=None, symbols=symbols)
    profiler = cProfile.Profile()
    profiler.enable()
    engine.run(prof_spec, prof_source, calendar)
    profiler.disable()
    print(f"where the engine's time goes (cProfile over the last {len(prof_sessions)} sessions, "
          f"top {args.top} by cumulative time):")
    buf = io.StringIO()
    pstats.Stats(profiler, stream=buf).strip_dirs().sort_stats("cumulative").print_stats(args.top)
    lines = buf.getvalue().splitlines()
    start = next((i for i, ln in enumerate(lines) if ln.lstrip().startswith("ncalls")), 0)
    print("\n".join(ln for ln in lines[start:] if ln.strip()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
