"""Benchmark of the paper broker's HTTP server through the real kiteconnect client.

    .venv/bin/python bench/bench_paper_broker.py [--accounts 8] [--calls 300] [--json]

One paper broker (a subprocess, rate limits OFF) in a throw-away home with accounts U1..U8 and a
simulated clock standing in the middle of a trading session. Each account logs in with the real
flow and gets its own ``KiteConnect`` (its own keep-alive ``requests.Session``) in its own thread
(or its own process with ``--processes``). Rows:

* ``ltp``: every account calls ``ltp("NSE:<sym>")`` ``--calls`` times at once;
* ``historical``: every account calls ``historical_data(<token>, today 09:15, now, "5minute")``;
* ``2000 day candles``: one client asks for 2,000 calendar days of day candles (cold: the first
  request for a symbol, which builds its series; warm: the same request again), single-threaded.

Printed: requests/s over the row's wall time, and p50/p99 client-side latency per request.
Numbers include the client's own cost (requests, JSON decoding) running on the same machine.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import sys
import tempfile
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent
if str(PROJECT_ROOT) not in sys.path:
    sys.path.insert(0, str(PROJECT_ROOT))

from tests.support.broker import clock_file, login, start_broker  # noqa: E402
from tests.support.homes import make_home, write_env  # noqa: E402

NOW = datetime.fromisoformat("2026-11-25T13:30:00+05:30")  # a Wednesday session, after lunch
SYMBOLS = ["INFY", "TCS", "RELIANCE", "SBIN", "ITC", "HDFCBANK", "ICICIBANK", "LT"]
TOKENS = {"INFY": 408065, "TCS": 2953217, "RELIANCE": 738561, "SBIN": 779521, "ITC": 424961,
          "HDFCBANK": 341249, "ICICIBANK": 1270529, "LT": 2939649}


def _client_loop(url: str, api_key: str, api_secret: str, kind: str, calls: int, symbol: str,
                 start_gate: Any, out: Any) -> None:
    kite = login(url, api_key, api_secret)
    token = kite.ltp(f"NSE:{symbol}")[f"NSE:{symbol}"]["instrument_token"]
    day_open = NOW.replace(hour=9, minute=15, tzinfo=None)
    start_gate.wait()
    latencies = []
    for _ in range(calls):
        t0 = time.perf_counter()
        if kind == "ltp":
            kite.ltp(f"NSE:{symbol}")
        else:
            kite.historical_data(token, day_open, NOW.replace(tzinfo=None), "5minute")
        latencies.append(time.perf_counter() - t0)
    out.put(latencies)


def _row(url: str, accounts: list[tuple[str, str]], kind: str, calls: int, processes: bool) -> dict[str, Any]:
    if processes:
        ctx = multiprocessing.get_context("spawn")
        gate: Any = ctx.Barrier(len(accounts) + 1)
        out: Any = ctx.Queue()
        workers: list[Any] = [ctx.Process(target=_client_loop, args=(url, k, s, kind, calls, SYMBOLS[i % 8],
                                                                      gate, out))
                              for i, (k, s) in enumerate(accounts)]
    else:
        import queue

        gate = threading.Barrier(len(accounts) + 1)
        out = queue.Queue()
        workers = [threading.Thread(target=_client_loop, args=(url, k, s, kind, calls, SYMBOLS[i % 8], gate, out))
                   for i, (k, s) in enumerate(accounts)]
    for w in workers:
        w.start()
    gate.wait()
    started = time.perf_counter()
    latencies: list[float] = []
    for _ in workers:
        latencies.extend(out.get(timeout=300))
    wall = time.perf_counter() - started
    for w in workers:
        w.join()
    latencies.sort()
    return {
        "row": kind, "accounts": len(accounts), "requests": len(latencies),
        "requests_per_s": round(len(latencies) / wall, 1),
        "p50_ms": round(statistics.median(latencies) * 1000, 2),
        "p99_ms": round(latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000, 2),
    }


def _day_candles(url: str, account: tuple[str, str]) -> list[dict[str, Any]]:
    kite = login(url, *account)
    end = NOW.replace(tzinfo=None)
    start = end - timedelta(days=2000)
    rows = []
    for label, symbol in (("cold", "WIPRO"), ("warm", "WIPRO"), ("warm", "WIPRO")):
        token = kite.ltp(f"NSE:{symbol}")[f"NSE:{symbol}"]["instrument_token"]
        t0 = time.perf_counter()
        candles = kite.historical_data(token, start, end, "day")
        rows.append({"row": f"2000 day candles ({label})", "candles": len(candles),
                     "ms": round((time.perf_counter() - t0) * 1000, 1)})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--accounts", type=int, default=8)
    parser.add_argument("--calls", type=int, default=300, help="calls per account per row")
    parser.add_argument("--processes", action="store_true", help="one client process per account")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="bench-paper-broker-") as tmp:
        root = Path(tmp)
        home = make_home(root / "home")
        users = [f"U{i + 1}" for i in range(args.accounts)]
        accounts = []
        for user in users:
            key, secret = f"benchkey{user.lower()}", f"benchsecret-{user.lower()}"
            write_env(home, user, api_key=key, api_secret=secret)
            accounts.append((key, secret))
        broker = start_broker(home, clock=clock_file(root / "clock", NOW), rate_limits=False,
                              symbols=[*SYMBOLS, "WIPRO"])
        try:
            rows: list[dict[str, Any]] = []
            for kind in ("ltp", "historical"):
                _row(broker.url, accounts, kind, 20, args.processes)  # warm-up: series, connections
                rows.append(_row(broker.url, accounts, kind, args.calls, args.processes))
            rows.extend(_day_candles(broker.url, accounts[0]))
        finally:
            code = broker.stop()
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        mode = "processes" if args.processes else "threads"
        print(f"paper broker, {args.accounts} accounts ({mode}), rate limits off, broker exit {code}")
        for row in rows:
            if "requests_per_s" in row:
                print(f"  {row['row']:<12} {row['requests']:>6} requests  {row['requests_per_s']:>8.1f} req/s  "
                      f"p50 {row['p50_ms']:>7.2f} ms  p99 {row['p99_ms']:>7.2f} ms")
            else:
                print(f"  {row['row']:<26} {row['candles']:>5} candles in {row['ms']:>7.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
