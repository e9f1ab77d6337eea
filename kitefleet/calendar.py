"""The NSE trading calendar.

Trading days and session times come from pandas_market_calendars' XNSE calendar (holidays are
maintained upstream). Lean processes (the per-user scheduler) must not import that library, so
it is exported once to ``data/shared/nse_calendar.json`` and read from there:

    {"source": "pandas_market_calendars XNSE <version>", "generated_at": ISO,
     "first": "YYYY-MM-DD", "last": "YYYY-MM-DD", "holidays_known_through": "YYYY-MM-DD",
     "open": "09:15", "close": "15:30",
     "trading_days": ["YYYY-MM-DD", ...],
     "special_sessions": {"YYYY-MM-DD": ["HH:MM", "HH:MM"]}}

Written atomically by whoever finds it missing or too short (the orchestrator, a job, the paper
broker); read by everyone.
"""

from __future__ import annotations

import bisect
import json
import os
import tempfile
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path

from kitefleet.clock import IST
from kitefleet.errors import ConfigError

SESSION_OPEN = time(9, 15)
SESSION_CLOSE = time(15, 30)
#: How far back the export reaches (the paper broker serves ~2,000 calendar days of history).
HISTORY_DAYS = 2200


@dataclass(frozen=True)
class NseCalendar:
    trading_days: tuple[date, ...]
    special_sessions: dict[date, tuple[time, time]] = field(default_factory=dict)
    holidays_known_through: date | None = None

    # --- queries ---------------------------------------------------------------------------
    @property
    def first(self) -> date:
        return self.trading_days[0]

    @property
    def last(self) -> date:
        return self.trading_days[-1]

    def covers(self, day: date) -> bool:
        return self.first <= day <= self.last

    def _check(self, day: date) -> None:
        if not self.covers(day):
            raise ConfigError(
                f"NSE calendar covers {self.first}..{self.last}, not {day}; "
                "delete data/shared/nse_calendar.json to re-export it"
            )

    def is_trading_day(self, day: date) -> bool:
        self._check(day)
        i = bisect.bisect_left(self.trading_days, day)
        return i < len(self.trading_days) and self.trading_days[i] == day

    def session_bounds(self, day: date) -> tuple[datetime, datetime]:
        """Open and close of the normal market on ``day`` (aware, IST). ``day`` must trade."""
        opening, closing = self.special_sessions.get(day, (SESSION_OPEN, SESSION_CLOSE))
        return datetime.combine(day, opening, IST), datetime.combine(day, closing, IST)

    def previous_trading_day(self, day: date) -> date:
        """The last trading day strictly before ``day``."""
        self._check(day)
        i = bisect.bisect_left(self.trading_days, day)
        if i == 0:
            raise ConfigError(f"NSE calendar has no trading day before {day}")
        return self.trading_days[i - 1]

    def next_trading_day(self, day: date) -> date:
        """The first trading day strictly after ``day``."""
        self._check(day)
        i = bisect.bisect_right(self.trading_days, day)
        if i >= len(self.trading_days):
            raise ConfigError(f"NSE calendar has no trading day after {day}")
        return self.trading_days[i]

    def trading_days_between(self, start: date, end: date) -> list[date]:
        """Trading days in [start, end]."""
        lo = bisect.bisect_left(self.trading_days, start)
        hi = bisect.bisect_right(self.trading_days, end)
        return list(self.trading_days[lo:hi])

    def last_completed_session(self, now: datetime) -> date:
        """The latest trading day whose session has closed at ``now``."""
        day = now.astimezone(IST).date()
        if self.covers(day) and self.is_trading_day(day) and now >= self.session_bounds(day)[1]:
            return day
        return self.previous_trading_day(day if self.covers(day) else self.last + timedelta(days=1))

    def session_open_at(self, now: datetime) -> bool:
        day = now.astimezone(IST).date()
        if not self.is_trading_day(day):
            return False
        opening, closing = self.session_bounds(day)
        return opening <= now < closing

    # --- (de)serialisation -----------------------------------------------------------------
    def to_json(self, source: str) -> dict[str, object]:
        return {
            "source": source,
            "first": self.first.isoformat(),
            "last": self.last.isoformat(),
            "holidays_known_through": (
                self.holidays_known_through.isoformat() if self.holidays_known_through else None
            ),
            "open": SESSION_OPEN.strftime("%H:%M"),
            "close": SESSION_CLOSE.strftime("%H:%M"),
            "trading_days": [d.isoformat() for d in self.trading_days],
            "special_sessions": {
                d.isoformat(): [o.strftime("%H:%M"), c.strftime("%H:%M")]
                for d, (o, c) in sorted(self.special_sessions.items())
            },
        }

    @classmethod
    def from_json(cls, data: dict[str, object], where: str = "calendar") -> NseCalendar:
        try:
            days = tuple(date.fromisoformat(d) for d in data["trading_days"])  # type: ignore[attr-defined]
            special = {
                date.fromisoformat(k): (time.fromisoformat(v[0]), time.fromisoformat(v[1]))
                for k, v in dict(data.get("special_sessions") or {}).items()  # type: ignore[call-overload]
            }
            known = data.get("holidays_known_through")
            known_d = date.fromisoformat(known) if isinstance(known, str) else None
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"{where}: not a valid NSE calendar export ({exc}); delete it to re-export") from None
        if not days or list(days) != sorted(days):
            raise ConfigError(f"{where}: trading_days empty or unsorted; delete it to re-export")
        return cls(days, special, known_d)


