"""Run every benchmark, print their tables, and append one dated section to ``BENCHMARKS.md``.

    .venv/bin/python bench/run.py [--smoke] [--only NAME[,NAME]] [--output PATH] [--list]

Each script of ``SCRIPTS`` runs in its own subprocess, in order, with its full-size arguments
(``--smoke``: its tiny ones). Its stdout is its result table and is captured; its stderr (progress)
passes through. A script that is missing, fails or times out is recorded as such and the run goes
on; the exit code is 1 if any script failed or was missing.

On-disk contract: without ``--smoke``, one section is appended to ``BENCHMARKS.md`` at the project
root (or ``--output``)::

    ## <YYYY-MM-DD HH:MM TZ>: <N> of <M> benchmarks
    machine facts (cores, Python, platform, memory, load average, commit)
    ### <number>. <title>
    `<command line>`, exit code, seconds
    ```text
    <the script's stdout, verbatim>
    ```

Earlier sections are never rewritten, so the file is the history of every run. ``--smoke`` (tiny
inputs, for the smoke test) never touches the file.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = PROJECT_ROOT / "bench"
DEFAULT_OUTPUT = PROJECT_ROOT / "BENCHMARKS.md"
FILE_HEADER = """# Benchmarks

Results of `make bench` (`bench/run.py`), newest last; `bench/README.md` says what each script
measures, against which baseline, and the goal. Numbers depend on the machine and on what else
it was doing: each section records both.
"""


@dataclass(frozen=True)
class Script:
    number: str
    name: str
    title: str
    args: tuple[str, ...]
    smoke_args: tuple[str, ...]
    timeout: float = 1800.0
    #: what the smoke test allows its ``--smoke`` run (wall seconds)
    smoke_timeout: float = 120.0

    @property
    def path(self) -> Path:
        return BENCH_DIR / f"{self.name}.py"


#: In the order of issue 10's list, then the paper broker's server benchmark; the fleet day (issue 15) last.
SCRIPTS: tuple[Script, ...] = (
    Script("1", "bench_fanout", "Fan-out: run-all wall time against the CPU lower bound",
           (), ("--users", "1,2", "--repeat", "1", "--symbols", "3")),
    Script("2", "bench_memory", "Memory: idle per-user schedulers and each job process",
           ("--users", "4", "--seconds", "5"), ("--users", "1", "--seconds", "0.5", "--symbols", "3", "--watch", "2")),
    Script("3", "bench_marketdata", "Market-data cost: pattern_daily scans, shared cache on and off",
           (), ("--users", "1", "--symbols", "3")),
    Script("4", "bench_state", "State store: transactions, latency, scaling, contention",
           (), ("--tx", "20", "--users", "1,2", "--contention-tx", "30")),
    Script("5", "bench_orders", "Paper broker: order round trips through the real client",
           (), ("--accounts", "2", "--orders", "5", "--symbols", "INFY,TCS")),
    Script("6", "bench_watchdog", "Watchdog reaction: pinned crossing to exit order",
           (), ("--sizes", "1", "--speed", "60", "--poll", "60")),
    Script("7", "bench_paper_broker", "Paper broker server: ltp and historical requests per second",
           (), ("--accounts", "2", "--calls", "10")),
    # A replayed day per rung, about 8 wall minutes plus 10 s per user at speed 60.
    Script("8", "bench_fleet_day", "Fleet day: N users under supervisord, one replayed trading day",
           ("--users", "10,25,50,100", "--speed", "60"), ("--smoke",), timeout=4 * 3600.0, smoke_timeout=300.0),
    Script("9", "bench_web", "Dashboard: 50-user fleet page from disk, CPU with five polling clients",
           (), ("--smoke",)),
    Script("10", "bench_backtest", "Backtest: 250 sessions of 50 symbols, both rules, paper source",
           (), ("--smoke",)),
)


@dataclass
class Result:
    script: Script
    argv: list[str]
    status: str  # "ok", "failed (exit N)", "timed out", "missing"
    returncode: int | None
    seconds: float
    stdout: str

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def run_script(script: Script, *, smoke: bool, python: str = sys.executable) -> Result:
    argv = [python, str(script.path.relative_to(PROJECT_ROOT)), *(script.smoke_args if smoke else script.args)]
    if not script.path.exists():
        return Result(script, argv, "missing", None, 0.0, "")
    started = time.monotonic()
    try:
        proc = subprocess.run(argv, cwd=PROJECT_ROOT, stdout=subprocess.PIPE, text=True,
                              timeout=script.timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        return Result(script, argv, "timed out", None, time.monotonic() - started, out)
    status = "ok" if proc.returncode == 0 else f"failed (exit {proc.returncode})"
    return Result(script, argv, status, proc.returncode, time.monotonic() - started, proc.stdout)


def _total_memory() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    return "unknown"


def _commit() -> str:
    """The checked-out commit (read-only), with ``+changes`` when the tree differs from it."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=PROJECT_ROOT, capture_output=True,
                              text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=PROJECT_ROOT,
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + (" +changes" if dirty else "")


