"""Benchmark of StateStore transactions: one user, 1..N users in parallel, and contention.

    .venv/bin/python bench/bench_state.py [--tx 300] [--users 1,2,4,8,16] [--contention-tx 500]
                                          [--orders 100]

Every user runs in its own process (as in production: one process per user), on its own file,
in a throw-away home. Each transaction is a real read-modify-write: lock, read, json, write,
fsync, rename, folder fsync. Reported per row: aggregate transactions per second over the
parallel window, per-transaction latency p50/p99 (ms), and the scaling ratio against one user.
The contention row runs two processes on one user's file and checks that no update was lost.

The intent row sends ``--orders`` orders one by one through ``workers.intents.send_order_once``
(in this process, against a broker that only hands out ids, so what is timed is the state file)
on a state that already holds 20 positions and 200 settled intents. It counts the parses of the
state file per order and the time spent in them (steadier than wall time, which is mostly fsync;
process CPU includes the kernel's fsync work). Two commits per order (the intent before the call,
the id after it) are the floor; ``_prepare`` used to add three lock-free reads on top.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
if str(PROJECT_ROOT) not in sys.path:
    sys.path.insert(0, str(PROJECT_ROOT))

from kitefleet.home import Home  # noqa: E402
from kitefleet.state import StateStore  # noqa: E402

POSITIONS = 20  # a realistic state: a few dozen positions with the legacy fields


def _child(user: str, count: int) -> None:
    store = StateStore(Home.resolve(), user, "paper")
    with store.transaction() as st:  # warm-up, and a realistic body
        for i in range(POSITIONS):
            st["positions"][f"SYM{i:02d}"] = {
                "type": "LONG", "entry_price": 512.4, "best_price": 515.0, "quantity": 120,
                "product_type": "CNC", "timestamp": "2026-06-02T10:15:22+05:30",
                "stop_loss": 478.35, "gtt": {"trigger_id": 275000001, "trigger_price": 478.35},
            }
    print("ready", flush=True)
    sys.stdin.readline()
    lat: list[float] = []
    start = time.perf_counter()
    for _ in range(count):
        t0 = time.perf_counter()
        with store.transaction() as st:
            st["counter"] = st.get("counter", 0) + 1
            st["positions"]["SYM00"]["best_price"] += 0.05
        lat.append(time.perf_counter() - t0)
    end = time.perf_counter()
    print(json.dumps({"start": start, "end": end, "lat": lat}), flush=True)


class _IdBroker:
    """Answers writes with ids and shows an empty book: the cost timed is the intent protocol's."""

    def __init__(self) -> None:
        self.placed = 0

    def orders(self) -> list[dict[str, object]]:
        return []

    def get_gtts(self) -> list[dict[str, object]]:
        return []

    def place_order(self, variety: str, **params: object) -> str:
        self.placed += 1
        return f"2600{self.placed:011d}"

    def place_gtt(self, *args: object, **kwargs: object) -> dict[str, object]:
        raise NotImplementedError


def _intent_row(home: Path, count: int) -> dict[str, float]:
    from datetime import date

    import kitefleet.state as state_mod
    from workers.intents import IntentLog, make_tag, send_order_once

    store = StateStore(Home(home), "Som", "paper")
    with store.transaction() as st:
        for i in range(POSITIONS):
            st["positions"][f"SYM{i:02d}"] = {"type": "LONG", "entry_price": 512.4, "quantity": 120}
        for i in range(200):
            tag = f"OLD{i:017d}"
            st["intents"][tag] = {"tag": tag, "kind": "order", "symbol": f"SYM{i % POSITIONS:02d}",
                                  "purpose": "entry", "job": "bench", "session": "2026-06-01",
                                  "placed_on": "2026-06-01", "params": {"quantity": 1}, "status": "sent",
                                  "broker_id": str(i), "order_status": None, "created_at": "",
                                  "updated_at": "", "note": ""}
    parses, parse_s = 0, 0.0
    real_parse = state_mod._parse

    def counting_parse(raw: bytes) -> tuple[dict[str, object] | None, str | None]:
        nonlocal parses, parse_s
        parses += 1
        t0 = time.perf_counter()
        try:
            return real_parse(raw)
        finally:
            parse_s += time.perf_counter() - t0

    state_mod._parse = counting_parse  # type: ignore[assignment]
    try:
        intents, kite = IntentLog(store), _IdBroker()
        lat: list[float] = []
        cpu0 = time.process_time()
        for i in range(count):
            symbol = f"NEW{i:05d}"
            tag = make_tag("Som", "bench", date(2026, 6, 2), symbol, "entry")
            params = {"variety": "regular", "exchange": "NSE", "tradingsymbol": symbol,
                      "transaction_type": "BUY", "quantity": 1, "product": "CNC", "order_type": "MARKET"}
            t0 = time.perf_counter()
            send_order_once(kite, intents, tag, params, purpose="entry", job="bench")
            lat.append(time.perf_counter() - t0)
        cpu = time.process_time() - cpu0
    finally:
        state_mod._parse = real_parse  # type: ignore[assignment]
    lat.sort()
    return {"orders": count, "parses": parses / count, "parse_ms": parse_s / count * 1e3,
            "p50": statistics.median(lat) * 1e3, "p99": lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1e3,
            "ops": count / sum(lat), "cpu": cpu / count * 1e3}


