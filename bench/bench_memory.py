"""Memory: resident size of idle per-user schedulers and peak resident size of each job process.

    .venv/bin/python bench/bench_memory.py [--users N] [--seconds S] [--symbols K] [--watch W]
                                           [--no-jobs] [--json]

Three parts, each in a throw-away home under ``$TMPDIR``, every process a real one:

1. **Idle schedulers** (goal: each under 30 MB). N schedulers (``python -m workers daemon``,
   every schedule off, a file clock in a session) are started; once each writes an ``idle``
   heartbeat, VmRSS and VmHWM are sampled from ``/proc/<pid>/status`` for S seconds, and PSS
   (``/proc/<pid>/smaps_rollup``: shared pages divided among the processes mapping them) is read
   at the end; then SIGTERM. The verdict uses the worst VmHWM (start-up included), the strictest
   reading. "Fifty idle users" = 50 x the worst idle VmRSS (goal: under 1.5 GB = 50 x 30 MB); RSS
   counts the interpreter's shared pages in every process, so this overstates what fifty
   schedulers on one machine cost, and 50 x PSS (with N running) is shown beside it.
2. **Each job process**, run one at a time for one paper user against the real paper broker (a
   subprocess, rate limits off; a universe CSV of the first K NIFTY 50 symbols; a file clock at
   09:20 on Wednesday 2026-11-04, speed 20, so the jobs really work): ``whoami``,
   ``pattern_daily`` (scans the previous session), ``place_orders_daily`` (MIN_SCORE 0, so it
   enters the scan's symbols with LIMIT buys at the LTP; the script then waits, up to FILL_WAIT_S
   wall seconds, for them to fill), ``update_cnc_stoploss`` (stop GTTs for what was bought), ``hourly_candle_watchdog``
   (WATCHDOG_POLL_SECONDS 30: one poll per 1.5 wall s; it runs until its hourly levels for every
   held symbol are in the state, then W more wall seconds, then SIGTERM; at most WATCHDOG_MAX_S
   wall seconds in all) and ``summary``. Peak RSS is the process's VmHWM, polled every
   10 ms until it exits (VmHWM only grows; an increase in the last 10 ms of a life is missed).
3. **Import floors**: bare ``python -c "import kiteconnect"`` and ``"import kiteconnect, pandas"``
   processes, the least a legacy-style watchdog (which imported both and stayed up all day) would
   pay with today's libraries (kiteconnect's package imports its websocket ticker, hence twisted
   and autobahn, even for REST only); the legacy processes were reported at 30-50 MB each, idle
   or not.

Prints one table (process, idle RSS MB, peak RSS MB, goal, verdict) and a line per job with what
it did. Exit code 1 when an idle scheduler misses its goal (jobs have no goal: a job lives for
seconds; only the watchdog is resident through the session); a part that cannot run (a job
exits non-zero, a scheduler dies) is exit code 2.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from kitefleet.clock import IST  # noqa: E402
from kitefleet.heartbeat import read_heartbeat  # noqa: E402
from kitefleet.home import Home  # noqa: E402
from kitefleet.launcher import spawn_worker  # noqa: E402
from kitefleet.state import StateStore  # noqa: E402
from tests.support.broker import RunningBroker, clock_file, start_broker  # noqa: E402
from tests.support.fleet import fleet_home, poll, start_daemon  # noqa: E402
from tests.support.homes import VENV_PYTHON, child_env, make_home, write_env  # noqa: E402
from workers.universe import nifty50_symbols  # noqa: E402

GOAL_MB = 30.0
FLEET = 50
FLEET_GOAL_MB = FLEET * GOAL_MB  # "fifty users idle in under 1.5 GB"
LEGACY_MB = "30-50"
#: Wednesday, a trading day, just after place_orders_daily's scheduled 09:20.
JOBS_START = datetime(2026, 11, 4, 9, 20, tzinfo=IST)
JOBS_SPEED = 20.0
WATCHDOG_POLL = 30
USER = "Bench"
JOBS = ("whoami", "pattern_daily", "place_orders_daily", "update_cnc_stoploss", "hourly_candle_watchdog",
        "summary")
WATCHDOG_MAX_S = 60.0
FILL_WAIT_S = 30.0
SAMPLE_S = 0.01
#: what a legacy-style process imported (and so paid for) before doing anything
FLOORS = ("kiteconnect", "kiteconnect, pandas")


class BenchError(Exception):
    """A part of the benchmark that could not run (exit code 2): no number to report."""


# --- /proc readings ---------------------------------------------------------------------------
def status_kb(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of a live process, in kB; empty once it has exited (or is a zombie)."""
    out: dict[str, int] = {}
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return out
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0])
    return out


