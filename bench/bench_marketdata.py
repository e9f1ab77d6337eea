"""Benchmark of pattern_daily's market data: N users scanning the NIFTY 50 at once, shared cache on/off.

    .venv/bin/python bench/bench_marketdata.py [--users 1,2,4,8] [--symbols 50] [--json]

One paper broker (a subprocess, Kite's rate limits ON: historical 3 requests/s per API key) in a
throw-away home with users U1..U8, a simulated clock fixed after the close of a trading day. For
each N, side by side in the same run:

* ``shared``: N real worker processes (``python -m workers pattern_daily --user Ui``) start at
  once on an empty shared cache (``data/shared/<broker>/`` removed before the row);
* ``no-shared``: the same N processes with ``--no-shared-cache``, each fetching every symbol
  itself (the legacy per-user behaviour);

and, last, ``shared warm``: the largest N again on the cache the previous rows left (a second scan
of the same session). Reported per row, from the paper broker's request audit: historical API calls,
HTTP 429 answers (all endpoints), instruments dumps, and the wall time from the first start to
the last exit (process start-up and login included). Every process must exit 0 and every user's
scan file must be byte-identical to the first one's.
"""

from __future__ import annotations

import argparse
import json
import shutil
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
from tests.support.broker import RunningBroker, clock_file, start_broker  # noqa: E402
from tests.support.homes import VENV_PYTHON, child_env, make_home, write_env  # noqa: E402
from workers.universe import nifty50_symbols  # noqa: E402

#: Wednesday after the close (a trading day in the exported calendar), near the market's anchor.
EVENING = datetime.fromisoformat("2026-11-04T18:00:00+05:30")
HISTORICAL = "/instruments/historical/"


def _run_row(home: Home, broker: RunningBroker, clock: str, users: list[str], shared: bool,
             cold: bool) -> dict[str, Any]:
    if cold:
        shutil.rmtree(home.market_data_dir(broker.url), ignore_errors=True)
    time.sleep(1.1)  # let the previous row's per-key rate windows drain (wall seconds, not a sync)
    before = len(broker.audit())
    env = child_env(home, TRADER_CLOCK=clock, PYTHONPATH=str(PROJECT_ROOT))
    args = ["--json"] + ([] if shared else ["--no-shared-cache"])
    started = time.perf_counter()
    procs = {u: subprocess.Popen([str(VENV_PYTHON), "-m", "workers", "pattern_daily", "--user", u, *args],
                                 cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True)
             for u in users}
    outputs = {u: p.communicate(timeout=600) for u, p in procs.items()}
    wall = time.perf_counter() - started
    for u, p in procs.items():
        if p.returncode != 0:
            raise SystemExit(f"{u} exited {p.returncode}:\n{outputs[u][1][-3000:]}")
    audit = broker.audit()[before:]
    summaries = [json.loads(outputs[u][0].strip().splitlines()[-1]) for u in users]
    contents = {Path(s["file"]).read_bytes() for s in summaries}
    if len(contents) != 1:
        raise SystemExit(f"users' scan files differ ({len(contents)} versions)")
    return {
        "users": len(users),
        "cache": ("shared" if shared else "no-shared") + ("" if cold else " warm"),
        "historical_calls": sum(str(r["path"]).startswith(HISTORICAL) for r in audit),
        "http_429": sum(r["status"] == 429 for r in audit),
        "instruments_calls": sum(str(r["path"]).startswith("/instruments/NSE") for r in audit),
        "wall_s": round(wall, 2),
        "symbols": summaries[0]["symbols"],
        "last_session": summaries[0]["last_session"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", default="1,2,4,8", help="comma-separated user counts (default 1,2,4,8)")
    parser.add_argument("--symbols", type=int, default=50, help="first N NIFTY 50 symbols (default 50)")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON lines too")
    args = parser.parse_args(argv)
    counts = [int(x) for x in args.users.split(",") if x.strip()]
    symbols = list(nifty50_symbols())[:args.symbols]
    most = max(counts)
    names = [f"U{i}" for i in range(1, most + 1)]

    root = Path(tempfile.mkdtemp(prefix="kitefleet-bench-md-"))
    try:
        home = make_home(root / "home")
        for u in names:
            write_env(home, u)
        clock = clock_file(root / "clock", EVENING)
        broker = start_broker(home, clock=clock, symbols=symbols, rate_limits=True)
        try:
            for u in names:
                write_env(home, u, KITE_ROOT=broker.url)  # same keys: the broker's accounts still match
            rows = []
            for n in counts:
                for shared in (True, False):
                    rows.append(_run_row(home, broker, clock, names[:n], shared, cold=True))
                    print(f"  done: {n} users, {rows[-1]['cache']}", file=sys.stderr, flush=True)
            _run_row(home, broker, clock, names[:1], True, cold=True)  # fill the cache
            rows.append(_run_row(home, broker, clock, names[:most], True, cold=False))
        finally:
            broker.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)

    print(f"pattern_daily over {len(symbols)} symbols, sessions up to {rows[0]['last_session']}; paper broker "
          "with Kite's rate limits (historical 3/s per API key); each user its own key and process")
    header = f"{'users':>5}  {'cache':<12} {'historical calls':>16} {'HTTP 429':>8} {'instruments':>11} {'wall s':>7}"
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['users']:>5}  {r['cache']:<12} {r['historical_calls']:>16} {r['http_429']:>8} "
              f"{r['instruments_calls']:>11} {r['wall_s']:>7.2f}")
    if args.json:
        for r in rows:
            print(json.dumps(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