def _spawn(home: Path, user: str, count: int) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "HOME", "TMPDIR")}
    env.update(KITEFLEET_HOME=str(home), PYTHONPATH=str(PROJECT_ROOT))
    return subprocess.Popen([sys.executable, __file__, "--child", user, str(count)], env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def _run(home: Path, users: list[str], count: int) -> dict[str, float]:
    procs = [_spawn(home, u, count) for u in users]
    for p in procs:
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
    for p in procs:  # perf_counter is CLOCK_MONOTONIC: comparable across processes
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.flush()
    results = []
    for p in procs:
        out, _ = p.communicate(timeout=600)
        if p.returncode != 0:
            raise SystemExit(f"child failed with {p.returncode}")
        results.append(json.loads(out.strip().splitlines()[-1]))
    wall = max(r["end"] for r in results) - min(r["start"] for r in results)
    lat = sorted(x for r in results for x in r["lat"])
    return {
        "users": len(users), "tx": len(lat), "wall": wall, "tps": len(lat) / wall,
        "p50": statistics.median(lat) * 1e3, "p99": lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1e3,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tx", type=int, default=300, help="transactions per user")
    parser.add_argument("--users", default="1,2,4,8,16", help="parallel user counts")
    parser.add_argument("--contention-tx", type=int, default=500, help="transactions per contending process")
    parser.add_argument("--orders", type=int, default=100, help="orders through the intent protocol (0: skip)")
    parser.add_argument("--home", type=Path, help="parent folder for the temp home (local disk)")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.child[0], int(args.child[1]))
        return

    root = Path(tempfile.mkdtemp(prefix="kitefleet-bench-", dir=args.home))
    try:
        print(f"StateStore benchmark: {os.cpu_count()} CPUs, home {root}, {args.tx} tx per user, "
              f"{POSITIONS} positions per state")
        print(f"{'run':<22}{'users':>6}{'tx':>7}{'tx/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'scaling':>9}")
        base = None
        for n in [int(x) for x in args.users.split(",") if x.strip()]:
            home = root / f"parallel-{n}"
            (home / "data").mkdir(parents=True)
            row = _run(home, [f"U{i:02d}" for i in range(n)], args.tx)
            base = base or row["tps"]
            print(f"{'own file per user':<22}{n:>6}{row['tx']:>7}{row['tps']:>10.0f}{row['p50']:>9.2f}"
                  f"{row['p99']:>9.2f}{row['tps'] / base:>8.2f}x")

        home = root / "contention"
        (home / "data").mkdir(parents=True)
        row = _run(home, ["Som", "Som"], args.contention_tx)
        os.environ["KITEFLEET_HOME"] = str(home)
        final = StateStore(Home(home), "Som", "paper").read()["counter"]
        # Each process also ran one warm-up transaction that did not touch the counter.
        expected = 2 * args.contention_tx
        verdict = "no lost update" if final == expected else f"LOST {expected - final} UPDATES"
        print(f"{'two procs, one file':<22}{2:>6}{row['tx']:>7}{row['tps']:>10.0f}{row['p50']:>9.2f}"
              f"{row['p99']:>9.2f}{'':>9}")
        print(f"contention: counter {final} == {expected} expected: {verdict}")
        if args.orders > 0:
            home = root / "intents"
            (home / "data").mkdir(parents=True)
            os.environ["KITEFLEET_HOME"] = str(home)
            irow = _intent_row(home, args.orders)
            print(f"intent protocol: {irow['orders']:.0f} orders, {irow['ops']:.0f} orders/s, "
                  f"p50 {irow['p50']:.2f} ms, p99 {irow['p99']:.2f} ms, CPU {irow['cpu']:.2f} ms per order, "
                  f"{irow['parses']:.2f} state parses per order ({irow['parse_ms']:.2f} ms)")
        if final != expected:
            raise SystemExit(1)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
