"""``python -m workers daemon --user USER``: the user's long-running scheduler (``trader:<User>``).

Over 400 lines because ``Scheduler`` holds one process's whole life (instance lock, child process
groups, adoption by pid, run records, signals, the stop grace), which share its state; the decisions
are already out in workers.schedule.

Holds the user's instance lock (``data/<User>/locks/instance.lock``) for its whole life, so a
second copy exits 3 (already running). On NSE trading days it runs the user's jobs at their
configured times (``SCHEDULE_*`` keys; decisions in workers.schedule), each job as a child
process built by the launcher, in a process group of its own. Before starting a job it probes the
job's lock (``data/<User>/locks/job-<job>.lock``): a job already running (left by a SIGKILLed
scheduler, or started by hand) is adopted and watched by pid instead of started again.

It stays lean: no kiteconnect, pandas, numpy or calendar library; the calendar is the export
``data/shared/nse_calendar.json`` (missing: exit 4; ``orchestrator.py exec`` exports it first).

Each job's stdout and stderr go to ``logs/<User>/<job>.out.log`` (appended), never to the
scheduler's own output: a job must survive its scheduler.

Files: writes ``data/<User>/heartbeat.json`` (at least every 2 wall seconds) and
``data/<User>/scheduler.json`` (run records, on every change); see kitefleet.heartbeat. Reads
``data/<User>/session.json``'s mtime (a new login re-runs jobs that failed for the token) and
``data/<User>/paused`` (shown in the heartbeat; the jobs themselves honour it).

SIGTERM/SIGINT: stop every job by process group (TERM, then KILL after ``--stop-grace``), write
a final heartbeat, release the lock, exit 0. Keep ``--stop-grace`` below supervisord's
``stopwaitsecs``. A crash of the scheduler itself leaves its jobs running: the restarted
scheduler adopts them.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from kitefleet import clock, outbox
from kitefleet import heartbeat as hb
from kitefleet.calendar import NseCalendar, read_calendar
from kitefleet.errors import ConfigError
from kitefleet.exitcodes import ExitCode
from kitefleet.home import Home, ensure_dir
from kitefleet.launcher import signal_leader, spawn_worker
from kitefleet.locks import instance_lock, job_lock, lock_holder
from workers.context import STOP, JobContext
from workers.schedule import (
    ENTRY_JOBS,
    Decision,
    JobRecord,
    Plan,
    Running,
    Start,
    decide,
    format_schedule,
    record_exit,
    record_lost,
    record_skip,
    record_start,
)

HANDLES_STOP = True
TAKES_JOB_LOCK = False  # it takes the instance lock itself
# Under supervisord stderr already lands in logs/<User>/scheduler.out.log: no second copy.
LOG_TO_CONSOLE = "SUPERVISOR_ENABLED" not in os.environ
DEFAULT_STOP_GRACE = 20.0
#: A step back of the clock larger than this is logged (small ones are NTP slews, not news).
CLOCK_STEP_NOTICED = timedelta(seconds=5)
#: A file that cannot be written (a full disk) is reported at most this often (wall seconds).
WRITE_ERROR_EVERY = 60.0
#: a notify run that failed (a bad URL, a full disk) is started again at most this often (wall seconds)
NOTIFY_RETRY_S = 300.0

Launch = Callable[[str], "subprocess.Popen[bytes]"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--stop-grace", type=float, default=DEFAULT_STOP_GRACE, metavar="SECONDS",
                        help="on SIGTERM, wait this long for jobs to stop before SIGKILL "
                             f"(default {DEFAULT_STOP_GRACE:g}; keep it below supervisord's stopwaitsecs)")


@dataclass
class Tracked:
    job: str
    run: Running
    proc: subprocess.Popen[bytes] | None  # None: adopted, not our child
    lock_path: Path
    stop_sent: float | None = None  # monotonic time of the TERM
    interrupted: bool = False  # stopped because the scheduler itself is stopping


class Scheduler:
    """huey-style: ``initialize()``, ``loop_once(now)`` (returns the next wake-up), ``shutdown()``.
    Collaborators are attributes a test can swap: ``launch`` starts one job's process."""

    def __init__(self, home: Home, user: str, plan: Plan, calendar: NseCalendar, *, mode: str,
                 log: logging.Logger | None = None, launch: Launch | None = None,
                 stop_grace: float = DEFAULT_STOP_GRACE) -> None:
        self.home, self.user, self.plan, self.calendar, self.mode = home, user, plan, calendar, mode
        self.log = log or logging.getLogger("kitefleet.daemon")
        self.launch: Launch = launch or self._spawn
        self.stop_grace = stop_grace
        self.records: dict[str, JobRecord] = {}
        self.tracked: dict[str, Tracked] = {}
        self.state = "starting"
        self.last_decision: Decision | None = None
        self._last_beat = 0.0
        self._last_now: datetime | None = None
        #: what could not be written -> monotonic time it was last reported (a full disk)
        self._write_errors: dict[str, float] = {}
        self._records_unsaved = False
        self._calendar_key: tuple[int, int] | None = self._file_key(home.calendar_file)
        self._notify_not_before = 0.0  # monotonic: after a failed notify run, wait before the next

    # --- collaborators ---------------------------------------------------------------------------
    def _spawn(self, job: str) -> subprocess.Popen[bytes]:
        # Not our stdout: under supervisord that is a pipe which dies with this process, and a job
        # that outlives a SIGKILLed scheduler would then die of EPIPE on its next print.
        log_dir = ensure_dir(self.home.user_logs_dir(self.user))
        fd = os.open(log_dir / f"{job}.out.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            return spawn_worker(self.user, job, home=self.home, stdin=subprocess.DEVNULL, stdout=fd,
                                stderr=subprocess.STDOUT)
        finally:
            os.close(fd)

    def job_lock_path(self, job: str) -> Path:
        return job_lock(self.home, self.user, job).path

    @staticmethod
    def _file_key(path: Path) -> tuple[int, int] | None:
        try:
            st = path.stat()
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size)

    def session_mtime(self) -> float | None:
        try:
            return self.home.session_file(self.user).stat().st_mtime
        except OSError:
            return None

    # --- lifecycle -------------------------------------------------------------------------------
    def initialize(self, now: datetime) -> None:
        for job, raw in hb.read_records(self.home, self.user).items():
            try:
                self.records[job] = JobRecord.from_json(raw)
            except (KeyError, TypeError, ValueError) as exc:
                raise ConfigError(f"{hb.records_path(self.home, self.user)}: bad record for {job} ({exc}); "
                                  "fix or delete it") from None
        # Jobs left running by an earlier scheduler (SIGKILLed, say) are watched, not duplicated;
        # an adopted run stands for the slots this scheduler would otherwise start it for.
        would_start = {s.job: s for s in decide(self.calendar, self.plan, now, self.records, {},
                                                 self.session_mtime()).start}
        for job in self.plan.schedules:
            rec = self._record(job)
            open_run = rec.day == now.date() and rec.last_start is not None and rec.last_end is None
            pid = lock_holder(self.job_lock_path(job))
            if pid is None and open_run and rec.pid is not None and self.is_job_process(rec.pid, job):
                pid = rec.pid  # still starting: not holding its lock yet
            if pid is None:
                if open_run:  # it ended (or died) while no scheduler watched it
                    self.records[job] = record_lost(rec, job, self.plan, now)
                    self.log.warning("%s: %s", job, self.records[job].last_result)
                continue
            if open_run:
                self._adopt(job, pid, now, rec.done_slots)  # the run the earlier scheduler started
                continue
            start = would_start.get(job)
            self._adopt(job, pid, now, start.slots if start else ())
            if start is not None:
                self.records[job] = replace(record_start(rec, start, now, adopted=True), pid=pid)
        self.write_records()
        self.log.info("scheduler for %s (%s) started, pid %d; schedules: %s", self.user, self.mode, os.getpid(),
                      "; ".join(f"{j}={format_schedule(s)}" for j, s in self.plan.schedules.items()))
        self.write_heartbeat(now, force=True)

    def loop_once(self, now: datetime) -> datetime:
        if self._last_now is not None and now < self._last_now - CLOCK_STEP_NOTICED:
            # A clock file moved back, or the wall clock stepped: decide afresh from the new time
            # (workers.schedule never reads this as the end of a session).
            self.log.warning("the clock went back from %s to %s: deciding afresh",
                             self._last_now.strftime("%Y-%m-%d %H:%M:%S"), now.strftime("%Y-%m-%d %H:%M:%S"))
        self._last_now = now
        dirty = self._reap(now)
        self._refresh_calendar()
        running = {job: t.run for job, t in self.tracked.items()}
        decision = decide(self.calendar, self.plan, now, self.records, running, self.session_mtime())
        self.last_decision = decision
        for skip in decision.skip:
            self.records[skip.job] = record_skip(self._record(skip.job), skip, now)
            self.log.warning("%s: %s", skip.job, skip.reason)
            dirty = True
        for job in decision.stop:
            self._stop(job, "the session is over")
        for start in decision.start:
            self._start(start, now)
            dirty = True
        if "notify" not in self.tracked and time.monotonic() >= self._notify_not_before \
                and outbox.needs_delivery(self.home, self.user):
            self._start(Start("notify", (), "undelivered events in the outbox"), now)
            dirty = True
        if dirty or self._records_unsaved:
            self.write_records()
        waiting = any(r.retry is not None and r.retry.reason == "token" for r in self.records.values()
                      if r.day == now.date())
        self.state = "running" if self.tracked else ("waiting for login" if waiting else "idle")
        self.write_heartbeat(now, force=dirty)
        assert decision.next_wakeup is not None
        return decision.next_wakeup

    def shutdown(self, now: datetime | None = None) -> None:
        self.state = "stopping"
        self.write_heartbeat(now or clock.now(), force=True)
        for job in list(self.tracked):
            self._stop(job, "the scheduler is stopping", interrupted=True)
        deadline = time.monotonic() + self.stop_grace
        while self.tracked and time.monotonic() < deadline:
            self._reap(clock.now())
            if self.tracked:
                time.sleep(0.05)
        for t in self.tracked.values():
            self.log.warning("%s (pid %d) did not stop within %.0fs: SIGKILL", t.job, t.run.pid, self.stop_grace)
            signal_leader(t.run.pid, signal.SIGKILL)
            if t.proc is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    t.proc.wait(5)
        self._reap(clock.now(), final=True)
        self.write_records()
        self.state = "stopped"
        self.write_heartbeat(clock.now(), force=True)
        self.log.info("scheduler for %s stopped", self.user)

    # --- pieces ----------------------------------------------------------------------------------
    def _record(self, job: str) -> JobRecord:
        return self.records.get(job, JobRecord())

    def _adopt(self, job: str, pid: int, now: datetime, slots: tuple[str, ...]) -> None:
        self.tracked[job] = Tracked(job, Running(pid, now, slots, adopted=True), None, self.job_lock_path(job))
        self.log.info("%s is already running (pid %d): adopted, not started again", job, pid)

    def _start(self, start: Start, now: datetime) -> None:
        holder = lock_holder(self.job_lock_path(start.job))
        if holder is not None:
            self._adopt(start.job, holder, now, start.slots)
            self.records[start.job] = replace(record_start(self._record(start.job), start, now, adopted=True),
                                              pid=holder)
            return
        # Slots are consumed before the spawn: dying in between must not run the job twice.
        before = self._record(start.job)
        self.records[start.job] = record_start(before, start, now)
        if not self.write_records() and start.job in ENTRY_JOBS:
            # Entries are never sent twice: without the record on disk a restarted scheduler could
            # send them again. Undone here, so the next look tries again. Other jobs start anyway
            # (a stop or the watchdog matters more on a full disk, and their reruns reconcile).
            self.records[start.job] = before
            self.log.warning("%s not started: its run record could not be saved; trying again", start.job)
            return
        try:
            proc = self.launch(start.job)
        except OSError as exc:
            self.log.error("%s could not be started: %s", start.job, exc)
            self.records[start.job] = record_exit(self._record(start.job), start.job, self.plan,
                                                  Running(0, now, start.slots), 1, now)
            return
        self.tracked[start.job] = Tracked(start.job, Running(proc.pid, now, start.slots), proc,
                                          self.job_lock_path(start.job))
        self.records[start.job] = replace(self.records[start.job], pid=proc.pid)
        self.log.info("%s started (pid %d; %s)", start.job, proc.pid, start.reason)

    def _stop(self, job: str, why: str, *, interrupted: bool = False) -> None:
        t = self.tracked.get(job)
        if t is None or t.stop_sent is not None:
            return
        t.interrupted = interrupted
        self.log.info("stopping %s (pid %d): %s", job, t.run.pid, why)
        t.stop_sent = time.monotonic()
        signal_leader(t.run.pid, signal.SIGTERM)

    def is_job_process(self, pid: int, job: str) -> bool:
        """Is ``pid`` alive and this user's ``job`` (not a recycled pid)?"""
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1][:1]
        except (OSError, IndexError):
            return False
        words = [a.decode(errors="replace") for a in argv]
        return state != "Z" and job in words and self.user in words and "workers" in words

    def _ended(self, t: Tracked) -> tuple[bool, int | None]:
        if t.proc is not None:
            code = t.proc.poll()
            return code is not None, code
        # An adopted job is not our child: it runs while it holds its lock, or while its pid is
        # still that job (it may not hold its lock yet).
        if lock_holder(t.lock_path) == t.run.pid:
            return False, None
        return not self.is_job_process(t.run.pid, t.job), None

    def _reap(self, now: datetime, *, final: bool = False) -> bool:
        changed = False
        for job, t in list(self.tracked.items()):
            ended, code = self._ended(t)
            if not ended:
                if t.stop_sent is not None and time.monotonic() - t.stop_sent > self.stop_grace and not final:
                    self.log.warning("%s (pid %d) ignored SIGTERM for %.0fs: SIGKILL", job, t.run.pid, self.stop_grace)
                    signal_leader(t.run.pid, signal.SIGKILL)
                    t.stop_sent = time.monotonic()
                if not final:
                    continue
            del self.tracked[job]
            changed = True
            if code == ExitCode.ALREADY_RUNNING and t.stop_sent is None:
                holder = lock_holder(t.lock_path)
                if holder is not None:  # lost a race with another copy: watch that one instead
                    self._adopt(job, holder, now, t.run.slots)
                    continue
            if t.proc is not None:
                signal_leader(t.run.pid, signal.SIGKILL)  # nothing the job started may outlive it
            self.records[job] = record_exit(self._record(job), job, self.plan, t.run, code, now,
                                            session_mtime=self.session_mtime(), stopped=t.stop_sent is not None,
                                            interrupted=t.interrupted)
            level = logging.INFO if code in (0, None) or t.stop_sent is not None else logging.WARNING
            self.log.log(level, "%s (pid %d) ended: %s", job, t.run.pid, self.records[job].last_result)
            if level == logging.WARNING:
                self._tell_failure(job, code, t.run)
        return changed

    def _tell_failure(self, job: str, code: int | None, run: Running) -> None:
        """A job ended non-zero by itself: an event for the user's notify job (kitefleet.outbox)."""
        if job == "notify":  # its own failure cannot be delivered by itself: status shows it
            self._notify_not_before = time.monotonic() + NOTIFY_RETRY_S
            return
        if code == ExitCode.TOKEN:
            outbox.emit(self.home, self.user, "login_needed", f"{job} stopped: the Kite session expired or is "
                        "invalid; waiting for a login", act=f"orchestrator.py login {self.user}",
                        key=f"token|{run.since.date()}")
            return
        act = (f"orchestrator.py doctor {self.user}; orchestrator.py resolve-intent {self.user} ..."
               if code == ExitCode.RECONCILE_FAILED else f"see logs/{self.user}/{job}.log")
        outbox.emit(self.home, self.user, "job_failed", f"{job} failed: {self.records[job].last_result}",
                    act=act, key=f"{job}|{run.since.isoformat()}")

    def _refresh_calendar(self) -> None:
        key = self._file_key(self.home.calendar_file)
        if key is None or key == self._calendar_key:
            return
        try:
            self.calendar = read_calendar(self.home.calendar_file)
            self.log.info("NSE calendar re-read (%s..%s)", self.calendar.first, self.calendar.last)
        except ConfigError as exc:
            self.log.error("%s; keeping the calendar read earlier", exc)
        self._calendar_key = key

    # --- files -----------------------------------------------------------------------------------
    def _write_failed(self, what: str, path: Path, exc: OSError) -> None:
        """A write failed (ENOSPC, EROFS, EIO): logged at most once a minute, never fatal; the
        caller tries again on its next turn. A scheduler that died of a full disk would leave
        nothing watching the positions."""
        wall = time.monotonic()
        last = self._write_errors.get(what)
        if last is None or wall - last >= WRITE_ERROR_EVERY:
            self._write_errors[what] = wall
            self.log.error("could not write the %s %s (%s); still running, trying again", what, path,
                           exc.strerror or exc)

    def _write_ok(self, what: str) -> None:
        if self._write_errors.pop(what, None) is not None:
            self.log.info("the %s is written again", what)

    def write_records(self) -> bool:
        """Save the run records; False (logged, retried on the next loop) when they cannot be."""
        try:
            hb.write_records(self.home, self.user,
                             {job: rec.to_json() for job, rec in sorted(self.records.items())})
        except OSError as exc:
            self._records_unsaved = True
            self._write_failed("run records", hb.records_path(self.home, self.user), exc)
            return False
        self._records_unsaved = False
        self._write_ok("run records")
        return True

    def heartbeat_payload(self, now: datetime) -> dict[str, Any]:
        decision = self.last_decision
        jobs: dict[str, Any] = {}
        for job in sorted(set(self.plan.schedules) | set(self.records)):
            jobs[job] = {"schedule": format_schedule(self.plan.schedules.get(job)), **self._record(job).to_json()}
        return {
            "mode": self.mode,
            "pid": os.getpid(),
            "time": now.isoformat(),
            "state": self.state,
            "day": decision.day_kind if decision else None,
            "paused": (self.home.user_data_dir(self.user) / "paused").exists(),
            "next_wakeup": decision.next_wakeup.isoformat() if decision and decision.next_wakeup else None,
            "current_jobs": {
                job: {"pid": t.run.pid, "since": t.run.since.isoformat(), "adopted": t.run.adopted,
                      "slots": list(t.run.slots)}
                for job, t in sorted(self.tracked.items())
            },
            "jobs": jobs,
        }

    def write_heartbeat(self, now: datetime, *, force: bool = False) -> None:
        wall = time.monotonic()
        if not force and wall - self._last_beat < hb.HEARTBEAT_EVERY:
            return
        try:
            hb.write_heartbeat(self.home, self.user, self.heartbeat_payload(now))
        except OSError as exc:
            self._write_failed("heartbeat", hb.heartbeat_path(self.home, self.user), exc)
            return  # _last_beat unchanged: tried again on the next loop
        self._write_ok("heartbeat")
        self._last_beat = wall


def run(ctx: JobContext) -> int:
    lock = instance_lock(ctx.home, ctx.user)
    lock.acquire()  # AlreadyRunning: exit 3, which supervisord is told not to restart
    try:
        the_clock = clock.get_clock()
        now = the_clock.now()
        calendar = read_calendar(ctx.home.calendar_file)
        if not calendar.covers(now.date()):
            raise ConfigError(f"{ctx.home.calendar_file}: covers {calendar.first}..{calendar.last}, not today "
                              f"({now.date()}); delete it and start again through 'orchestrator.py exec'")
        scheduler = Scheduler(ctx.home, ctx.user, Plan.from_settings(ctx.settings), calendar,
                              mode=ctx.settings.mode, log=ctx.log, stop_grace=ctx.args.stop_grace)
        scheduler.initialize(now)
        # A crash below leaves the jobs running on purpose: the restarted scheduler adopts them.
        while not STOP.is_set():
            wake = scheduler.loop_once(the_clock.now())
            # Short wall slices: the heartbeat stays fresh and a jump of a clock file is noticed.
            the_clock.sleep_until(wake, max_wall=1.0, stop=STOP)
        scheduler.shutdown()
    finally:
        lock.release()
    return ExitCode.OK
