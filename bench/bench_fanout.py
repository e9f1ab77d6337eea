"""Benchmark of ``orchestrator.py run-all``: wall time against the CPU-bound lower bound.

    .venv/bin/python bench/bench_fanout.py [--users 1,2,4,8,16] [--jobs whoami,pattern_daily]
                                           [--symbols 10] [--repeat 3] [--json]

A throw-away home with one paper env file per user (U01..U16). For each job:

* ``whoami`` needs no broker;
* ``pattern_daily`` runs against a real paper broker (a subprocess, rate limits off, simulated
  clock after the close of a trading day) on a universe CSV of the first ``--symbols`` NIFTY 50
  symbols. Before anything is timed, every user runs the job once (untimed): this fills the shared
  market-data cache and writes each user's paper session, so every timed run is **warm** (no
  historical fetches, no logins: it measures the fan-out, not the broker; bench_marketdata.py
  measures the cold fetch).

The lower bound: each user's worker process is run alone, one after another, through the same
launcher ``run-all`` uses (``kitefleet.launcher.spawn_worker``), and its CPU time (user + system,
from ``getrusage(RUSAGE_CHILDREN)`` deltas) is recorded. For N users, bound = sum of the first N
users' CPU seconds / cores: no scheduler can finish N CPU-bound processes faster than that. Then
``orchestrator.py run-all JOB --users U01..UN`` is timed as a whole (its own start-up, every
child, the prefixed output and the summary table), ``--repeat`` times; the median wall is
reported with ratio = wall / bound. The ``run cpu`` column is the CPU of the whole run-all
(orchestrator included), to show what the fan-out itself costs beyond the workers.

Note: with fewer users than cores the bound is below what one process can do (one process uses
one core), so the ratio of small N is at least ``cores / N``; the ratio that matters is at N >= cores.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent
if str(PROJECT_ROOT) not in sys.path:
    sys.path.insert(0, str(PROJECT_ROOT))

from kitefleet.home import Home  # noqa: E402
from kitefleet.launcher import spawn_worker  # noqa: E402
from tests.support.broker import clock_file, start_broker  # noqa: E402
from tests.support.homes import VENV_PYTHON, child_env, make_home, write_env  # noqa: E402
from workers.universe import nifty50_symbols  # noqa: E402

#: Wednesday after the close, a trading day in the exported calendar (as in bench_marketdata.py).
EVENING = datetime.fromisoformat("2026-11-04T18:00:00+05:30")
ORCHESTRATOR = PROJECT_ROOT / "orchestrator.py"
JOBS = ("whoami", "pattern_daily")


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _single_cpu(home: Home, env: dict[str, str], user: str, job: str) -> float:
    """CPU seconds of one worker process run alone (nothing else of ours is reaped meanwhile)."""
    before = _children_cpu()
    proc = spawn_worker(user, job, [], home=home, parent_env=env,
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, err = proc.communicate(timeout=600)
    cpu = _children_cpu() - before
    if proc.returncode != 0:
        raise SystemExit(f"{job} for {user} exited {proc.returncode}:\n{err.decode(errors='replace')[-3000:]}")
    return cpu


def _run_all(env: dict[str, str], users: list[str], job: str) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the orchestrator and every child) of one run-all."""
    argv = [str(VENV_PYTHON), str(ORCHESTRATOR), "run-all", job, "--users", ",".join(users)]
    before = _children_cpu()
    started = time.perf_counter()
    proc = subprocess.run(argv, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=900,
                          check=False)
    wall = time.perf_counter() - started
    cpu = _children_cpu() - before
    if proc.returncode != 0:
        raise SystemExit(f"run-all {job} for {len(users)} users exited {proc.returncode}:\n"
                         f"{(proc.stdout + proc.stderr)[-3000:]}")
    lines = [ln for ln in proc.stdout.splitlines() if " | " in ln]
    missing = [u for u in users if not any(ln.startswith(u) for ln in lines)]
    if missing:
        raise SystemExit(f"run-all {job}: no output from {', '.join(missing)}")
    return wall, cpu


