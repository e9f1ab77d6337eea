"""Dashboard: the fleet page rendered server-side from disk, and CPU per minute while polled.

1. Render: ``Dashboard.fleet_rows`` (every user's heartbeat, flags, state, outbox) plus the
   template, uncached, from a home of N synthetic users (heartbeats, state files with positions,
   stops and watchdog levels, outboxes of 200 events, logs, scans). Goal: under 200 ms for 50 users.
2. CPU: a real ``orchestrator.py web`` over the same home polled by C clients (each every 2 s, as
   the page does) for S seconds; CPU of the server and of its children (the users' ``summary``
   processes, at most one per user per 30 s; with no broker reachable here they fail after their
   retries, which is about the cost of a real one), per wall minute.

    .venv/bin/python bench/bench_web.py [--users 50] [--clients 5] [--seconds 60] [--smoke]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

PROJECT_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_ROOT))

from fleet.web.app import Config, Dashboard  # noqa: E402
from fleet.web.live import LiveCache  # noqa: E402
from kitefleet import clock  # noqa: E402
from kitefleet.home import Home  # noqa: E402

SYMBOLS = ("INFY", "TCS", "SBIN", "RELIANCE", "HDFCBANK")


def make_fleet(root: Path, users: int) -> Home:
    home = Home(root)
    now = clock.now()
    day = now.date().isoformat()
    for sub in ("env", "data", "logs", "run"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for i in range(users):
        user = f"U{i:03d}"
        env = home.env_file(user)
        env.write_text("TRADER_MODE=paper\nKITE_API_KEY=k\nKITE_API_SECRET=s\nKITE_ROOT=http://127.0.0.1:9\n")
        os.chmod(env, 0o600)
        data = home.user_data_dir(user)
        (data / "scans").mkdir(parents=True)
        (data / "heartbeat.json").write_text(json.dumps({
            "schema_version": 1, "user": user, "mode": "paper", "pid": os.getpid(), "time": now.isoformat(),
            "wall": time.time(), "state": "idle", "current_jobs": {},
            "jobs": {j: {"schedule": "09:00", "last_start": now.isoformat(), "last_end": now.isoformat(),
                         "last_exit": 0, "last_result": "ok"} for j in ("update_cnc_stoploss", "place_orders_daily",
                                                                         "pattern_daily", "hourly_candle_watchdog")}}))
        state = {"schema_version": 3, "user": user, "mode": "paper",
                 "positions": {s: {"quantity": 10, "entry_price": 1000.0} for s in SYMBOLS},
                 "stops": {s: {"stop": 950.0, "trigger": 950.0} for s in SYMBOLS},
                 "watchdog": {day: {"symbols": {s: {"hourly": {"level": 970.0}, "exits": []} for s in SYMBOLS}}}}
        home.state_file(user).write_text(json.dumps(state))
        events = [json.dumps({"id": f"e{n}", "time": now.isoformat(), "user": user, "kind": "job_failed",
                              "level": "warning" if n % 10 == 0 else "info", "text": f"event {n}"})
                  for n in range(200)]
        (data / "outbox.jsonl").write_text("\n".join(events) + "\n")
        (data / "scans" / "pattern_daily_20260101.csv").write_text(
            "symbol,score,entry\n" + "".join(f"S{n},5,100\n" for n in range(50)))
        logs = home.user_logs_dir(user)
        logs.mkdir(parents=True)
        (logs / "daemon.log").write_text("".join(f"line {n}\n" for n in range(2000)))
    return home


def bench_render(home: Home, repeat: int) -> dict[str, float]:
    live = LiveCache(lambda user: ({"day_pnl": 1.0, "open_positions": 5, "holdings": 5, "charges": 2.0}, None))
    dash = Dashboard(Config(home), live)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        rows = dash.fleet_rows(fresh=True)
        html = dash.render("fleet.html", rows=rows, poll_ms=2000, updated="")
        times.append(time.perf_counter() - start)
    live.close()
    assert len(rows) == len(dash.users()) and html
    times.sort()
    return {"p50": statistics.median(times) * 1e3, "max": times[-1] * 1e3, "bytes": len(html)}


def _cpu(pid: int) -> tuple[float, float]:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / tick, (int(fields[13]) + int(fields[14])) / tick


def bench_cpu(home: Home, clients: int, seconds: float) -> dict[str, float]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "HOME", "TMPDIR")}
    env.update(KITEFLEET_HOME=str(home.root), PYTHONPATH=str(PROJECT_ROOT))
    proc = subprocess.Popen([sys.executable, str(PROJECT_ROOT / "orchestrator.py"), "web", "--port", str(port)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                requests.get(url + "/favicon.ico", timeout=1)
                break
            except requests.RequestException:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        own0, kids0 = _cpu(proc.pid)
        stop = threading.Event()
        latencies: list[float] = []

        def client() -> None:
            session = requests.Session()
            while not stop.is_set():
                start = time.perf_counter()
                session.get(url + "/api/fleet", timeout=30).raise_for_status()
                latencies.append(time.perf_counter() - start)
                stop.wait(2.0)

        threads = [threading.Thread(target=client) for _ in range(clients)]
        wall0 = time.monotonic()
        for t in threads:
            t.start()
        time.sleep(seconds)
        stop.set()
        for t in threads:
            t.join()
        wall = time.monotonic() - wall0
        own1, kids1 = _cpu(proc.pid)
    finally:
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
    per_min = 60.0 / wall
    return {"server": (own1 - own0) * per_min, "children": (kids1 - kids0) * per_min, "requests": len(latencies),
            "p50": statistics.median(latencies) * 1e3 if latencies else 0.0, "wall": wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--clients", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--smoke", action="store_true", help="tiny: 3 users, 2 clients, 3 seconds")
    args = parser.parse_args()
    if args.smoke:
        args.users, args.clients, args.seconds, args.repeat = 3, 2, 3.0, 3
    root = Path(tempfile.mkdtemp(prefix="kitefleet-bench-web-"))
    try:
        home = make_fleet(root, args.users)
        r = bench_render(home, args.repeat)
        verdict = "ok" if r["p50"] < 200 else "OVER the 200 ms goal"
        print(f"Dashboard benchmark: {os.cpu_count()} CPUs, {args.users} users")
        print(f"{'fleet page from disk':<28}{'p50 ms':>9}{'max ms':>9}{'KB':>7}  goal < 200 ms")
        print(f"{'rows + template, uncached':<28}{r['p50']:>9.1f}{r['max']:>9.1f}{r['bytes'] / 1024:>7.0f}  {verdict}")
        c = bench_cpu(home, args.clients, args.seconds)
        print(f"{'polled server':<28}{'clients':>9}{'reqs':>7}{'p50 ms':>9}{'CPU s/min':>11}{'children':>10}")
        print(f"{'orchestrator.py web':<28}{args.clients:>9}{c['requests']:>7}{c['p50']:>9.1f}{c['server']:>11.2f}"
              f"{c['children']:>10.2f}")
        print("children = the users' summary processes (at most one per user per 30 s)")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