def pss_kb(pid: int) -> int | None:
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    return None


@dataclass
class Watch:
    """The highest VmHWM and VmRSS seen of one process, and how many readings there were."""

    hwm_kb: int = 0
    rss_kb: int = 0
    samples: int = 0

    def sample(self, pid: int) -> bool:
        kb = status_kb(pid)
        if not kb:
            return False
        self.hwm_kb = max(self.hwm_kb, kb.get("VmHWM", 0))
        self.rss_kb = max(self.rss_kb, kb.get("VmRSS", 0))
        self.samples += 1
        return True


def mb(kb: float) -> float:
    return kb / 1024


# --- 1. idle schedulers -----------------------------------------------------------------------
def idle_schedulers(n: int, seconds: float, workdir: Path) -> list[dict[str, Any]]:
    users = [f"U{i}" for i in range(n)]
    home, clock = fleet_home(workdir / "idle", {u: {} for u in users}, around=date(2026, 11, 25))
    procs = {u: start_daemon(home, u, clock, "--stop-grace", "1") for u in users}
    try:
        for u, p in procs.items():
            poll(lambda u=u, p=p: (b := read_heartbeat(home, u)) and b["pid"] == p.pid and b["state"] == "idle",
                 60, f"{u}'s idle heartbeat")
        watches = {u: Watch() for u in users}
        deadline = time.monotonic() + seconds
        while True:
            for u, p in procs.items():
                if not watches[u].sample(p.pid):
                    raise BenchError(f"scheduler {u} exited while idle (code {p.poll()})")
            if time.monotonic() >= deadline:
                break
            time.sleep(0.2)
        pss = {u: pss_kb(p.pid) for u, p in procs.items()}
    finally:
        for p in procs.values():
            p.send_signal(signal.SIGTERM)
        for p in procs.values():
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
    return [{"user": u, "rss_mb": round(mb(watches[u].rss_kb), 1), "peak_rss_mb": round(mb(watches[u].hwm_kb), 1),
             "pss_mb": None if pss[u] is None else round(mb(pss[u]), 1), "samples": watches[u].samples}
            for u in users]


