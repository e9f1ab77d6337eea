"""Fleet day: N paper users under a real supervisord trade one replayed day on this machine.

    .venv/bin/python bench/bench_fleet_day.py [--users N[,N...]] [--speed X] [--poll S]
                                              [--symbols K] [--until HH:MM] [--smoke] [--json]

For each N of the ladder (a throw-away home under ``$TMPDIR`` each, every process a real one):
the paper broker with Kite's rate limits **on** (so a 429 the client-side limiter lets through
shows), N users (``U001``...; MIN_SCORE 0, so every user enters), a universe of K NIFTY 50
symbols. The replay follows ``make demo`` (demo.home, demo.procs, demo.replay):

1. the day before (P) 10:00: ``run-all place_orders_daily --from`` the demo's picks (INFY, ITC),
   so every user holds positions overnight;
2. ``supervisor-conf --external-broker``, supervisord from P 15:35: the schedulers catch up the
   stop update and run the evening scan (pattern_daily 16:00);
3. the replay day (D): ``login --all`` at 08:45, then the whole day at ``--speed``: the stop
   update 09:00 and 14:00, the watchdog from 09:15 to the close (INFY falls near 11:45: every
   watchdog exits it), the entries 09:20, the post-close scan 16:00 (or up to ``--until``).

Measured over D (08:45 to the end), from files the system already writes:

* **start lateness**: every run the schedulers started for a slot of D (``logs/<U>/daemon.log``:
  "<job> started" lines, stamped by the shared clock to the second) minus the slot's time (the
  session's open for the watchdog); p50/p99 in simulated and wall seconds (sim / speed: the
  CPU contention behind a late start costs the same wall seconds at any clock speed);
* **watchdog poll lateness**: per user, the gaps between the watchdog's LTP requests in the
  broker's audit minus ``--poll`` (the loop sets its next poll one interval after the start of
  the last, so a gap beyond the interval is lateness). A gap with an end inside a run of
  another job of that user (place_orders_daily and update_cnc_stoploss read LTPs too) is left
  out and counted;
* **broker**: Kite requests (audit) per wall second, mean and busiest second; server-side
  latency p50/p99 (the broker's request log, ``paper_broker.log``); 429s and 5xx (audit);
* **memory**: every few wall seconds, VmRSS and PSS summed over supervisord's process tree
  (schedulers and their jobs; supervisord itself is included) and the broker; the peaks;
* **CPU per user-day**: utime+stime (+ reaped children) of supervisord's tree over D, plus the
  morning ``login --all``, divided by N; the broker's CPU beside it; machine CPU busy (``/proc/stat``).

Goals (verdict per N): start lateness p99 within the scheduler's own ON_TIME_GRACE (later, a run
is a catch-up and an entry past the cut-off is skipped); watchdog poll lateness p99 within one
poll interval; zero 429s and zero 5xx; MemAvailable never under 10 % of RAM; every user's day
done (post-close scan) within its wall budget. The accelerated clock makes the watchdogs' load
``speed`` times what it is at real time (N x speed / poll LTP requests per wall second): a
stress margin, said in the output. The first N whose verdict fails is named, with the resource
that ran out (memory, CPU, the broker's rate limit, or none).

Exit code: 0 when the run completed (whatever the verdicts: the ladder is meant to find the
failing N), 2 when it could not run.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.bench_memory import pss_kb, status_kb  # noqa: E402
from demo import home as dhome  # noqa: E402
from demo.procs import Procs, kill_leftovers  # noqa: E402
from demo.replay import Replay, idle, job_done  # noqa: E402
from fleet import supervisor  # noqa: E402
from kitefleet.calendar import read_calendar  # noqa: E402
from kitefleet.clock import IST  # noqa: E402
from kitefleet.heartbeat import read_heartbeat  # noqa: E402
from kitefleet.home import Home  # noqa: E402
from tests.support.broker import RunningBroker, ensure_calendar, start_broker  # noqa: E402
from tests.support.homes import make_home, write_env  # noqa: E402
from workers.ratelimit import PER_SECOND, QUOTE, WINDOW_MARGIN_S  # noqa: E402
from workers.schedule import ON_TIME_GRACE  # noqa: E402
from workers.universe import nifty50_symbols  # noqa: E402

#: A Wednesday; P (the day before) comes from the calendar.
DAY = date(2026, 11, 4)
SEED = 7
SUPERVISOR_TIMINGS = ("--startsecs", "1", "--startretries", "3", "--stopwaitsecs", "30")
SETTINGS: dict[str, object] = {"PAPER_STARTING_CASH": 1_000_000, "MIN_SCORE": 0, "CAPITAL_DEPLOYMENT_PERCENT": 50,
                               "MAX_CNC_POSITIONS": 5, "UNIVERSE": "universe.csv"}
SAMPLE_EVERY_S = 3.0
MEM_FLOOR = 0.10  # MemAvailable must stay above this share of MemTotal
CPU_SATURATED = 0.95  # machine CPU busy at or above this is "saturated"
_STARTED = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) .*?: (\w+) started \(pid \d+; (.*)\)$")
_ENDED = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) .*?: (\w+) \(pid \d+\) ended: ")
_REQUEST = re.compile(r"paper_broker\.requests: (\S+) (\S+) (\d{3}) ([\d.]+)ms")


class BenchError(Exception):
    """The run could not go on (exit code 2)."""


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# --- pure: statistics and derivations (unit-tested on plain data) --------------------------------
def percentile(values: Iterable[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100); None for no values."""
    data = sorted(values)
    if not data:
        return None
    rank = max(1, -(-len(data) * q // 100))  # ceil
    return float(data[int(rank) - 1])


def _stamp(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=IST)


def parse_daemon_log(lines: Iterable[str]) -> tuple[list[tuple[datetime, str, str]], list[tuple[datetime, str]]]:
    """(starts, ends) of one scheduler's log: (when, job, reason) and (when, job)."""
    starts, ends = [], []
    for line in lines:
        if m := _STARTED.match(line.rstrip("\n")):
            starts.append((_stamp(m[1]), m[2], m[3]))
        elif m := _ENDED.match(line):
            ends.append((_stamp(m[1]), m[2]))
    return starts, ends


def slot_of(job_schedule: str, started: datetime, opening: datetime) -> datetime | None:
    """The slot a start served: the session's open, or the latest ``HH:MM`` of the schedule at or
    before the start, on the start's day; None for ``off`` or a start before every slot."""
    if job_schedule == "session":
        return opening
    slots = []
    for part in job_schedule.split(","):
        try:
            hh, mm = (int(x) for x in part.strip().split(":"))
        except ValueError:
            continue
        slot = started.replace(hour=hh, minute=mm, second=0, microsecond=0)
        if slot <= started:
            slots.append(slot)
    return max(slots) if slots else None


def start_lateness(starts: Iterable[tuple[datetime, str, str]], schedules: Mapping[str, str],
                   opening: datetime, since: datetime) -> tuple[list[dict[str, Any]], int]:
    """Lateness of every scheduled start whose slot is at or after ``since`` (the scheduler was up
    for it). Retries are not scheduled starts: returned as a count."""
    out, retries = [], 0
    for when, job, reason in starts:
        if reason.startswith("retry"):
            retries += 1
            continue
        slot = slot_of(schedules.get(job, "off"), when, opening)
        if slot is None or slot < since:
            continue
        out.append({"job": job, "slot": slot.strftime("%H:%M"), "late_s": (when - slot).total_seconds()})
    return out, retries


def run_windows(starts: Iterable[tuple[datetime, str, str]], ends: Iterable[tuple[datetime, str]],
                exclude: str, end_of_day: datetime) -> list[tuple[datetime, datetime]]:
    """(start, end) of every run of a job other than ``exclude`` (an unfinished run lasts until
    ``end_of_day``)."""
    pending: dict[str, list[datetime]] = defaultdict(list)
    windows = []
    for when, job, _ in starts:
        if job != exclude:
            pending[job].append(when)
    for when, job in sorted(ends):
        if job != exclude and pending[job]:
            windows.append((pending[job].pop(0), when))
    windows += [(s, end_of_day) for runs in pending.values() for s in runs]
    return windows


def poll_lateness(ltp_times: Iterable[datetime], windows: Iterable[tuple[datetime, datetime]],
                  interval: float) -> tuple[list[float], int]:
    """Lateness (s) of each LTP poll after the one before it, and how many gaps were left out
    because an end falls in another job's run (that job's own LTP requests)."""
    spans = list(windows)

    def busy(t: datetime) -> bool:
        return any(a <= t <= b + timedelta(seconds=1) for a, b in spans)  # log stamps are whole seconds

    times = sorted(ltp_times)
    late, skipped = [], 0
    for a, b in pairwise(times):
        if busy(a) or busy(b):
            skipped += 1
            continue
        late.append(max(0.0, (b - a).total_seconds() - interval))
    return late, skipped


def request_stats(audit: list[Mapping[str, Any]], latencies_ms: list[float]) -> dict[str, Any]:
    per_second = Counter(int(float(r["wall_time"])) for r in audit)
    span = (max(per_second) - min(per_second) + 1) if per_second else 0
    statuses = Counter(int(r["status"]) for r in audit)
    return {
        "requests": len(audit),
        "rate_mean": round(len(audit) / span, 1) if span else 0.0,
        "rate_peak": max(per_second.values()) if per_second else 0,
        "latency_p50_ms": percentile(latencies_ms, 50),
        "latency_p99_ms": percentile(latencies_ms, 99),
        "latency_max_ms": max(latencies_ms) if latencies_ms else None,
        "http_429": statuses.get(429, 0),
        "http_5xx": sum(n for s, n in statuses.items() if s >= 500),
        "by_path": dict(Counter(str(r["path"]).split("/")[1] for r in audit).most_common(6)),
    }


def parse_request_log(lines: Iterable[str]) -> list[float]:
    return [float(m[4]) for line in lines if (m := _REQUEST.search(line))]


def verdict(res: Mapping[str, Any]) -> list[str]:
    """The goals this run missed (empty: all met)."""
    missed = []
    if res.get("incomplete"):
        missed.append(f"day not done: {res['incomplete']}")
    p99 = res["start_late_p99_s"]
    if p99 is not None and p99 > ON_TIME_GRACE.total_seconds():
        missed.append(f"start lateness p99 {p99:.0f} s > {ON_TIME_GRACE.total_seconds():.0f} s")
    wp99 = res["poll_late_p99_s"]
    if wp99 is None or wp99 > res["poll_s"]:
        missed.append("no watchdog polls" if wp99 is None else f"poll lateness p99 {wp99:.0f} s > {res['poll_s']} s")
    if res["broker"]["http_429"] or res["broker"]["http_5xx"]:
        missed.append(f"{res['broker']['http_429']} x 429, {res['broker']['http_5xx']} x 5xx")
    if res["mem_available_min_mb"] < MEM_FLOOR * res["mem_total_mb"]:
        missed.append(f"MemAvailable down to {res['mem_available_min_mb']:.0f} MB")
    return missed


def resource_out(res: Mapping[str, Any]) -> str:
    """Which resource ran out, from what the run saw."""
    if res["mem_available_min_mb"] < MEM_FLOOR * res["mem_total_mb"]:
        return f"memory (MemAvailable down to {res['mem_available_min_mb']:.0f} of {res['mem_total_mb']:.0f} MB)"
    if res["cpu_saturated_share"] >= 0.2:
        return (f"CPU ({res['cpu_saturated_share']:.0%} of the day at >= {CPU_SATURATED:.0%} busy on "
                f"{os.cpu_count()} cores, load avg peak {res['load_peak']:.1f})")
    if res["broker"]["http_429"]:
        return "the broker's rate limit (429s the client limiter let through)"
    return (f"none saturated (CPU {res['cpu_saturated_share']:.0%} of the day >= {CPU_SATURATED:.0%} busy, "
            f"MemAvailable >= {res['mem_available_min_mb']:.0f} MB)")


# --- /proc --------------------------------------------------------------------------------------
_TICK = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()
    except (OSError, IndexError):
        return None


def tree(root: int) -> list[int]:
    """``root`` and every live descendant."""
    children: dict[int, list[int]] = defaultdict(list)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (f := _stat_fields(int(entry.name))):
            children[int(f[1])].append(int(entry.name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += children.get(pid, [])
    return out


def cpu_seconds(pids: Iterable[int], *, reaped: bool = True) -> float:
    """utime+stime (and, with ``reaped``, the children each has reaped) of ``pids``."""
    total = 0
    for pid in pids:
        if f := _stat_fields(pid):
            total += int(f[11]) + int(f[12]) + ((int(f[13]) + int(f[14])) if reaped else 0)
    return total / _TICK


def _meminfo() -> dict[str, float]:
    out = {}
    for line in Path("/proc/meminfo").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("MemTotal", "MemAvailable"):
            out[key] = int(value.split()[0]) / 1024
    return out


def _cpu_times() -> tuple[int, int]:
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return sum(fields) - idle, sum(fields)


@dataclass
class Sampler:
    """Every SAMPLE_EVERY_S wall seconds: RSS and PSS summed over supervisord's tree and the
    broker, MemAvailable, machine CPU busy, load average."""

    supervisord: int
    broker: int
    samples: list[dict[str, float]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="sampler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)

    def _run(self) -> None:
        busy0, total0 = _cpu_times()
        while not self._stop.wait(SAMPLE_EVERY_S):
            pids = tree(self.supervisord)
            rss = pss = 0
            for pid in pids:
                rss += status_kb(pid).get("VmRSS", 0)
                pss += pss_kb(pid) or 0
            busy1, total1 = _cpu_times()
            mem = _meminfo()
            self.samples.append({
                "procs": len(pids), "rss_mb": rss / 1024, "pss_mb": pss / 1024,
                "broker_rss_mb": status_kb(self.broker).get("VmRSS", 0) / 1024,
                "broker_pss_mb": (pss_kb(self.broker) or 0) / 1024,
                "mem_available_mb": mem.get("MemAvailable", 0.0),
                "cpu_busy": (busy1 - busy0) / max(1, total1 - total0), "load": os.getloadavg()[0],
            })
            busy0, total0 = busy1, total1


# --- one rung of the ladder -----------------------------------------------------------------------
@dataclass
class Fleet:
    n: int
    args: argparse.Namespace
    workdir: Path
    users: tuple[str, ...] = ()
    home: Home | None = None
    broker: RunningBroker | None = None
    procs: Procs | None = None

    def wait(self, replay: Replay, target: datetime, what: str, max_wall: float, done: Any = None) -> None:
        """Let the clock run to ``target`` (and until ``done(heartbeats)``), a line every 10 wall s."""
        assert self.home is not None
        deadline, last = time.monotonic() + max_wall, 0.0
        while True:
            now = replay.now()
            beats = None
            if now >= target and done is not None:
                beats = {u: read_heartbeat(self.home, u) for u in self.users}
            if now >= target and (done is None or done(beats)):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what}: not done after {max_wall:.0f} wall s (simulated {now:%a %H:%M})")
            if time.monotonic() - last >= 10:
                last = time.monotonic()
                say(f"  N={self.n} {now:%a %H:%M:%S} ({what}); load {os.getloadavg()[0]:.1f}")
            time.sleep(1.0)

    def orchestrator(self, *args: str, timeout: float = 600.0) -> None:
        assert self.procs is not None
        result = self.procs.orchestrator(*args, timeout=timeout)
        if result.returncode != 0:
            raise BenchError(f"orchestrator.py {' '.join(args)} exited {result.returncode}: "
                             f"{(result.stderr or result.stdout).strip()[-1500:]}")

    def run(self) -> dict[str, Any]:
        args, n = self.args, self.n
        speed = args.speed
        self.users = tuple(f"U{i:03d}" for i in range(1, n + 1))
        home = self.home = make_home(self.workdir / "h")
        socket = supervisor.socket_path(home)
        if len(os.fsencode(socket)) > dhome.MAX_SOCKET_PATH:
            raise BenchError(f"{socket}: too long for a unix socket; use a shorter TMPDIR")
        (home.root / "demo").mkdir()
        symbols = list(dict.fromkeys([*dhome.YESTERDAY_PICKS, *nifty50_symbols()]))[:max(args.symbols, 2)]
        (home.root / "universe.csv").write_text("symbol\n" + "\n".join(symbols) + "\n", encoding="utf-8")
        settings = {**SETTINGS, "WATCHDOG_POLL_SECONDS": args.poll}
        for u in self.users:  # before the broker starts: it opens the accounts of the env files
            write_env(home, u, **settings)
        ensure_calendar(home, DAY)
        calendar = read_calendar(home.calendar_file)
        previous = calendar.previous_trading_day(DAY)
        scenario = dhome.write_scenario(home, previous, DAY)
        replay = Replay(home, home.root / "clock", self.users, out=sys.stderr)
        replay.set(dhome.at(previous, "09:40"), 1.0)
        self.broker = broker = start_broker(home, clock=replay.value, scenario=scenario, symbols=symbols,
                                            rate_limits=True, seed=SEED)
        for u in self.users:
            write_env(home, u, KITE_ROOT=broker.url, **settings)
        self.procs = Procs(home, replay.value)
        wall0 = time.monotonic()
        say(f"N={n}: {len(symbols)} symbols, broker {broker.url}; login --all")
        self.orchestrator("login", "--all")

        say(f"N={n}: {previous} 10:00 run-all place_orders_daily --from {','.join(dhome.YESTERDAY_PICKS)}")
        replay.set(dhome.at(previous, "10:00"), 1.0)
        self.orchestrator("run-all", "place_orders_daily", "--", "--from", str(dhome.write_yesterday_picks(home)))
        replay.speed(min(speed, 60.0))
        self._wait_holdings(60 + n)

        replay.set(dhome.at(previous, "15:35"), speed)
        self.orchestrator("supervisor-conf", "--external-broker", *SUPERVISOR_TIMINGS)
        sup = self.procs.start_supervisord(timeout=60 + n)
        self._wait_running(60 + n)
        budget = 300 + 6 * n  # wall seconds a phase may take beyond its simulated length
        say(f"N={n}: supervisord up ({time.monotonic() - wall0:.0f} s); {previous} evening scan")
        self.wait(replay, dhome.at(previous, "16:00"), "evening scan", budget,
                  lambda b: job_done(b, "pattern_daily", previous) and idle(b))

        replay.set(dhome.at(DAY, "08:45"), 1.0)
        d_start = dhome.at(DAY, "08:45")
        tree_cpu0 = cpu_seconds(tree(sup.pid))
        broker_cpu0 = cpu_seconds([broker.proc.pid], reaped=False)
        kids0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.orchestrator("login", "--all")
        kids1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        login_cpu = (kids1.ru_utime + kids1.ru_stime) - (kids0.ru_utime + kids0.ru_stime)
        sampler = Sampler(sup.pid, broker.proc.pid)
        sampler.start()
        day_wall0 = time.monotonic()
        replay.set(dhome.at(DAY, "08:55"), speed)
        incomplete = ""
        end = dhome.at(DAY, args.until) if args.until else None
        try:
            if end is not None:
                wall = (end - replay.now()).total_seconds() / speed + budget
                self.wait(replay, end, f"the day to {args.until}", wall)
            else:
                self.wait(replay, dhome.at(DAY, "16:00"), "the day and its post-close scan",
                          (7.1 * 3600) / speed + budget, lambda b: job_done(b, "pattern_daily", DAY) and idle(b))
        except TimeoutError as exc:
            incomplete = str(exc)
            say(f"N={n}: {exc}")
        sim_end = replay.now()
        day_wall = time.monotonic() - day_wall0
        tree_cpu = cpu_seconds(tree(sup.pid)) - tree_cpu0
        broker_cpu = cpu_seconds([broker.proc.pid], reaped=False) - broker_cpu0
        sampler.stop()
        replay.speed(1.0)
        schedules = {job: str(info.get("schedule") or "off")
                     for b in (read_heartbeat(home, u) for u in self.users) if b
                     for job, info in (b.get("jobs") or {}).items()}
        say(f"N={n}: stopping supervisord")
        self.procs.stop_supervisord(grace=60 + n)
        audit = broker.audit(since=d_start)
        latencies = parse_request_log(_lines(broker.data_dir.glob("paper_broker.log*")))
        return self._result(schedules, audit, latencies, sampler.samples, calendar.session_bounds(DAY)[0],
                            d_start, sim_end, day_wall, tree_cpu + login_cpu, broker_cpu, incomplete)

    def _result(self, schedules: Mapping[str, str], audit: list[dict[str, Any]], latencies: list[float],
                samples: list[dict[str, float]], opening: datetime, d_start: datetime, sim_end: datetime,
                day_wall: float, fleet_cpu: float, broker_cpu: float, incomplete: str) -> dict[str, Any]:
        assert self.home is not None and self.broker is not None
        keys = {self._api_key(u): u for u in self.users}
        ltp: dict[str, list[datetime]] = defaultdict(list)
        for r in audit:
            if r["path"] == "/quote/ltp" and r.get("api_key") in keys and int(r["status"]) == 200:
                ltp[keys[r["api_key"]]].append(datetime.fromisoformat(r["time"]))
        lateness: list[dict[str, Any]] = []
        polls: list[float] = []
        retries = skipped = 0
        for u in self.users:
            starts, ends = parse_daemon_log(_lines([self.home.user_logs_dir(u) / "daemon.log"]))
            starts = [s for s in starts if s[0] >= d_start]
            ends = [e for e in ends if e[0] >= d_start]
            late, r = start_lateness(starts, schedules, opening, d_start)
            lateness += late
            retries += r
            windows = run_windows(starts, ends, "hourly_candle_watchdog", sim_end)
            gaps, s = poll_lateness([t for t in ltp[u] if t >= opening], windows, float(self.args.poll))
            polls += gaps
            skipped += s
        late_s = [x["late_s"] for x in lateness]
        mem = _meminfo()
        peak = max(samples, key=lambda s: s["pss_mb"]) if samples else {}
        speed = self.args.speed
        return {
            "users": self.n, "speed": speed, "poll_s": self.args.poll, "symbols": self.args.symbols,
            "simulated": f"{d_start:%H:%M}-{sim_end:%H:%M}", "day_wall_s": round(day_wall, 1),
            "starts": len(late_s), "retries": retries,
            "start_late_p50_s": percentile(late_s, 50), "start_late_p99_s": percentile(late_s, 99),
            "start_late_max_s": max(late_s) if late_s else None,
            "start_late_by_slot": _by_slot(lateness),
            "polls": len(polls), "poll_gaps_left_out": skipped,
            "poll_late_p50_s": percentile(polls, 50), "poll_late_p99_s": percentile(polls, 99),
            "poll_late_max_s": max(polls) if polls else None,
            "broker": request_stats(audit, latencies),
            "peak_rss_mb": round(max((s["rss_mb"] for s in samples), default=0.0)),
            "peak_pss_mb": round(peak.get("pss_mb", 0.0)), "peak_procs": int(peak.get("procs", 0)),
            "broker_rss_mb": round(max((s["broker_rss_mb"] for s in samples), default=0.0)),
            "broker_pss_mb": round(max((s["broker_pss_mb"] for s in samples), default=0.0)),
            "mem_total_mb": round(mem.get("MemTotal", 0.0)),
            "mem_available_min_mb": round(min((s["mem_available_mb"] for s in samples),
                                              default=mem.get("MemAvailable", 0.0))),
            "cpu_user_day_s": round(fleet_cpu / self.n, 2), "fleet_cpu_s": round(fleet_cpu, 1),
            "broker_cpu_s": round(broker_cpu, 1),
            "cpu_busy_mean": round(sum(s["cpu_busy"] for s in samples) / len(samples), 2) if samples else 0.0,
            "cpu_saturated_share": (sum(1 for s in samples if s["cpu_busy"] >= CPU_SATURATED) / len(samples)
                                    if samples else 0.0),
            "load_peak": max((s["load"] for s in samples), default=0.0),
            "incomplete": incomplete,
        }

    def _api_key(self, user: str) -> str:
        assert self.home is not None
        for line in self.home.env_file(user).read_text(encoding="utf-8").splitlines():
            if line.startswith("KITE_API_KEY="):
                return line.split("=", 1)[1]
        raise BenchError(f"{self.home.env_file(user)}: no KITE_API_KEY")

    def _wait_holdings(self, timeout: float) -> None:
        assert self.broker is not None
        deadline = time.monotonic() + timeout
        want = set(dhome.YESTERDAY_PICKS)
        while True:
            held = {a["user_name"]: {h["tradingsymbol"] for h in a.get("holdings") or []}
                    for a in self.broker.accounts()}
            missing = [u for u in self.users if not want <= held.get(u, set())]
            if not missing:
                return
            if time.monotonic() > deadline:
                say(f"  warning: {len(missing)} user(s) did not fill every entry of the day before; going on")
                return
            time.sleep(1.0)

    def _wait_running(self, timeout: float) -> None:
        assert self.home is not None
        deadline = time.monotonic() + timeout
        while True:
            infos = supervisor.process_infos(self.home) or {}
            down = [u for u in self.users if (infos.get(supervisor.namespec(u)) or {}).get("statename") != "RUNNING"]
            if not down:
                return
            if time.monotonic() > deadline:
                raise BenchError(f"{len(down)} scheduler(s) not RUNNING after {timeout:.0f} s, e.g. {down[:3]}")
            time.sleep(0.5)

    def close(self) -> None:
        if self.procs is not None:
            self.procs.stop_all()
        if self.broker is not None:
            self.broker.stop()
        if self.home is not None:
            kill_leftovers(self.home)


def _lines(paths: Iterable[Path]) -> Iterable[str]:
    for path in sorted(paths):
        try:
            with path.open(encoding="utf-8", errors="replace") as fh:
                yield from fh
        except OSError:
            continue


def _by_slot(lateness: list[dict[str, Any]]) -> dict[str, float | None]:
    groups: dict[str, list[float]] = defaultdict(list)
    for x in lateness:
        groups[f"{x['job']}@{x['slot']}"].append(x["late_s"])
    return {k: percentile(v, 99) for k, v in sorted(groups.items(), key=lambda kv: kv[0].split("@")[1])}


# --- output ----------------------------------------------------------------------------------------
def _f(value: float | None, fmt: str = ".0f") -> str:
    return "-" if value is None else format(value, fmt)


COLUMNS = ("users", "start late p50/p99 sim s", "wall s p99", "poll late p50/p99 sim s", "req/s mean/peak",
           "latency p50/p99 ms", "429", "peak RSS/PSS MB", "broker PSS MB", "CPU s/user-day", "CPU busy",
           "verdict")


def row(r: Mapping[str, Any]) -> list[str]:
    b = r["broker"]
    missed = verdict(r)
    p99 = r["start_late_p99_s"]
    return [str(r["users"]), f"{_f(r['start_late_p50_s'])}/{_f(p99)}",
            _f(None if p99 is None else p99 / r["speed"], ".2f"),
            f"{_f(r['poll_late_p50_s'])}/{_f(r['poll_late_p99_s'])}", f"{b['rate_mean']:.0f}/{b['rate_peak']}",
            f"{_f(b['latency_p50_ms'], '.1f')}/{_f(b['latency_p99_ms'], '.1f')}", str(b["http_429"]),
            f"{r['peak_rss_mb']}/{r['peak_pss_mb']}", str(r["broker_pss_mb"]), f"{r['cpu_user_day_s']:.1f}",
            f"{r['cpu_busy_mean']:.0%}", "ok" if not missed else "MISSED"]


def report(results: list[dict[str, Any]], args: argparse.Namespace) -> None:
    print(f"fleet day: each user a scheduler under supervisord trading {DAY} (the day before: entries, "
          f"evening scan); clock speed {args.speed:g}, WATCHDOG_POLL_SECONDS={args.poll}, {args.symbols} symbols, "
          f"broker rate limits on; {os.cpu_count()} cores")
    body = [row(r) for r in results]
    widths = [max(len(h), *(len(x[i]) for x in body)) for i, h in enumerate(COLUMNS)]
    print("  ".join(h.rjust(w) for h, w in zip(COLUMNS, widths, strict=True)))
    for x in body:
        print("  ".join(c.rjust(w) for c, w in zip(x, widths, strict=True)))
    print(f"goals: start lateness p99 <= {ON_TIME_GRACE.total_seconds():.0f} sim s (the scheduler's on-time grace); "
          f"poll lateness p99 <= one poll ({args.poll} sim s); zero 429/5xx; MemAvailable >= {MEM_FLOOR:.0%} of RAM; "
          "the day done. Lateness in simulated s (wall = sim / speed)")
    print(f"load: the watchdogs ask N x {args.speed:g}/{args.poll} LTP requests per wall second, {args.speed:g} x "
          "what the same fleet asks at real time")
    for r in results:
        b = r["broker"]
        print(f"N={r['users']}: simulated {r['simulated']} in {r['day_wall_s']:.0f} wall s; {r['starts']} scheduled "
              f"starts (max {_f(r['start_late_max_s'])} s late, {r['retries']} retries), p99 by slot "
              + ", ".join(f"{k} {_f(v)}" for k, v in r["start_late_by_slot"].items())
              + f"; {r['polls']} watchdog polls (max {_f(r['poll_late_max_s'])} s late, {r['poll_gaps_left_out']} gaps "
              f"beside other jobs left out); {b['requests']} Kite requests {b['by_path']}, latency max "
              f"{_f(b['latency_max_ms'], '.0f')} ms, {b['http_5xx']} 5xx; peak {r['peak_procs']} processes; "
              f"fleet CPU {r['fleet_cpu_s']:.0f} s, broker CPU {r['broker_cpu_s']:.0f} s; MemAvailable min "
              f"{r['mem_available_min_mb']} of {r['mem_total_mb']} MB; load peak {r['load_peak']:.1f}")
        if missed := verdict(r):
            print(f"N={r['users']} MISSED: {'; '.join(missed)}")
    first = next((r for r in results if verdict(r)), None)
    if first is None:
        top = results[-1]
        print(f"every goal met up to N={top['users']}; the closest resource: {resource_out(top)}")
    else:
        print(f"first failing N={first['users']}: {'; '.join(verdict(first))}; ran out: {resource_out(first)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", default="10,25,50,100", help="the ladder, e.g. 10,25,50,100")
    parser.add_argument("--speed", type=float, default=60.0, help="simulated seconds per wall second (default 60)")
    parser.add_argument("--poll", type=int, default=90, help="WATCHDOG_POLL_SECONDS (default 90: 1.5 wall s at 60)")
    parser.add_argument("--symbols", type=int, default=50, help="universe size, NIFTY 50 symbols (default 50)")
    parser.add_argument("--until", default=None, metavar="HH:MM", help="end the replay day here (default: "
                        "after the post-close scan)")
    parser.add_argument("--smoke", action="store_true", help="tiny: 2 users, 3 symbols, the day to 09:30")
    parser.add_argument("--json", action="store_true", help="print the measurements as JSON too")
    args = parser.parse_args(argv)
    if args.smoke:
        args.users, args.symbols, args.until = "2", 3, args.until or "09:30"
    try:
        ladder = [int(x) for x in args.users.split(",") if x.strip()]
    except ValueError:
        parser.error(f"--users {args.users!r}: expected counts like 10,25,50")
    if not ladder or min(ladder) < 1 or args.speed <= 0 or args.symbols < 2:
        parser.error("--users counts >= 1, --speed > 0, --symbols >= 2")
    if args.poll / args.speed < (1.0 + WINDOW_MARGIN_S) / PER_SECOND[QUOTE]:
        parser.error(f"--poll {args.poll} at --speed {args.speed:g} is under Kite's one quote request per wall "
                     "second: the client limiter, not the fleet, would set the poll lateness; raise --poll")
    results = []
    tmp = Path(tempfile.mkdtemp(prefix="kff"))  # short: supervisord's socket path is limited
    try:
        for n in ladder:
            fleet = Fleet(n, args, tmp / str(n))
            try:
                results.append(fleet.run())
            except (BenchError, TimeoutError, RuntimeError) as exc:
                print(f"bench_fleet_day: N={n}: {exc}", file=sys.stderr)
                return 2
            finally:
                fleet.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    report(results, args)
    if args.json:
        print(json.dumps(results, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
