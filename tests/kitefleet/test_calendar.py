"""kitefleet/calendar.py: the last completed hour before, in and after the session."""

from __future__ import annotations

from datetime import date, datetime

import pytest

from kitefleet.calendar import NseCalendar, last_completed_hour
from kitefleet.clock import IST

DAY = date(2026, 3, 4)
PREV_DAY = date(2026, 3, 2)  # 2026-03-03 is a holiday (Holi)


def at(hhmm: str, day: date = DAY) -> datetime:
    return datetime.combine(day, datetime.strptime(hhmm, "%H:%M:%S" if hhmm.count(":") == 2 else "%H:%M").time(),
                            IST)


# --- pure helpers ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def calendar() -> NseCalendar:
    days = (date(2026, 2, 27), PREV_DAY, DAY, date(2026, 3, 5))
    return NseCalendar(days)


@pytest.mark.parametrize("now", ["09:00", "09:15", "10:14:59"])
def test_last_completed_hour_before_the_first_one_ends(calendar: NseCalendar, now: str) -> None:
    # the previous session's last candle (15:15, ending at its 15:30 close), across the holiday
    assert last_completed_hour(calendar, at(now)) == at("15:15", PREV_DAY)


@pytest.mark.parametrize(("now", "expected"), [
    ("10:15", "09:15"), ("11:14:59", "09:15"), ("11:15", "10:15"), ("15:14:59", "13:15"),
    ("15:15", "14:15"), ("15:29:59", "14:15"), ("15:30", "15:15"), ("18:00", "15:15"),
])
def test_last_completed_hour_in_and_after_the_session(calendar: NseCalendar, now: str, expected: str) -> None:
    assert last_completed_hour(calendar, at(now)) == at(expected)