# --- 2. job processes -------------------------------------------------------------------------
@dataclass
class JobRun:
    job: str
    returncode: int
    peak_kb: int
    samples: int
    wall_s: float
    stdout: str
    stderr: str
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def run_job(home: Home, env: dict[str, str], job: str, args: list[str], workdir: Path, *,
            keep_running: Any = None) -> JobRun:
    """Run one job to its end (or, with ``keep_running``, until that returns False, then SIGTERM),
    polling its VmHWM. Output goes to files so that a chatty job never blocks on a full pipe."""
    out_path, err_path = workdir / f"{job}.out", workdir / f"{job}.err"
    with out_path.open("wb") as out, err_path.open("wb") as err:
        started = time.monotonic()
        proc = spawn_worker(USER, job, args, home=home, parent_env=env, stdout=out, stderr=err)
    watch = Watch()
    termed = False
    try:
        while proc.poll() is None:
            watch.sample(proc.pid)
            if keep_running is not None and not termed and not keep_running():
                proc.send_signal(signal.SIGTERM)
                termed = True
            if time.monotonic() - started > 300:
                raise BenchError(f"{job} still running after 300 s")
            time.sleep(SAMPLE_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    wall = time.monotonic() - started
    stdout = out_path.read_text(encoding="utf-8", errors="replace")
    stderr = err_path.read_text(encoding="utf-8", errors="replace")
    if proc.returncode != 0:
        raise BenchError(f"{job} exited {proc.returncode}:\n{stdout[-2000:]}\n{stderr[-3000:]}")
    return JobRun(job, proc.returncode, watch.hwm_kb, watch.samples, wall, stdout, stderr)


def _last_json(text: str) -> dict[str, Any]:
    for line in reversed(text.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                value = json.loads(line)
            except ValueError:
                continue
            if isinstance(value, dict):
                return value
    return {}


def job_processes(symbols: int, watch_s: float, workdir: Path) -> list[JobRun]:
    names = list(nifty50_symbols())[:symbols]
    home = make_home(workdir / "jobs")
    (home.root / "universe.csv").write_text("symbol\n" + "\n".join(names) + "\n", encoding="utf-8")
    settings: dict[str, object] = {"UNIVERSE": "universe.csv", "MIN_SCORE": 0, "MAX_CNC_POSITIONS": symbols,
                                   "WATCHDOG_POLL_SECONDS": WATCHDOG_POLL}
    write_env(home, USER, **settings)  # before the broker starts: it opens the accounts of the env files
    clock = clock_file(workdir / "clock", JOBS_START, JOBS_SPEED)
    broker = start_broker(home, clock=clock, symbols=names)
    try:
        write_env(home, USER, KITE_ROOT=broker.url, **settings)
        env = child_env(home, PYTHONPATH=str(ROOT), TRADER_CLOCK=clock)
        runs = []
        for job in JOBS:
            print(f"  {job}", file=sys.stderr, flush=True)
            if job == "hourly_candle_watchdog":
                runs.append(_watchdog(home, env, workdir, watch_s))
            else:
                args = ["--json"] if job in ("pattern_daily", "place_orders_daily", "update_cnc_stoploss") else []
                runs.append(run_job(home, env, job, args, workdir))
            waited = _wait_for_fills(broker) if job == "place_orders_daily" else None
            runs[-1].note = _note(runs[-1], broker) + ("" if waited is None else f" {waited:.1f} wall s after it")
        return runs
    finally:
        broker.stop()


def _wait_for_fills(broker: RunningBroker, timeout: float = FILL_WAIT_S) -> float:
    """Until every entry is done (the LIMIT buys at the LTP fill when a later minute trades at or
    below it), so that update_cnc_stoploss and the watchdog have positions to work on; after
    ``timeout`` the run goes on with what filled. Returns the wall seconds waited."""
    kite = broker.kite(USER)
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if all(o.get("status") in ("COMPLETE", "CANCELLED", "REJECTED") for o in kite.orders()):
            break
        time.sleep(0.5)
    return time.monotonic() - started


def _watchdog(home: Home, env: dict[str, str], workdir: Path, watch_s: float) -> JobRun:
    """Up until every held symbol has its hourly level in the state, then ``watch_s`` wall seconds."""
    store = StateStore(home, USER, "paper")
    session = JOBS_START.date().isoformat()
    ready_at: list[float] = []
    started = time.monotonic()

    def keep_running() -> bool:
        if time.monotonic() - started > WATCHDOG_MAX_S:
            return False  # nothing bought (no levels to wait for) or levels never came: measured as is
        if not ready_at:
            symbols = ((store.read().get("watchdog") or {}).get(session) or {}).get("symbols") or {}
            if symbols and all((s.get("hourly") or {}).get("level") for s in symbols.values()):
                ready_at.append(time.monotonic())
            return True
        return time.monotonic() - ready_at[0] < watch_s

    return run_job(home, env, "hourly_candle_watchdog", ["--json"], workdir, keep_running=keep_running)


def _note(run: JobRun, broker: RunningBroker) -> str:
    """What the job did, from its own JSON line (or, failing that, its exit code)."""
    data = _last_json(run.stdout)
    if run.job == "whoami":
        return f"user {data.get('user')}, mode {data.get('mode')}"
    if run.job == "pattern_daily":
        return (f"{data.get('scored')} of {data.get('symbols')} symbols scored, {data.get('qualifying')} at "
                f"MIN_SCORE or above, {data.get('historical_calls')} historical calls")
    if run.job == "place_orders_daily":
        book = broker.kite(USER).orders()
        filled = sum(1 for o in book if o.get("transaction_type") == "BUY" and o.get("status") == "COMPLETE")
        return f"{len(book)} order(s) in the book, {filled} BUY filled"
    if run.job == "update_cnc_stoploss":
        gtts = [g for g in broker.kite(USER).get_gtts() if g.get("status") == "active"]
        return (f"{data.get('sent')} GTT write(s), {len(data.get('not_placed') or {})} stop(s) not placed "
                f"(at or above the LTP), {len(gtts)} active stop GTT(s)")
    if run.job == "hourly_candle_watchdog":
        return (f"{data.get('polls')} polls from {str(data.get('first_poll_at'))[11:19]} to "
                f"{str(data.get('last_poll_at'))[11:19]}, {data.get('exits_placed')} exit(s) placed, "
                f"{data.get('gtt_actions')} GTT change(s); outcome {data.get('outcome')} (SIGTERM)")
    if run.job == "summary":
        return f"{data.get('open_positions')} open position(s), {data.get('holdings')} holding(s)"
    return ""


# --- 3. the legacy floor ----------------------------------------------------------------------
def legacy_floor(modules: str) -> int:
    """VmHWM (kB) of a process that only imported ``modules``, read once the imports are done."""
    code = f"import {modules}, sys; print('ready', flush=True); sys.stdin.read()"
    proc = subprocess.Popen([str(VENV_PYTHON), "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True, cwd=ROOT, env={k: v for k, v in os.environ.items() if k in ("PATH", "HOME")})
    try:
        assert proc.stdout is not None and proc.stdin is not None
        if proc.stdout.readline().strip() != "ready":
            raise BenchError(f"the process importing {modules} did not start")
        watch = Watch()
        watch.sample(proc.pid)
        proc.stdin.close()
        proc.wait(30)
        return watch.hwm_kb
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)


# --- the table --------------------------------------------------------------------------------
def rows(idle: list[dict[str, Any]], jobs: list[JobRun], floors: dict[str, int]) -> list[list[str]]:
    out = []
    for r in idle:
        ok = r["peak_rss_mb"] < GOAL_MB
        out.append([f"scheduler {r['user']} (idle)", f"{r['rss_mb']:.1f}", f"{r['peak_rss_mb']:.1f}",
                    f"< {GOAL_MB:.0f}", "ok" if ok else "OVER"])
    if idle:
        worst = max(r["rss_mb"] for r in idle)
        fleet = FLEET * worst
        out.append([f"{FLEET} idle schedulers (50 x RSS)", f"{fleet:.0f}", "", f"< {FLEET_GOAL_MB:.0f}",
                    "ok" if fleet < FLEET_GOAL_MB else "OVER"])
        pss = [r["pss_mb"] for r in idle if r["pss_mb"] is not None]
        if pss:
            out.append([f"{FLEET} idle schedulers (50 x PSS, {len(idle)} up)", f"{FLEET * max(pss):.0f}", "", "", "-"])
    for j in jobs:
        out.append([j.job, "", f"{mb(j.peak_kb):.1f}", "", "-"])
    for modules, kb in floors.items():
        out.append([f"floor: import {modules}", "", f"{mb(kb):.1f}", f"(legacy {LEGACY_MB})", "-"])
    return out


def print_table(body: list[list[str]]) -> None:
    header = ["process", "idle RSS MB", "peak RSS MB", "goal MB", "verdict"]
    widths = [max(len(header[i]), *(len(r[i]) for r in body)) for i in range(len(header))]
    print("  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(header, widths, strict=True))))
    for r in body:
        print("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=2, help="idle schedulers to start (default 2)")
    parser.add_argument("--seconds", type=float, default=3.0, help="idle sampling time (default 3)")
    parser.add_argument("--symbols", type=int, default=10, help="universe size for the jobs (default 10)")
    parser.add_argument("--watch", type=float, default=10.0,
                        help="wall seconds the watchdog keeps polling once its levels are in (default 10)")
    parser.add_argument("--no-jobs", action="store_true", help="idle schedulers only")
    parser.add_argument("--json", action="store_true", help="print the measurements as JSON too")
    args = parser.parse_args(argv)
    if args.users < 1 or args.symbols < 1:
        parser.error("--users and --symbols must be >= 1")
    try:
        with tempfile.TemporaryDirectory(prefix="kfbench-memory-") as tmp:
            print(f"idle schedulers: {args.users}", file=sys.stderr, flush=True)
            idle = idle_schedulers(args.users, args.seconds, Path(tmp))
            jobs: list[JobRun] = []
            if not args.no_jobs:
                print(f"job processes, one paper user, {args.symbols} symbols:", file=sys.stderr, flush=True)
                jobs = job_processes(args.symbols, args.watch, Path(tmp))
            floors = {modules: legacy_floor(modules) for modules in FLOORS}
    except BenchError as exc:
        print(f"bench_memory: {exc}", file=sys.stderr)
        return 2
    print(f"resident size (/proc VmRSS, peak = VmHWM) in MB of {1024 * 1024} bytes; legacy watchdogs were "
          f"{LEGACY_MB} MB each, idle or not")
    print_table(rows(idle, jobs, floors))
    for j in jobs:
        print(f"{j.job}: {j.wall_s:.1f} wall s, {j.samples} samples; {j.note}")
    if args.json:
        print(json.dumps({"idle": idle, "floors_mb": {m: round(mb(kb), 1) for m, kb in floors.items()},
                          "jobs": [{"job": j.job, "peak_rss_mb": round(mb(j.peak_kb), 1), "wall_s": round(j.wall_s, 2),
                                    "samples": j.samples, "note": j.note} for j in jobs]}))
    worst = max(r["peak_rss_mb"] for r in idle)
    ok = worst < GOAL_MB
    print(f"idle scheduler peak RSS {worst:.1f} MB: {'OK' if ok else 'OVER'} (goal < {GOAL_MB:.0f} MB)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
