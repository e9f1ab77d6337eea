"""The per-user scheduler's decisions, as pure functions: no I/O, no clock, ``now`` is passed in.

Over 400 lines because the rule table below is the schedule's contract; the code is one pure
``decide`` and the run-record helpers it reads and writes.

``decide(calendar, plan, now, records, running, session_mtime)`` answers which jobs to start, which
to stop and which missed runs to give up on, plus when to look again. ``workers.daemon`` applies
the answer (spawning processes, writing files); tests drive whole days through it without sleeping.

Rules (times in Asia/Kolkata, jobs only on NSE trading days of the exported calendar):

| schedule value        | runs                                                                 |
|-----------------------|----------------------------------------------------------------------|
| ``HH:MM[,HH:MM...]``  | once per slot, at the slot time                                      |
| ``session``           | from the open (or as soon as the scheduler is up in the session), stopped at the close |
| ``off``               | never                                                                |

Restart and failure behaviour (a "slot" is one scheduled time of one day; ``session`` is one):

| scenario                                        | outcome                                                  |
|-------------------------------------------------|----------------------------------------------------------|
| scheduler down at slots, back later that day    | the job runs once for all the missed slots (catch-up)    |
| missed ``place_orders_daily`` (an entry job)    | caught up only before ``ENTRY_CUTOFF``; else skipped, recorded |
| missed ``hourly_candle_watchdog`` (session job) | started if the session is still open; skipped after it   |
| missed ``pattern_daily``, ``update_cnc_stoploss`` | caught up at any time the same day                     |
| a slot whose run was started, scheduler died    | never started again: slots are consumed before the spawn |
| the job's lock is held by another process       | adopted: watched by pid, not started again               |
| a run ended while no scheduler watched it       | recorded (exit code unknown); only the session job runs  |
|                                                 | again, while the session is open                         |
| job exits 5 (token)                             | "waiting for login": re-run when session.json changes    |
|                                                 | (paper: also after TOKEN_BACKOFF)                        |
| job exits 7, or the session job crashes         | re-run after RETRY_BACKOFF x runs so far; MAX_RUNS_PER_DAY |
| job exits 0, 1, 2, 3, 4, 6 or is killed         | done for that slot; the result is recorded               |
| a retry that no longer makes sense              | given up, recorded (entry past cut-off, watchdog after close) |
| the scheduler stops (SIGTERM) while a job runs  | the job is stopped; the next scheduler re-runs it that day |
|                                                 | (not an entry job: entries are never re-sent)            |
| a new day                                       | day-scoped records reset; the last results are kept      |
| the clock goes back (clock file, wall-clock step) | a fresh decision from the new time, never an end of     |
|                                                 | session: a running session job is not stopped, a session |
|                                                 | job is (re)started once the session is open, one-shot    |
|                                                 | slots already run stay done (never twice); a clock put   |
|                                                 | back to an earlier day starts nothing                    |
"""

from __future__ import annotations

import signal
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any

from kitefleet.calendar import NseCalendar
from kitefleet.clock import IST
from kitefleet.exitcodes import ExitCode
from kitefleet.jobs import SCHEDULED_JOBS, schedule_key

if TYPE_CHECKING:  # the lean scheduler reads settings through the context; no import at run time
    from kitefleet.settings import Settings

#: Jobs that open new positions: a missed run is caught up only before ENTRY_CUTOFF.
ENTRY_JOBS = frozenset({"place_orders_daily"})
SESSION = "session"

#: A run started this long after its slot still counts as on time (the entry cut-off does not apply).
ON_TIME_GRACE = timedelta(minutes=10)
#: Paper jobs log in by themselves: after a token failure, try again after this long.
TOKEN_BACKOFF_PAPER = timedelta(minutes=5)
#: After a temporary failure (or a session job's crash): wait this long times the runs so far.
RETRY_BACKOFF = timedelta(minutes=2)
MAX_RUNS_PER_DAY = 4

Schedule = tuple[time, ...] | str | None


def format_schedule(schedule: Schedule) -> str:
    if schedule is None:
        return "off"
    if isinstance(schedule, str):
        return schedule
    return ",".join(t.strftime("%H:%M") for t in schedule)


