"""Benchmark of order round trips through the real kiteconnect client against the paper broker.

    .venv/bin/python bench/bench_orders.py [--accounts 8] [--orders 150] [--symbols INFY,TCS]

Starts the real paper broker (a subprocess, rate limits off, clock frozen at 11:00 IST on a
trading day) in a throw-away home with one env file per account, then runs one client process per
account (as in production: one process per user), each logged in by the real login flow. Each
client, released at the same instant, repeats:

* ``place``:  a resting LIMIT BUY (below the LTP, inside the circuit band): one HTTP round trip;
* ``cancel``: cancelling it: one HTTP round trip;
* ``fill``:   a MARKET BUY that fills at once (every 5th iteration, then sold back the same way).

A round trip is one Kite call answered with an order id. Reported: aggregate round trips per
second over the parallel window (all calls of all accounts), and p50/p99 latency per kind.
Goal: at least 300 round trips per second in aggregate on 2 cores.

Also reported: the cost of the order engine's ``advance()`` while no minute has completed (the
broker calls it on every request and five times a second), in-process on a throw-away database,
with the time passed in and read from the frozen clock file as the broker does. Goal: a few
microseconds, far below a round trip (tests/paper_broker/test_engine_inprocess.py checks that such
a call touches neither the database nor the market; the number lives here, not in a timed test).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
if str(PROJECT_ROOT) not in sys.path:
    sys.path.insert(0, str(PROJECT_ROOT))

from kitefleet.clock import IST  # noqa: E402

NOW = datetime(2026, 11, 25, 11, 0, tzinfo=IST)  # a Wednesday, mid-session
FROZEN = 1e-6


def _client(url: str, api_key: str, api_secret: str, orders: int, symbol: str) -> None:
    from kiteconnect import KiteConnect  # noqa: F401  (imported before the clock starts)

    from tests.support.broker import login

    kite = login(url, api_key, api_secret)
    last = float(kite.ltp(f"NSE:{symbol}")[f"NSE:{symbol}"]["last_price"])
    inst = next(i for i in kite.instruments("NSE") if i["tradingsymbol"] == symbol)
    tick = float(inst["tick_size"])
    price = round(round(last * 0.95 / tick) * tick, 2)
    common = {"variety": "regular", "exchange": "NSE", "tradingsymbol": symbol, "quantity": 1, "product": "CNC"}
    print("ready", flush=True)
    sys.stdin.readline()
    lat: dict[str, list[float]] = {"place": [], "cancel": [], "fill": []}
    start = time.perf_counter()
    for i in range(orders):
        t0 = time.perf_counter()
        oid = kite.place_order(transaction_type="BUY", order_type="LIMIT", price=price, **common)
        t1 = time.perf_counter()
        kite.cancel_order("regular", oid)
        t2 = time.perf_counter()
        lat["place"].append(t1 - t0)
        lat["cancel"].append(t2 - t1)
        if i % 5 == 4:
            for side in ("BUY", "SELL"):
                t3 = time.perf_counter()
                kite.place_order(transaction_type=side, order_type="MARKET", market_protection=-1, **common)
                lat["fill"].append(time.perf_counter() - t3)
    elapsed = time.perf_counter() - start
    print(json.dumps({"elapsed": elapsed, "start": start, "lat": lat}), flush=True)


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc), to show where the cores went."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    import os

    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _advance_cost(root: Path, calendar_file: Path, symbols: list[str], calls: int) -> tuple[float, float]:
    """Seconds per ``OrderEngine.advance`` with nothing due: (time passed in, time from the clock file)."""
    from kitefleet.calendar import load_calendar
    from kitefleet.clock import clock_from_value
    from kitefleet.sim.market import Market
    from paper_broker.db import Database
    from paper_broker.engine import OrderEngine
    from tests.support.broker import clock_file

    clock = clock_from_value(clock_file(root / "advance-clock", NOW, FROZEN))
    calendar = load_calendar(calendar_file, NOW.date())
    db = Database(root / "advance" / "paper.db")
    try:
        engine = OrderEngine(db, Market(calendar, symbols=symbols), calendar, clock)
        now = clock.now()
        started = time.perf_counter()
        for _ in range(calls):
            engine.advance(now)
        given = (time.perf_counter() - started) / calls
        started = time.perf_counter()
        for _ in range(calls):
            engine.advance()
        return given, (time.perf_counter() - started) / calls
    finally:
        db.close()


def _pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))] * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--accounts", type=int, default=8)
    parser.add_argument("--orders", type=int, default=150, help="place+cancel iterations per account")
    parser.add_argument("--symbols", default="INFY,TCS,RELIANCE,HDFCBANK")
    parser.add_argument("--advance-calls", type=int, default=20_000,
                        help="engine.advance() calls with nothing due, timed in-process")
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        url, key, secret, orders, symbol = args.child
        _client(url, key, secret, int(orders), symbol)
        return 0

    from kitefleet.settings import load_settings
    from tests.support.broker import clock_file, start_broker
    from tests.support.homes import VENV_PYTHON, make_home, write_env

    symbols = args.symbols.split(",")
    with tempfile.TemporaryDirectory(prefix="bench-orders-") as tmp:
        root = Path(tmp)
        home = make_home(root / "home")
        users = [f"Bench{i}" for i in range(args.accounts)]
        for user in users:
            write_env(home, user)
        broker = start_broker(home, clock=clock_file(root / "clock", NOW, FROZEN), symbols=symbols)
        try:
            children = []
            for i, user in enumerate(users):
                s = load_settings(home, user)
                children.append(subprocess.Popen(
                    [str(VENV_PYTHON), __file__, "--child", broker.url, s.api_key, s.api_secret, str(args.orders),
                     symbols[i % len(symbols)]],
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=PROJECT_ROOT))
            for child in children:
                assert child.stdout is not None
                if child.stdout.readline().strip() != "ready":
                    raise RuntimeError("a client failed to log in")
            cpu_before = _cpu_seconds(broker.proc.pid)
            for child in children:
                assert child.stdin is not None
                child.stdin.write("go\n")
                child.stdin.flush()
            results = []
            for child in children:
                out, _ = child.communicate(timeout=600)
                results.append(json.loads(out.strip().splitlines()[-1]))
            broker_cpu = _cpu_seconds(broker.proc.pid) - cpu_before
        finally:
            broker.stop()
        advance_given, advance_clock = _advance_cost(root, home.calendar_file, symbols, args.advance_calls)
    window = max(r["start"] + r["elapsed"] for r in results) - min(r["start"] for r in results)
    kinds = ("place", "cancel", "fill")
    merged = {k: [x for r in results for x in r["lat"][k]] for k in kinds}
    total = sum(len(v) for v in merged.values())
    print(f"paper broker order round trips: {args.accounts} accounts x {args.orders} place+cancel "
          f"(+ a MARKET buy/sell every 5th), rate limits off")
    print(f"{'kind':<8} {'calls':>7} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    for k in kinds:
        v = merged[k]
        print(f"{k:<8} {len(v):>7} {_pct(v, 50):>8.2f} {_pct(v, 99):>8.2f} {max(v) * 1000:>8.2f}")
    rate = total / window
    print(f"{'all':<8} {total:>7}   aggregate {rate:.0f} round trips/s over {window:.2f} s "
          f"(goal >= 300: {'met' if rate >= 300 else 'NOT met'}); mean per-call "
          f"{statistics.mean(x for v in merged.values() for x in v) * 1000:.2f} ms")
    print(f"broker process CPU: {broker_cpu:.2f} s for {total} calls = {broker_cpu / total * 1000:.2f} ms/call "
          f"(one core could serve ~{total / broker_cpu:.0f} calls/s; the rest of the 2 cores went to the clients)")
    print(f"engine.advance() with no minute completed: {advance_given * 1e6:.2f} us per call with the time "
          f"given, {advance_clock * 1e6:.2f} us reading the clock file ({args.advance_calls} calls each, "
          f"in-process)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
