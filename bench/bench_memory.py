"""RSS of an idle per-user scheduler (goal: under 30 MB).

    .venv/bin/python bench/bench_memory.py [--users N] [--seconds S]

Starts N schedulers (``python -m workers daemon``) in a temporary home with every schedule off,
waits until each writes an idle heartbeat, samples VmRSS and VmHWM from /proc for a few seconds,
stops them with SIGTERM and prints one JSON line per scheduler plus a verdict.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.supervision.helpers import fleet_home, poll, start_daemon  # noqa: E402
from workers.heartbeat import read_heartbeat  # noqa: E402

GOAL_MB = 30.0


def rss_kb(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0])
    return out


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kfbench-") as tmp:
        users = [f"U{i}" for i in range(args.users)]
        home, clock = fleet_home(Path(tmp) / "home", {u: {} for u in users}, around=date(2026, 11, 25))
        procs = {u: start_daemon(home, u, clock, "--stop-grace", "1") for u in users}
        try:
            for u, p in procs.items():
                poll(lambda u=u, p=p: (b := read_heartbeat(home, u)) and b["pid"] == p.pid and b["state"] == "idle",
                     60, f"{u}'s idle heartbeat")
            peak: dict[str, dict[str, int]] = {u: {} for u in users}
            deadline = time.monotonic() + args.seconds
            while time.monotonic() < deadline:
                for u, p in procs.items():
                    for key, kb in rss_kb(p.pid).items():
                        peak[u][key] = max(peak[u].get(key, 0), kb)
                time.sleep(0.2)
        finally:
            for p in procs.values():
                p.send_signal(signal.SIGTERM)
            for p in procs.values():
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
    worst = 0.0
    for u in users:
        rss_mb = peak[u]["VmRSS"] / 1024
        worst = max(worst, peak[u]["VmHWM"] / 1024)
        print(json.dumps({"user": u, "rss_mb": round(rss_mb, 1), "peak_rss_mb": round(peak[u]["VmHWM"] / 1024, 1)}))
    ok = worst < GOAL_MB
    print(f"idle scheduler peak RSS {worst:.1f} MB: {'OK' if ok else 'OVER'} (goal < {GOAL_MB:.0f} MB)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