@dataclass(frozen=True)
class Plan:
    """What the user's env file asks for: a schedule per job, the entry cut-off, the mode."""

    schedules: Mapping[str, Schedule]
    entry_cutoff: time = time(11, 0)
    paper: bool = True

    @classmethod
    def from_settings(cls, settings: Settings) -> Plan:
        schedules = {job: settings.schedule(schedule_key(job)) for job in SCHEDULED_JOBS}
        return cls(schedules, settings.time_of_day("ENTRY_CUTOFF"), settings.is_paper)

    def enabled(self) -> list[str]:
        return [job for job, s in self.schedules.items() if s is not None]


@dataclass(frozen=True)
class Retry:
    reason: str  # "token", "temporary" or "crashed"
    slots: tuple[str, ...]
    not_before: datetime | None = None
    #: token retries: the session file's mtime when the job failed (a new login changes it)
    session_mtime: float | None = None


@dataclass(frozen=True)
class JobRecord:
    """One job's run record. ``day``, ``done_slots``, ``runs_today`` and ``retry`` are about one
    day; the ``last_*`` fields survive the day change (status shows them)."""

    day: date | None = None
    done_slots: tuple[str, ...] = ()
    runs_today: int = 0
    retry: Retry | None = None
    last_start: datetime | None = None
    last_end: datetime | None = None
    last_exit: int | None = None
    last_result: str | None = None
    #: pid of the latest run (a scheduler restarted mid-run adopts it by pid if it still runs)
    pid: int | None = None

    def for_day(self, day: date) -> JobRecord:
        # Only forward: a clock put back to an earlier day must not wipe the later day's done
        # slots, or that day's runs (entries included) would happen twice when the clock returns.
        if self.day is not None and day <= self.day:
            return self
        return replace(self, day=day, done_slots=(), runs_today=0, retry=None)

    # --- JSON --------------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        retry = None
        if self.retry is not None:
            retry = {
                "reason": self.retry.reason,
                "slots": list(self.retry.slots),
                "not_before": _iso(self.retry.not_before),
                "session_mtime": self.retry.session_mtime,
            }
        return {
            "day": self.day.isoformat() if self.day else None,
            "done_slots": list(self.done_slots),
            "runs_today": self.runs_today,
            "retry": retry,
            "last_start": _iso(self.last_start),
            "last_end": _iso(self.last_end),
            "last_exit": self.last_exit,
            "last_result": self.last_result,
            "pid": self.pid,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> JobRecord:
        """Raises (KeyError, TypeError, ValueError) on a malformed record."""
        raw_retry = data.get("retry")
        retry = None
        if raw_retry is not None:
            retry = Retry(
                reason=str(raw_retry["reason"]),
                slots=tuple(str(s) for s in raw_retry.get("slots") or ()),
                not_before=_dt(raw_retry.get("not_before")),
                session_mtime=(None if raw_retry.get("session_mtime") is None
                               else float(raw_retry["session_mtime"])),
            )
        day = data.get("day")
        last_exit = data.get("last_exit")
        return cls(
            day=date.fromisoformat(day) if day else None,
            done_slots=tuple(str(s) for s in data.get("done_slots") or ()),
            runs_today=int(data.get("runs_today") or 0),
            retry=retry,
            last_start=_dt(data.get("last_start")),
            last_end=_dt(data.get("last_end")),
            last_exit=None if last_exit is None else int(last_exit),
            last_result=data.get("last_result"),
            pid=None if data.get("pid") is None else int(data["pid"]),
        )


@dataclass(frozen=True)
class Running:
    pid: int
    since: datetime
    slots: tuple[str, ...] = ()
    #: started by an earlier scheduler (or by hand) and found holding the job lock
    adopted: bool = False


@dataclass(frozen=True)
class Start:
    job: str
    slots: tuple[str, ...]
    reason: str


@dataclass(frozen=True)
class Skip:
    job: str
    slots: tuple[str, ...]
    reason: str


@dataclass(frozen=True)
class Decision:
    start: tuple[Start, ...] = ()
    stop: tuple[str, ...] = ()
    skip: tuple[Skip, ...] = ()
    next_wakeup: datetime | None = None
    #: "trading day", "weekend", "NSE holiday" or "calendar does not cover <day>"
    day_kind: str = "trading day"
    waiting: tuple[str, ...] = field(default=())  # jobs waiting for a new login


def day_kind(calendar: NseCalendar, day: date) -> str:
    if not calendar.covers(day):
        return f"calendar does not cover {day}"
    if calendar.is_trading_day(day):
        return "trading day"
    return "weekend" if day.weekday() >= 5 else "NSE holiday"


def slot_times(day: date, schedule: tuple[time, ...]) -> list[tuple[str, datetime]]:
    return [(t.strftime("%H:%M"), datetime.combine(day, t, IST)) for t in schedule]


def _retry_ready(retry: Retry, now: datetime, session_mtime: float | None, paper: bool) -> bool:
    if retry.reason == "token":
        if session_mtime is not None and session_mtime != retry.session_mtime:
            return True
        return paper and retry.not_before is not None and now >= retry.not_before
    return retry.not_before is None or now >= retry.not_before


def _clock_went_back(rec: JobRecord, now: datetime) -> bool:
    """Does this day's record tell of a run that started or ended after ``now``?"""
    return any(t is not None and t > now for t in (rec.last_start, rec.last_end))


# C901 on purpose: a table: one branch per row of the scheduler's restart table (run now, catch up,
# skip as missed, wait, already ran), read top to bottom like the docs.
def decide(calendar: NseCalendar, plan: Plan, now: datetime, records: Mapping[str, JobRecord],  # noqa: C901
           running: Mapping[str, Running], session_mtime: float | None = None) -> Decision:
    now = now.astimezone(IST)
    day = now.date()
    midnight = datetime.combine(day + timedelta(days=1), time(0, 0), IST)
    wakeups: list[datetime] = [midnight]
    kind = day_kind(calendar, day)
    trading = kind == "trading day"
    opening, closing = calendar.session_bounds(day) if trading else (None, None)
    in_session = trading and opening is not None and closing is not None and opening <= now < closing
    starts: list[Start] = []
    stops: list[str] = []
    skips: list[Skip] = []
    waiting: list[str] = []

    for job, schedule in plan.schedules.items():
        rec = records.get(job, JobRecord()).for_day(day)
        if job in running:
            run = running[job]
            if schedule == SESSION and not in_session and now >= run.since:
                stops.append(job)
            elif schedule == SESSION and closing is not None and now < closing:
                wakeups.append(closing)
            # now < run.since: the clock went back; the run goes on and the next look decides again
            continue
        if not trading or schedule is None:
            continue
        if rec.day is not None and rec.day > day:
            continue  # the clock was put back to an earlier day: that day is over for this job
        assert opening is not None and closing is not None
        if rec.retry is not None and rec.retry.reason == "token":
            waiting.append(job)

        if schedule == SESSION:
            went_back = _clock_went_back(rec, now)
            if SESSION not in rec.done_slots or (went_back and rec.retry is None):
                if in_session:
                    late = now >= opening + ON_TIME_GRACE
                    reason = ("the clock went back: session open" if SESSION in rec.done_slots
                              else "catch-up: session open" if late else "session open")
                    starts.append(Start(job, (SESSION,), reason))
                elif now >= closing:
                    if SESSION not in rec.done_slots:
                        skips.append(Skip(job, (SESSION,), "missed: the session is over"))
                else:
                    wakeups.append(opening)
                continue
            if rec.retry is not None:
                if now >= closing:
                    skips.append(Skip(job, (), f"retry ({rec.retry.reason}) given up: the session is over"))
                elif not in_session:
                    wakeups.append(opening)  # before the open (the clock went back): wait for it
                elif ((went_back and rec.retry.reason != "token")  # its back-off was set in our future
                      or _retry_ready(rec.retry, now, session_mtime, plan.paper)):
                    starts.append(Start(job, rec.retry.slots, f"retry after {rec.retry.reason} failure"))
                elif rec.retry.not_before is not None:
                    wakeups.append(rec.retry.not_before)
            continue

        assert isinstance(schedule, tuple)
        times = slot_times(day, schedule)
        due = [(k, at) for k, at in times if at <= now and k not in rec.done_slots]
        wakeups.extend(at for _, at in times if at > now)
        cutoff = datetime.combine(day, plan.entry_cutoff, IST)
        if due:
            latest = max(at for _, at in due)
            on_time = now < latest + ON_TIME_GRACE
            keys = tuple(k for k, _ in due)
            if job in ENTRY_JOBS and not on_time and now >= cutoff:
                skips.append(Skip(job, keys, f"missed: past the entry cut-off {plan.entry_cutoff:%H:%M}"))
            else:
                starts.append(Start(job, keys, "on time" if on_time else "catch-up: missed " + ",".join(keys)))
            continue
        if rec.retry is not None:
            if job in ENTRY_JOBS and now >= cutoff:
                skips.append(Skip(job, (), f"retry ({rec.retry.reason}) given up: past the entry cut-off "
                                           f"{plan.entry_cutoff:%H:%M}"))
            elif _retry_ready(rec.retry, now, session_mtime, plan.paper):
                starts.append(Start(job, rec.retry.slots, f"retry after {rec.retry.reason} failure"))
            elif rec.retry.not_before is not None:
                wakeups.append(rec.retry.not_before)

    future = [w for w in wakeups if w > now]
    return Decision(tuple(starts), tuple(stops), tuple(skips), min(future), kind, tuple(waiting))


# --- record transitions (pure) -----------------------------------------------------------------
def record_start(rec: JobRecord, start: Start, now: datetime, *, adopted: bool = False) -> JobRecord:
    """Consume the slots *before* the process starts: a scheduler that dies right after never
    starts them again ("never twice")."""
    rec = rec.for_day(now.astimezone(IST).date())
    done = tuple(dict.fromkeys((*rec.done_slots, *start.slots)))
    result = f"running (adopted pid; {start.reason})" if adopted else f"running ({start.reason})"
    return replace(rec, done_slots=done, runs_today=rec.runs_today + 1, retry=None,
                   last_start=now, last_end=None, last_exit=None, last_result=result)


def record_skip(rec: JobRecord, skip: Skip, now: datetime) -> JobRecord:
    rec = rec.for_day(now.astimezone(IST).date())
    done = tuple(dict.fromkeys((*rec.done_slots, *skip.slots)))
    return replace(rec, done_slots=done, retry=None, last_result=f"skipped: {skip.reason}")


def record_lost(rec: JobRecord, job: str, plan: Plan, now: datetime) -> JobRecord:
    """A run this record shows as started today ended while no scheduler watched it (the scheduler
    died; its job ended or died too). Its exit code is unknown. The session job, which protects
    open positions, is run again while the session is open; any other job is done for its slots."""
    rec = rec.for_day(now.astimezone(IST).date())
    retry = None
    if plan.schedules.get(job) == SESSION and rec.runs_today < MAX_RUNS_PER_DAY:
        retry = Retry("crashed", rec.done_slots)
    return replace(rec, retry=retry, last_end=now, last_exit=None,
                   last_result="ended while no scheduler watched it (exit code unknown)")


def describe_exit(code: int | None) -> str:
    if code is None:
        return "ended (adopted; exit code unknown)"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    try:
        return f"exit {code} ({ExitCode(code).name.lower()})"
    except ValueError:
        return f"exit {code}"


def record_exit(rec: JobRecord, job: str, plan: Plan, run: Running, code: int | None, now: datetime, *,
                session_mtime: float | None = None, stopped: bool = False, interrupted: bool = False) -> JobRecord:
    """The job's process ended with ``code`` (None: an adopted process, code unknown; negative: a
    signal). ``stopped``: the scheduler stopped it (at the close); ``interrupted``: the scheduler
    stopped it because the scheduler itself was stopping (the next one runs it again, entries aside)."""
    rec = rec.for_day(now.astimezone(IST).date())
    result = describe_exit(code)
    retry: Retry | None = None
    if interrupted:
        result = f"interrupted: the scheduler stopped ({result})"
        if job not in ENTRY_JOBS:  # entries are never re-sent after a partial run
            retry = Retry("interrupted", run.slots)
    elif stopped:
        result = f"stopped by the scheduler ({result})"
    elif code == ExitCode.TOKEN:
        result = "waiting for login (token expired or invalid)"
        retry = Retry("token", run.slots, now + TOKEN_BACKOFF_PAPER, session_mtime)
    elif rec.runs_today < MAX_RUNS_PER_DAY:
        crashed = code is not None and (code == ExitCode.JOB_FAILED or code < 0)
        if code == ExitCode.BROKER_TEMPORARY:
            retry = Retry("temporary", run.slots, now + RETRY_BACKOFF * max(1, rec.runs_today))
        elif crashed and plan.schedules.get(job) == SESSION:
            # the watchdog protects open positions for the whole session: a crash is retried
            retry = Retry("crashed", run.slots, now + RETRY_BACKOFF * max(1, rec.runs_today))
    if retry is not None and retry.reason != "token":
        result += f"; retry at {retry.not_before:%H:%M}" if retry.not_before else "; retry"
    return replace(rec, retry=retry, last_end=now, last_exit=code, last_result=result)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _dt(value: object) -> datetime | None:
    if value is None:
        return None
    parsed = datetime.fromisoformat(str(value))
    if parsed.tzinfo is None:
        raise ValueError(f"naive date-time {value!r}")
    return parsed.astimezone(IST)
