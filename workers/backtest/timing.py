"""When the jobs run in a replayed session (issue 21): the user's SCHEDULE_* settings, read with the
settings' own parser (kitefleet.settings.parse_schedule, as the scheduler reads them, slots laid
out by workers.schedule.slot_times), turned into the session's entry and stop-job minutes and the
watchdog's poll times every WATCHDOG_POLL_SECONDS. Pure: plain data in and out.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from kitefleet.calendar import NseCalendar
from kitefleet.settings import KEYS, parse_schedule
from workers import loss_limit
from workers.backtest.model import BacktestSpec
from workers.schedule import SESSION, Schedule, slot_times

#: the settings keys of the three intraday jobs' schedules (kitefleet.settings, workers.schedule)
ENTRY_KEY, STOP_KEY, WATCHDOG_KEY = ("SCHEDULE_PLACE_ORDERS_DAILY", "SCHEDULE_UPDATE_CNC_STOPLOSS",
                                     "SCHEDULE_HOURLY_CANDLE_WATCHDOG")


@dataclass(frozen=True)
class Plan:
    """The user's schedules and loss limit, read once from the spec's settings."""

    entries: Schedule
    stops: Schedule
    watchdog: Schedule
    poll_seconds: int
    loss_percent: float
    loss_action: str


@dataclass(frozen=True)
class SessionTimes:
    """One session's job times, in minutes from the open (0 = the first minute, 09:15)."""

    opening: datetime
    minutes: int
    entries: tuple[int, ...]
    stops: tuple[int, ...]
    #: completed minutes c -> the polls that see minute c-1's close: (seconds from the open, time)
    polls: dict[int, list[tuple[int, datetime]]]
    watched: bool  # the watchdog runs this session


def _schedule(spec: BacktestSpec, key: str) -> Schedule:
    """A ``SCHEDULE_*`` setting as the scheduler reads it (kitefleet.settings.parse_schedule): the
    job passes its text (workers.schedule.format_schedule; ``off`` stays off); a missing value is the
    paper default (the backtest replays the paper broker's jobs)."""
    value = spec.settings.get(key)
    if value in (None, ""):
        k = KEYS[key]
        return k.mode_default["paper"] if k.mode_default else k.default  # type: ignore[return-value]
    if isinstance(value, str):
        try:
            return parse_schedule(value)
        except ValueError as exc:
            raise ValueError(f"backtest settings: {key}={value!r} {exc}: give off, session or HH:MM[,HH:MM...]"
                             ) from None
    return value


def plan_of(spec: BacktestSpec) -> Plan:
    return Plan(_schedule(spec, ENTRY_KEY), _schedule(spec, STOP_KEY), _schedule(spec, WATCHDOG_KEY),
                int(str(spec.settings.get("WATCHDOG_POLL_SECONDS") or KEYS["WATCHDOG_POLL_SECONDS"].default)),
                loss_limit.percent_of(spec.settings), loss_limit.action_of(spec.settings))


def _slot_minutes(schedule: Schedule, day: date, opening: datetime, closing: datetime) -> list[int]:
    """The minutes from the open of a job's slots that day: ``session`` and slots before the open
    run at the open, slots at or after the close not at all."""
    if schedule is None:
        return []
    times: tuple[time, ...] = (opening.time(),) if schedule == SESSION else schedule  # type: ignore[assignment]
    return sorted({max(0, int((at - opening).total_seconds()) // 60)
                   for _, at in slot_times(day, times) if at < closing})


def session_times(plan: Plan, calendar: NseCalendar, day: date) -> SessionTimes:
    opening, closing = calendar.session_bounds(day)
    length = int((closing - opening).total_seconds())
    polls: dict[int, list[tuple[int, datetime]]] = {}
    starts = _slot_minutes(plan.watchdog, day, opening, closing)
    if starts:
        # the watchdog job runs from its first slot (or the open) until the close
        for s in range(starts[0] * 60, length, max(1, plan.poll_seconds)):
            if s >= 60:
                polls.setdefault(s // 60, []).append((s, opening + timedelta(seconds=s)))
    entries = tuple(sorted({max(1, m) for m in _slot_minutes(plan.entries, day, opening, closing)}))
    return SessionTimes(opening, length // 60, entries, tuple(_slot_minutes(plan.stops, day, opening, closing)),
                        polls, bool(starts))