def build_from_library(start: date, end: date) -> tuple[NseCalendar, str]:
    """Build the calendar from pandas_market_calendars (heavy import; not for lean processes)."""
    import pandas_market_calendars as mcal

    cal = mcal.get_calendar("XNSE")
    schedule = cal.schedule(start_date=start.isoformat(), end_date=end.isoformat())
    days: list[date] = []
    special: dict[date, tuple[time, time]] = {}
    for idx, row in schedule.iterrows():
        day = idx.date()
        o = row["market_open"].tz_convert(IST).time()
        c = row["market_close"].tz_convert(IST).time()
        if o >= time(12, 0):
            continue  # Muhurat (evening, symbolic) sessions: no swing entries, stops or scans
        days.append(day)
        if (o, c) != (SESSION_OPEN, SESSION_CLOSE):
            special[day] = (o, c)
    holidays = [str(h)[:10] for h in cal.holidays().holidays if h is not None]
    known = date.fromisoformat(max(holidays)) if holidays else None
    version = getattr(mcal, "__version__", "?")
    return NseCalendar(tuple(days), special, known), f"pandas_market_calendars XNSE {version}"


def export_calendar(path: Path, around: date) -> NseCalendar:
    """Export the calendar covering ``around`` - HISTORY_DAYS .. the end of next year."""
    start = around - timedelta(days=HISTORY_DAYS)
    end = date(around.year + 1, 12, 31)
    calendar, source = build_from_library(start, end)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".nse_calendar.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(calendar.to_json(source), fh, separators=(",", ":"))
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return calendar


def read_calendar(path: Path) -> NseCalendar:
    """Read the exported calendar (lean: json only)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: NSE calendar not exported yet; run any job or 'orchestrator.py doctor'") from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: unreadable NSE calendar ({exc}); delete it to re-export") from None
    return NseCalendar.from_json(data, where=str(path))


def load_calendar(path: Path, around: date) -> NseCalendar:
    """Read the export, re-exporting (heavy) when it is missing or does not cover ``around``."""
    try:
        calendar = read_calendar(path)
        if calendar.covers(around - timedelta(days=HISTORY_DAYS - 30)) and calendar.covers(
            around + timedelta(days=14)
        ):
            return calendar
    except ConfigError:
        pass  # missing or corrupt: the export holds no user data, so it is simply rebuilt
    return export_calendar(path, around)


# --- hourly candles (Kite's 60minute interval) ---------------------------------------------------
HOUR = timedelta(hours=1)


def hourly_starts(calendar: NseCalendar, day: date) -> list[datetime]:
    """Kite's 60minute candle starts of a session: open, open + 1 h, ... before the close."""
    opening, closing = calendar.session_bounds(day)
    starts, at = [], opening
    while at < closing:
        starts.append(at)
        at += HOUR
    return starts


def last_completed_hour(calendar: NseCalendar, now: datetime) -> datetime:
    """Start of the newest hourly candle complete at ``now`` (each ends an hour after its start,
    the last at the close); before today's first one completes, the previous session's last."""
    day = now.astimezone(IST).date()
    if calendar.is_trading_day(day):
        closing = calendar.session_bounds(day)[1]
        done = [s for s in hourly_starts(calendar, day) if min(s + HOUR, closing) <= now]
        if done:
            return done[-1]
    return hourly_starts(calendar, calendar.previous_trading_day(day))[-1]
