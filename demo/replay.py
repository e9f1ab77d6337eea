"""The replay: one clock file moved by the demo, progress lines, and the schedulers' runs seen
through their heartbeats (``data/<User>/heartbeat.json``, see kitefleet.heartbeat).

The clock file holds ``start,speed,anchor`` (kitefleet.clock): a change of speed re-anchors at
the current simulated instant, so nobody sees time jump; a jump writes a new start. Every
process (broker, schedulers, jobs) re-reads the file when it changes.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any, TextIO

from kitefleet.clock import ClockSpec, write_clock_file
from kitefleet.heartbeat import read_heartbeat
from kitefleet.home import Home

PROGRESS_EVERY = 2.0  # wall seconds between progress lines


@dataclass
class JobRun:
    user: str
    job: str
    pid: int
    started: datetime
    ended: datetime | None = None
    exit: int | None = None
    result: str | None = None


@dataclass
class Replay:
    home: Home
    path: Path
    users: tuple[str, ...]
    out: TextIO = sys.stdout
    wall_start: float = field(default_factory=time.monotonic)
    spec: ClockSpec | None = None
    runs: list[JobRun] = field(default_factory=list)
    _open: dict[tuple[str, str, str], JobRun] = field(default_factory=dict)
    _seen: set[tuple[str, str, str]] = field(default_factory=set)
    _last_line: float = 0.0

    @property
    def value(self) -> str:
        return f"file:{self.path}"

    # --- the clock -------------------------------------------------------------------------------
    def set(self, when: datetime, speed: float) -> None:
        anchor = time.time()
        write_clock_file(self.path, when, speed, anchor)
        self.spec = ClockSpec(when, speed, anchor)

    def now(self) -> datetime:
        assert self.spec is not None
        return self.spec.at(time.time())

    def speed(self, speed: float) -> None:
        self.set(self.now(), speed)

    # --- watching --------------------------------------------------------------------------------
    def heartbeats(self) -> dict[str, dict[str, Any] | None]:
        return {u: read_heartbeat(self.home, u) for u in self.users}

    def observe(self) -> dict[str, dict[str, Any] | None]:
        """Read the heartbeats; note runs that started or ended (and print them). A run that
        started and ended between two looks is still found, through the job's record."""
        beats = self.heartbeats()
        for user, beat in beats.items():
            if beat is None:
                continue
            current = beat.get("current_jobs") or {}
            records = beat.get("jobs") or {}
            for job, info in current.items():
                self._opened(user, job, str(info.get("since") or ""), int(info.get("pid") or 0))
            for job, rec in records.items():
                if rec.get("last_start") and job not in current:
                    self._opened(user, job, str(rec["last_start"]), int(rec.get("pid") or 0))
            for key in [k for k in self._open if k[0] == user and k[1] not in current]:
                run = self._open.pop(key)
                rec = records.get(run.job) or {}
                same = rec.get("last_start") == key[2]
                run.ended = datetime.fromisoformat(rec["last_end"]) if same and rec.get("last_end") else self.now()
                run.exit, run.result = (rec.get("last_exit"), rec.get("last_result")) if same else (None, None)
                self.event(run.ended, user, f"{run.job} ended: {run.result or 'exit ' + str(run.exit)}")
        return beats

    def _opened(self, user: str, job: str, since: str, pid: int) -> None:
        key = (user, job, since)
        if not since or key in self._seen:
            return
        self._seen.add(key)
        run = JobRun(user, job, pid, datetime.fromisoformat(since))
        self._open[key] = run
        self.runs.append(run)
        self.event(run.started, user, f"{job} started (pid {pid})")

    def event(self, when: datetime, user: str, text: str) -> None:
        print(f"  {self._stamp()} {when:%a %H:%M}  {user:<4} {text}", file=self.out, flush=True)

    def _stamp(self) -> str:
        return f"[{time.monotonic() - self.wall_start:5.0f}s]"

    def progress(self, beats: dict[str, dict[str, Any] | None], force: bool = False) -> None:
        wall = time.monotonic()
        if not force and wall - self._last_line < PROGRESS_EVERY:
            return
        self._last_line = wall
        parts = []
        for user, beat in beats.items():
            if beat is None:
                parts.append(f"{user}: (no heartbeat)")
                continue
            jobs = ", ".join(sorted(beat.get("current_jobs") or {})) or beat.get("state") or "?"
            parts.append(f"{user}: {jobs}")
        assert self.spec is not None
        print(f"  {self._stamp()} {self.now():%a %Y-%m-%d %H:%M} IST  x{self.spec.speed:g}  | "
              + "  | ".join(parts), file=self.out, flush=True)

    def run_until(self, target: datetime | None, *, speed: float | None = None,
                  until: Callable[[dict[str, dict[str, Any] | None]], bool] | None = None,
                  max_wall: float = 300.0, what: str = "") -> None:
        """Let simulated time run (at ``speed``, if given) until it reaches ``target`` and
        ``until(heartbeats)`` holds. Raises TimeoutError after ``max_wall`` wall seconds."""
        if speed is not None:
            self.speed(speed)
        deadline = time.monotonic() + max_wall
        while True:
            beats = self.observe()
            self.progress(beats)
            if (target is None or self.now() >= target) and (until is None or until(beats)):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what or 'the replay'}: not done after {max_wall:.0f} wall seconds "
                                   f"(simulated {self.now():%Y-%m-%d %H:%M})")
            time.sleep(self._nap(target))

    def _nap(self, target: datetime | None) -> float:
        """Wall seconds to sleep before looking again: 0.2, or less so as to wake at ``target``. At
        900x a 0.2 s nap is three market minutes: a segment meant to end at 09:19:30 (the slow entry
        window after it) ended after 09:22, and the 09:20 entries ran at full speed."""
        assert self.spec is not None
        if target is None or self.spec.speed <= 0:
            return 0.2
        left = (target - self.now()).total_seconds() / self.spec.speed
        if left <= 0:  # reached: waiting for the jobs, not the clock
            return 0.2
        return min(0.2, max(0.001, left))


def job_done(beats: dict[str, dict[str, Any] | None], job: str, day: date) -> bool:
    """Every user's ``job`` has run on ``day`` and is not running now."""
    for beat in beats.values():
        if beat is None or job in (beat.get("current_jobs") or {}):
            return False
        rec = (beat.get("jobs") or {}).get(job) or {}
        start, end = rec.get("last_start"), rec.get("last_end")
        if not start or not end or datetime.fromisoformat(start).date() != day:
            return False
    return True


def idle(beats: dict[str, dict[str, Any] | None]) -> bool:
    return all(b is not None and not b.get("current_jobs") for b in beats.values())