def machine_facts() -> dict[str, str]:
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "cores": str(os.cpu_count()),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "platform": platform.platform(),
        "memory": _total_memory(),
        "load average at start": " ".join(f"{x:.2f}" for x in load) if load else "unknown",
        "commit": _commit(),
    }


def format_section(results: list[Result], facts: dict[str, str], when: datetime) -> str:
    done = sum(r.ok for r in results)
    lines = [f"## {when:%Y-%m-%d %H:%M %Z}: {done} of {len(results)} benchmarks", ""]
    lines += [f"- {key}: {value}" for key, value in facts.items()]
    for r in results:
        lines += ["", f"### {r.script.number}. {r.script.title}", ""]
        command = " ".join(["python", *r.argv[1:]])
        if r.status == "missing":
            lines.append(f"`{command}`: not run, {r.script.path.relative_to(PROJECT_ROOT)} does not exist yet.")
            continue
        lines.append(f"`{command}`: {r.status}, {r.seconds:.0f} s")
        if r.stdout.strip():
            lines += ["", "```text", r.stdout.rstrip("\n"), "```"]
    return "\n".join(lines) + "\n"


def append_section(path: Path, section: str) -> None:
    """Append, creating the file with its header the first time; earlier sections stay as they are."""
    if not path.exists() or not path.read_text(encoding="utf-8").strip():
        path.write_text(FILE_HEADER, encoding="utf-8")
    with path.open("a", encoding="utf-8") as fh:
        fh.write("\n" + section)


def select(only: str | None) -> list[Script]:
    if not only:
        return list(SCRIPTS)
    wanted = {w.strip().removesuffix(".py") for w in only.split(",") if w.strip()}
    by_key = {k: s for s in SCRIPTS for k in (s.name, s.name.removeprefix("bench_"), s.number)}
    unknown = sorted(wanted - by_key.keys())
    if unknown:
        raise SystemExit(f"unknown benchmark(s) {', '.join(unknown)}; known: "
                         f"{', '.join(s.name for s in SCRIPTS)}")
    chosen = {by_key[w].name for w in wanted}
    return [s for s in SCRIPTS if s.name in chosen]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny inputs; do not write BENCHMARKS.md")
    parser.add_argument("--only", help="comma-separated names (bench_state, state or 4)")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="file to append to")
    parser.add_argument("--list", action="store_true", help="list the scripts and their arguments, run nothing")
    args = parser.parse_args(argv)
    scripts = select(args.only)
    if args.list:
        for s in scripts:
            state = "" if s.path.exists() else "  (missing)"
            print(f"{s.number}. {s.name}: {' '.join(s.args) or '(defaults)'} | smoke: {' '.join(s.smoke_args)}{state}")
        return 0

    facts = machine_facts()
    when = datetime.now().astimezone()
    print(f"benchmarks {'(smoke) ' if args.smoke else ''}on " + ", ".join(f"{k} {v}" for k, v in facts.items()),
          flush=True)
    results = []
    for s in scripts:
        print(f"\n=== {s.number}. {s.title} ({s.name})", flush=True)
        r = run_script(s, smoke=args.smoke)
        results.append(r)
        if r.stdout:
            print(r.stdout.rstrip("\n"))
        print(f"--- {s.name}: {r.status}" + ("" if r.status == "missing" else f", {r.seconds:.1f} s"), flush=True)
    bad = [r for r in results if not r.ok]
    if not args.smoke:
        append_section(args.output, format_section(results, facts, when))
        print(f"\nappended to {args.output}")
    if bad:
        print("not ok: " + ", ".join(f"{r.script.name} ({r.status})" for r in bad), file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
