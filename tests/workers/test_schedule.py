"""The scheduler's decisions (workers.schedule) driven through whole days without sleeping.

A small driver plays the daemon's part on plain data: it applies each Decision with the record
transitions, "runs" jobs for a scripted duration and exit code, and jumps the clock straight to
the next wake-up or job end.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta

from kitefleet.calendar import NseCalendar
from kitefleet.clock import IST
from workers.schedule import (
    MAX_RUNS_PER_DAY,
    SESSION,
    JobRecord,
    Plan,
    Running,
    decide,
    record_exit,
    record_lost,
    record_skip,
    record_start,
)

HOLIDAY = date(2026, 11, 24)  # an NSE holiday (Guru Nanak Jayanti), a Tuesday


def calendar() -> NseCalendar:
    days = []
    d = date(2026, 10, 1)
    while d <= date(2026, 12, 31):
        if d.weekday() < 5 and d != HOLIDAY:
            days.append(d)
        d += timedelta(days=1)
    return NseCalendar(tuple(days))


CAL = calendar()
PAPER = Plan({
    "update_cnc_stoploss": (time(9, 0), time(14, 0)),
    "hourly_candle_watchdog": SESSION,
    "place_orders_daily": (time(9, 20),),
    "pattern_daily": (time(16, 0),),
}, entry_cutoff=time(11, 0), paper=True)


def at(day: date, hhmm: str) -> datetime:
    return datetime.combine(day, time.fromisoformat(hhmm), IST)


@dataclass
class Driver:
    plan: Plan
    #: job -> (run length, exit code) for the n-th run of that job today (n from 1)
    outcome: Callable[[str, int], tuple[timedelta, int]] = lambda job, n: (timedelta(minutes=3), 0)
    records: dict[str, JobRecord] = field(default_factory=dict)
    running: dict[str, Running] = field(default_factory=dict)
    ends: dict[str, tuple[datetime, int]] = field(default_factory=dict)
    events: list[tuple[str, str, str]] = field(default_factory=list)
    session_mtime: float | None = None
    pid: int = 100

    def step(self, now: datetime) -> datetime:
        for job, (end, code) in list(self.ends.items()):
            if end <= now:
                run = self.running.pop(job)
                del self.ends[job]
                self.records[job] = record_exit(self.records.get(job, JobRecord()), job, self.plan, run, code, end,
                                                session_mtime=self.session_mtime)
                self.events.append((end.strftime("%a %H:%M"), job, f"exit {code}"))
        d = decide(CAL, self.plan, now, self.records, self.running, self.session_mtime)
        for skip in d.skip:
            self.records[skip.job] = record_skip(self.records.get(skip.job, JobRecord()), skip, now)
            self.events.append((now.strftime("%a %H:%M"), skip.job, "skip"))
        for job in d.stop:
            run = self.running.pop(job)
            self.ends.pop(job, None)
            self.records[job] = record_exit(self.records.get(job, JobRecord()), job, self.plan, run, 0, now,
                                            stopped=True)
            self.events.append((now.strftime("%a %H:%M"), job, "stopped"))
        for start in d.start:
            rec = record_start(self.records.get(start.job, JobRecord()), start, now)
            self.records[start.job] = rec
            self.pid += 1
            self.running[start.job] = Running(self.pid, now, start.slots)
            length, code = self.outcome(start.job, rec.runs_today)
            if length is not None:
                self.ends[start.job] = (now + length, code)
            self.events.append((now.strftime("%a %H:%M"), start.job, "start " + ",".join(start.slots)))
        assert d.next_wakeup is not None and d.next_wakeup > now
        return d.next_wakeup

    def run(self, start: datetime, end: datetime) -> list[tuple[str, str, str]]:
        now = start
        while now < end:
            wake = self.step(now)
            now = min([wake, end, *(e for e, _ in self.ends.values())])
        return self.events


def watchdog_runs_all_session(job: str, n: int) -> tuple[timedelta, int]:
    if job == "hourly_candle_watchdog":
        return timedelta(days=1), 0  # runs until the scheduler stops it
    return timedelta(minutes=3), 0


def starts(events: list[tuple[str, str, str]], job: str) -> list[str]:
    return [when for when, j, what in events if j == job and what.startswith("start")]


def test_a_whole_trading_day_runs_each_job_at_its_time() -> None:
    day = date(2026, 11, 25)
    events = Driver(PAPER, watchdog_runs_all_session).run(at(day, "06:00"), at(day, "23:59"))
    assert starts(events, "update_cnc_stoploss") == ["Wed 09:00", "Wed 14:00"]
    assert starts(events, "hourly_candle_watchdog") == ["Wed 09:15"]
    assert ("Wed 15:30", "hourly_candle_watchdog", "stopped") in events
    assert starts(events, "place_orders_daily") == ["Wed 09:20"]
    assert starts(events, "pattern_daily") == ["Wed 16:00"]
    assert not [e for e in events if e[2] == "skip"]


def test_weekend_and_nse_holiday_run_nothing() -> None:
    sat = date(2026, 11, 28)
    assert Driver(PAPER, watchdog_runs_all_session).run(at(sat, "00:00"), at(sat + timedelta(days=2), "00:00")) == []
    assert Driver(PAPER, watchdog_runs_all_session).run(at(HOLIDAY, "00:00"), at(HOLIDAY, "23:59")) == []
    d = decide(CAL, PAPER, at(HOLIDAY, "10:00"), {}, {})
    assert d.day_kind == "NSE holiday" and not d.start
    assert decide(CAL, PAPER, at(sat, "10:00"), {}, {}).day_kind == "weekend"


def test_a_week_across_the_holiday_runs_every_trading_day_once() -> None:
    mon = date(2026, 11, 23)
    events = Driver(PAPER, watchdog_runs_all_session).run(at(mon, "00:00"), at(mon + timedelta(days=7), "00:00"))
    assert starts(events, "pattern_daily") == ["Mon 16:00", "Wed 16:00", "Thu 16:00", "Fri 16:00"]
    assert len(starts(events, "update_cnc_stoploss")) == 8


def test_restart_mid_day_never_runs_a_job_twice() -> None:
    day = date(2026, 11, 25)
    first = Driver(PAPER, watchdog_runs_all_session)
    first.run(at(day, "08:00"), at(day, "10:00"))
    # the scheduler dies at 10:00; its watchdog survives; records were persisted as JSON
    saved = json.loads(json.dumps({job: rec.to_json() for job, rec in first.records.items()}))
    second = Driver(PAPER, watchdog_runs_all_session)
    second.records = {job: JobRecord.from_json(raw) for job, raw in saved.items()}
    second.running = {"hourly_candle_watchdog": Running(first.running["hourly_candle_watchdog"].pid,
                                                        at(day, "12:30"), adopted=True)}
    second.ends = {"hourly_candle_watchdog": (at(day, "23:00"), 0)}
    events = second.run(at(day, "12:30"), at(day, "23:59"))
    assert starts(events, "update_cnc_stoploss") == ["Wed 14:00"]
    assert starts(events, "place_orders_daily") == []
    assert starts(events, "hourly_candle_watchdog") == []
    assert ("Wed 15:30", "hourly_candle_watchdog", "stopped") in events
    assert starts(events, "pattern_daily") == ["Wed 16:00"]


def test_restart_mid_day_restarts_a_watchdog_that_died_with_the_scheduler_but_no_other_job() -> None:
    day = date(2026, 11, 25)
    first = Driver(PAPER, watchdog_runs_all_session)
    first.run(at(day, "08:00"), at(day, "09:21"))  # the machine reboots at 09:21: every process is gone
    assert set(first.running) == {"hourly_candle_watchdog", "place_orders_daily"}
    # the new scheduler finds the runs open in the records and their locks free
    records = {job: record_lost(rec, job, PAPER, at(day, "11:00")) if job in first.running else rec
               for job, rec in first.records.items()}
    assert records["place_orders_daily"].retry is None
    second = Driver(PAPER, watchdog_runs_all_session, records=records)
    events = second.run(at(day, "11:00"), at(day, "12:00"))
    assert [(j, what) for _, j, what in events] == [("hourly_candle_watchdog", "start session")]
    assert second.records["place_orders_daily"].runs_today == 1
    # a watchdog that ended by itself (exit 0) stays ended
    ended = record_exit(second.records["hourly_candle_watchdog"], "hourly_candle_watchdog", PAPER,
                        second.running["hourly_candle_watchdog"], 0, at(day, "12:00"))
    assert decide(CAL, PAPER, at(day, "12:05"), {**second.records, "hourly_candle_watchdog": ended}, {}).start == ()


def test_downtime_until_after_the_cutoff_catches_up_what_still_makes_sense() -> None:
    day = date(2026, 11, 25)
    events = Driver(PAPER, watchdog_runs_all_session).run(at(day, "12:30"), at(day, "23:59"))
    assert starts(events, "update_cnc_stoploss") == ["Wed 12:30", "Wed 14:00"]  # 09:00 caught up once
    assert starts(events, "hourly_candle_watchdog") == ["Wed 12:30"]
    assert starts(events, "place_orders_daily") == []
    assert ("Wed 12:30", "place_orders_daily", "skip") in events
    assert starts(events, "pattern_daily") == ["Wed 16:00"]


def test_downtime_before_the_cutoff_still_places_entries() -> None:
    day = date(2026, 11, 25)
    events = Driver(PAPER, watchdog_runs_all_session).run(at(day, "10:30"), at(day, "12:00"))
    assert starts(events, "place_orders_daily") == ["Wed 10:30"]


def test_started_after_the_close_runs_the_stoploss_once_and_the_scanner() -> None:
    day = date(2026, 11, 25)
    d = Driver(PAPER, watchdog_runs_all_session)
    events = d.run(at(day, "17:00"), at(day, "23:59"))
    assert next(e for e in events if e[1] == "update_cnc_stoploss") == ("Wed 17:00", "update_cnc_stoploss",
                                                                         "start 09:00,14:00")
    assert len(starts(events, "update_cnc_stoploss")) == 1
    assert starts(events, "pattern_daily") == ["Wed 17:00"]
    assert ("Wed 17:00", "hourly_candle_watchdog", "skip") in events
    assert d.records["hourly_candle_watchdog"].last_result == "skipped: missed: the session is over"


def test_live_defaults_leave_entries_off() -> None:
    live = Plan({**PAPER.schedules, "place_orders_daily": None}, paper=False)
    day = date(2026, 11, 25)
    events = Driver(live, watchdog_runs_all_session).run(at(day, "06:00"), at(day, "23:59"))
    assert starts(events, "place_orders_daily") == []


def test_token_failure_waits_for_a_new_login_in_live_mode() -> None:
    live = Plan({"update_cnc_stoploss": (time(9, 0),)}, paper=False)
    day = date(2026, 11, 25)
    codes = iter([5, 0])
    d = Driver(live, lambda job, n: (timedelta(minutes=1), next(codes)), session_mtime=1000.0)
    d.run(at(day, "08:00"), at(day, "11:00"))
    assert d.records["update_cnc_stoploss"].last_result.startswith("waiting for login")
    assert decide(CAL, live, at(day, "11:00"), d.records, {}, 1000.0).waiting == ("update_cnc_stoploss",)
    d.session_mtime = 2000.0  # someone logged in
    events = d.run(at(day, "11:00"), at(day, "12:00"))
    assert starts(events, "update_cnc_stoploss") == ["Wed 09:00", "Wed 11:00"]
    assert d.records["update_cnc_stoploss"].last_exit == 0


def test_token_failure_in_paper_mode_retries_after_a_back_off() -> None:
    plan = Plan({"update_cnc_stoploss": (time(9, 0),)}, paper=True)
    day = date(2026, 11, 25)
    codes = iter([5, 0])
    d = Driver(plan, lambda job, n: (timedelta(minutes=1), next(codes)))
    events = d.run(at(day, "08:00"), at(day, "10:00"))
    assert starts(events, "update_cnc_stoploss") == ["Wed 09:00", "Wed 09:06"]


def test_temporary_failures_retry_with_back_off_up_to_a_limit() -> None:
    plan = Plan({"pattern_daily": (time(16, 0),)})
    day = date(2026, 11, 25)
    d = Driver(plan, lambda job, n: (timedelta(minutes=1), 7))
    events = d.run(at(day, "15:00"), at(day, "23:59"))
    assert len(starts(events, "pattern_daily")) == MAX_RUNS_PER_DAY
    assert d.records["pattern_daily"].retry is None


def test_a_failed_fixed_time_job_is_not_rerun_but_a_crashed_watchdog_is() -> None:
    day = date(2026, 11, 25)
    plan = Plan({"pattern_daily": (time(16, 0),), "hourly_candle_watchdog": SESSION})

    def outcome(job: str, n: int) -> tuple[timedelta, int]:
        return (timedelta(minutes=1), 1) if job == "pattern_daily" or n == 1 else (timedelta(days=1), 0)

    events = Driver(plan, outcome).run(at(day, "09:00"), at(day, "23:59"))
    assert starts(events, "pattern_daily") == ["Wed 16:00"]
    assert starts(events, "hourly_candle_watchdog") == ["Wed 09:15", "Wed 09:18"]


def test_an_entry_retry_is_given_up_after_the_cutoff() -> None:
    plan = Plan({"place_orders_daily": (time(9, 20),)}, paper=False)
    day = date(2026, 11, 25)
    d = Driver(plan, lambda job, n: (timedelta(minutes=1), 5), session_mtime=1.0)
    d.run(at(day, "09:00"), at(day, "10:59"))
    d.session_mtime = 2.0  # the login comes too late for entries
    events = d.run(at(day, "11:05"), at(day, "12:00"))
    assert starts(events, "place_orders_daily") == ["Wed 09:20"]
    assert d.records["place_orders_daily"].last_result.startswith("skipped: retry (token) given up")


def test_a_new_day_resets_the_day_but_keeps_the_last_result() -> None:
    day = date(2026, 11, 25)
    d = Driver(PAPER, watchdog_runs_all_session)
    d.run(at(day, "08:00"), at(day + timedelta(days=1), "09:10"))
    rec = d.records["pattern_daily"]
    assert rec.last_exit == 0 and rec.for_day(day + timedelta(days=1)).done_slots == ()
    assert starts(d.events, "update_cnc_stoploss")[-1] == "Thu 09:00"


def test_records_round_trip_through_json() -> None:
    day = date(2026, 11, 25)
    d = Driver(Plan({"update_cnc_stoploss": (time(9, 0),)}, paper=False),
               lambda job, n: (timedelta(minutes=1), 5), session_mtime=3.5)
    d.run(at(day, "08:00"), at(day, "10:00"))
    rec = d.records["update_cnc_stoploss"]
    assert rec.retry is not None
    assert JobRecord.from_json(json.loads(json.dumps(rec.to_json()))) == rec


def test_a_job_interrupted_by_the_schedulers_own_stop_runs_again_but_entries_do_not() -> None:
    day = date(2026, 11, 25)
    d = Driver(PAPER, watchdog_runs_all_session)
    d.run(at(day, "08:00"), at(day, "09:21"))
    for job, run in list(d.running.items()):  # supervisorctl stop at 09:21
        d.records[job] = record_exit(d.records[job], job, PAPER, run, -15, at(day, "09:21"), interrupted=True)
    assert d.records["place_orders_daily"].retry is None
    decision = decide(CAL, PAPER, at(day, "09:25"), d.records, {})
    assert [s.job for s in decision.start] == ["hourly_candle_watchdog"]


# --- issue 15 item 2: a clock that goes back stops the watchdog for the day --------------------
def test_a_clock_that_goes_back_does_not_stop_the_watchdog_for_the_day() -> None:
    """09:30 -> 09:05 -> 09:15: the watchdog is never stopped ("the session is over" was wrong),
    its session slot is not closed, and it is still watching when the session is open again."""
    day = date(2026, 11, 25)
    d = Driver(PAPER, watchdog_runs_all_session)
    d.run(at(day, "08:00"), at(day, "09:30"))
    assert "hourly_candle_watchdog" in d.running
    for hhmm in ("09:30", "09:05", "09:10", "09:15", "09:16"):
        decision = decide(CAL, PAPER, at(day, hhmm), d.records, d.running)
        assert decision.stop == () and decision.skip == (), hhmm
        d.step(at(day, hhmm))
        assert "hourly_candle_watchdog" in d.running, hhmm
    assert d.records["hourly_candle_watchdog"].last_end is None
    assert not [e for e in d.events if e[1] == "hourly_candle_watchdog" and e[2] == "stopped"]
    assert starts(d.events, "place_orders_daily") == ["Wed 09:20"]  # never twice


def test_a_clock_that_goes_back_restarts_a_watchdog_that_had_ended_once_the_session_opens() -> None:
    day = date(2026, 11, 25)
    d = Driver(PAPER, watchdog_runs_all_session)
    d.run(at(day, "08:00"), at(day, "15:40"))  # the watchdog was stopped at the close
    assert "hourly_candle_watchdog" not in d.running
    before_open = decide(CAL, PAPER, at(day, "09:05"), d.records, {})
    assert before_open.start == () and before_open.skip == ()
    assert before_open.next_wakeup == at(day, "09:15")
    opened = decide(CAL, PAPER, at(day, "09:15"), d.records, {})
    assert [(s.job, s.reason) for s in opened.start] == [
        ("hourly_candle_watchdog", "the clock went back: session open")]


def test_a_clock_that_goes_back_does_not_give_up_a_crashed_watchdogs_retry() -> None:
    day = date(2026, 11, 25)
    plan = Plan({"hourly_candle_watchdog": SESSION})
    d = Driver(plan, lambda job, n: (timedelta(minutes=15), 1) if n == 1 else (timedelta(days=1), 0))
    d.run(at(day, "09:00"), at(day, "09:31"))  # crashed at 09:30, retry due 09:32
    assert d.records["hourly_candle_watchdog"].retry is not None
    back = decide(CAL, plan, at(day, "09:05"), d.records, {})
    assert back.skip == () and back.start == () and back.next_wakeup == at(day, "09:15")
    opened = decide(CAL, plan, at(day, "09:15"), d.records, {})
    assert [s.job for s in opened.start] == ["hourly_candle_watchdog"]  # not at 09:32: the back-off was in our future


def test_a_clock_put_back_to_an_earlier_day_runs_nothing_twice() -> None:
    day = date(2026, 11, 25)
    d = Driver(PAPER, watchdog_runs_all_session)
    d.run(at(day, "08:00"), at(day, "10:00"))
    monday = day - timedelta(days=2)  # the Tuesday between is a holiday
    seen = len(d.events)
    d.run(at(monday, "09:00"), at(monday, "16:30"))
    # jobs with a record of Wednesday start nothing on Monday (pattern_daily had none yet)
    assert {job for _, job, _ in d.events[seen:]} <= {"pattern_daily"}
    assert d.records["place_orders_daily"].for_day(monday).day == day
    d.run(at(day, "10:00"), at(day, "17:00"))
    assert starts(d.events, "place_orders_daily") == ["Wed 09:20"]
    assert starts(d.events, "pattern_daily")[-1] == "Wed 16:00"