def _measure_job(home: Home, env: dict[str, str], job: str, counts: list[int], users: list[str],
                 repeat: int, cores: int) -> list[dict[str, Any]]:
    print(f"  {job}: warm-up run-all for {len(users)} users", file=sys.stderr, flush=True)
    _run_all(env, users, job)
    print(f"  {job}: {len(users)} single runs for the lower bound", file=sys.stderr, flush=True)
    single = [_single_cpu(home, env, u, job) for u in users]
    rows = []
    for n in counts:
        runs = [_run_all(env, users[:n], job) for _ in range(repeat)]
        wall = statistics.median(w for w, _ in runs)
        bound = sum(single[:n]) / cores
        rows.append({
            "job": job, "users": n, "repeat": repeat, "wall_s": round(wall, 3),
            "run_cpu_s": round(statistics.median(c for _, c in runs), 3),
            "single_cpu_sum_s": round(sum(single[:n]), 3), "bound_s": round(bound, 3),
            "ratio": round(wall / bound, 2),
        })
        print(f"  {job}: {n} users wall {wall:.2f} s", file=sys.stderr, flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", default="1,2,4,8,16", help="comma-separated user counts (default 1,2,4,8,16)")
    parser.add_argument("--jobs", default=",".join(JOBS), help=f"comma-separated subset of {','.join(JOBS)}")
    parser.add_argument("--symbols", type=int, default=10, help="universe size for pattern_daily (default 10)")
    parser.add_argument("--repeat", type=int, default=3, help="timed run-all runs per row; median (default 3)")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON lines too")
    args = parser.parse_args(argv)
    counts = sorted({int(x) for x in args.users.split(",") if x.strip()})
    jobs = [j.strip() for j in args.jobs.split(",") if j.strip()]
    unknown = [j for j in jobs if j not in JOBS]
    if unknown or not counts or min(counts) < 1 or args.repeat < 1:
        parser.error(f"bad arguments (jobs must be among {', '.join(JOBS)}; counts and repeat >= 1)")
    cores = os.cpu_count() or 1
    users = [f"U{i:02d}" for i in range(1, max(counts) + 1)]
    symbols = list(nifty50_symbols())[:args.symbols]

    rows: list[dict[str, Any]] = []
    root = Path(tempfile.mkdtemp(prefix="kitefleet-bench-fanout-"))
    try:
        home = make_home(root / "home")
        (home.root / "universe.csv").write_text("symbol\n" + "\n".join(symbols) + "\n", encoding="utf-8")
        for u in users:
            write_env(home, u, UNIVERSE="universe.csv")
        if "whoami" in jobs:
            rows += _measure_job(home, child_env(home, PYTHONPATH=str(PROJECT_ROOT)), "whoami", counts, users,
                                 args.repeat, cores)
        if "pattern_daily" in jobs:
            clock = clock_file(root / "clock", EVENING)
            broker = start_broker(home, clock=clock, symbols=symbols)
            try:
                for u in users:
                    write_env(home, u, UNIVERSE="universe.csv", KITE_ROOT=broker.url)
                env = child_env(home, TRADER_CLOCK=clock, PYTHONPATH=str(PROJECT_ROOT))
                rows += _measure_job(home, env, "pattern_daily", counts, users, args.repeat, cores)
            finally:
                broker.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)

    print(f"run-all fan-out: {cores} cores; median of {args.repeat} timed runs per row; pattern_daily on "
          f"{len(symbols)} symbols, warm shared cache and sessions; bound = sum of single-process CPU / cores")
    header = (f"{'job':<14}{'users':>6}{'wall s':>9}{'run cpu s':>11}{'single cpu s':>14}"
              f"{'bound s':>9}{'wall/bound':>12}")
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['job']:<14}{r['users']:>6}{r['wall_s']:>9.2f}{r['run_cpu_s']:>11.2f}"
              f"{r['single_cpu_sum_s']:>14.2f}{r['bound_s']:>9.2f}{r['ratio']:>11.2f}x")
    if args.json:
        for r in rows:
            print(json.dumps(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
