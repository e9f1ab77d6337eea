"""The one clock. Trading code asks ``clock.now()`` (timezone-aware, Asia/Kolkata), never
``datetime.now()``.

``TRADER_CLOCK`` selects a simulated clock:

* ``2026-11-25T09:15:00+05:30,speed=60,anchor=1764041100.0``: the simulated start instant,
  simulated seconds per wall second (default 1) and the wall-clock Unix time at which the
  simulated clock stood at the start instant (default: the moment the value is first read; the
  launcher fills it in before starting children so that every process agrees).
* ``file:PATH``: a file holding the same text, re-read when it changes, so a test or the demo
  can jump every running process at once. A file without an anchor is anchored at the file's
  modification time, which every reader sees alike.

Unset or empty: the real clock.

A value must be computable, not just parse: the start lies in years MIN_YEAR..MAX_YEAR, ``speed``
is finite and at most MAX_SPEED, ``anchor`` is a finite Unix time from 0 to MAX_ANCHOR, and the
simulated now must be a representable date-time. Anything else (``nan``, ``inf``, ``1e308``, year
1) is refused as a ConfigError like garbage text: at start that is one line and exit 4; a running
process reading a ``file:`` clock keeps its last good time.
"""

from __future__ import annotations

import os
import threading
import time as _time
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from kitefleet.errors import ConfigError

IST = ZoneInfo("Asia/Kolkata")
ENV_VAR = "TRADER_CLOCK"
MIN_YEAR, MAX_YEAR = 1900, 2200
#: A whole trading day in well under a second of wall time; beyond this a few wall minutes leave
#: the calendar that datetime can represent.
MAX_SPEED = 100_000.0
MAX_ANCHOR = 2.0**33  # Unix seconds, past year 2200


@dataclass(frozen=True)
class ClockSpec:
    start: datetime
    speed: float = 1.0
    anchor: float | None = None

    def at(self, wall: float) -> datetime:
        anchor = wall if self.anchor is None else self.anchor
        return self.start + timedelta(seconds=(wall - anchor) * self.speed)

    def format(self) -> str:
        text = f"{self.start.isoformat()},speed={self.speed:g}"
        if self.anchor is not None:
            text += f",anchor={self.anchor:.6f}"
        return text


def parse_spec(text: str, *, where: str = ENV_VAR) -> ClockSpec:
    parts = [p.strip() for p in text.strip().split(",") if p.strip()]
    if not parts:
        raise ConfigError(f"{where}: empty clock value; expected e.g. 2026-11-25T09:15:00+05:30,speed=60")
    try:
        start = datetime.fromisoformat(parts[0])
    except ValueError:
        raise ConfigError(
            f"{where}: start {parts[0]!r} is not an ISO date-time such as 2026-11-25T09:15:00+05:30"
        ) from None
    if start.tzinfo is None:
        start = start.replace(tzinfo=IST)
    if not MIN_YEAR <= start.year <= MAX_YEAR:
        raise ConfigError(f"{where}: start {parts[0]!r} is outside the years {MIN_YEAR} to {MAX_YEAR}")
    speed, anchor = 1.0, None
    for part in parts[1:]:
        key, _, value = part.partition("=")
        try:
            if key == "speed":
                speed = float(value)
                # `not 0 < x <= MAX` also refuses nan, which compares false with everything.
                if not 0 < speed <= MAX_SPEED:
                    raise ConfigError(f"{where}: bad value for speed: {value!r}; use a number greater "
                                      f"than 0 and at most {MAX_SPEED:g}")
            elif key == "anchor":
                anchor = float(value)
                if not 0 <= anchor <= MAX_ANCHOR:
                    raise ConfigError(f"{where}: bad value for anchor: {value!r}; use a Unix time in "
                                      f"seconds from 0 to {MAX_ANCHOR:.0f}")
            else:
                raise ConfigError(f"{where}: unknown clock option {key!r}; use speed= and anchor=")
        except ValueError:
            raise ConfigError(f"{where}: bad value for {key}: {value!r}") from None
    spec = ClockSpec(start.astimezone(IST), speed, anchor)
    _check_computable(spec, where)
    return spec


def _check_computable(spec: ClockSpec, where: str) -> None:
    """Refuse a spec whose simulated now cannot be computed, now or for a year of wall time: a
    clock that raises on ``now()`` would take down every process reading it."""
    wall = _time.time()
    try:
        for moment in (wall, wall + 366 * 86400.0):
            spec.at(moment).astimezone(IST)
    except (OverflowError, ValueError):
        raise ConfigError(f"{where}: {spec.format()} gives a time that cannot be computed; check the "
                          f"start, speed= and anchor=") from None


class Clock:
    """Real time. Subclasses simulate. ``now()`` is always aware and in Asia/Kolkata."""

    simulated = False

    def now(self) -> datetime:
        return datetime.fromtimestamp(_time.time(), IST)

    @property
    def speed(self) -> float:
        return 1.0

    def wall_seconds(self, sim_seconds: float) -> float:
        return max(0.0, sim_seconds) / self.speed

    def sleep_until(self, target: datetime, *, max_wall: float | None = None,
                    stop: threading.Event | None = None) -> bool:
        """Sleep until the clock reaches ``target``. Wakes early when ``stop`` is set or after
        ``max_wall`` wall seconds. Returns True if the target was reached. Sleeps in short
        slices so that a jump of a clock file is noticed."""
        deadline = None if max_wall is None else _time.monotonic() + max_wall
        while True:
            remaining = (target - self.now()).total_seconds()
            if remaining <= 0:
                return True
            wall = min(self.wall_seconds(remaining), 0.25 if self.simulated else 1.0)
            if deadline is not None:
                left = deadline - _time.monotonic()
                if left <= 0:
                    return False
                wall = min(wall, left)
            if stop is not None:
                if stop.wait(max(wall, 0.001)):
                    return False
            else:
                _time.sleep(max(wall, 0.001))

    def sleep(self, sim_seconds: float, *, stop: threading.Event | None = None) -> bool:
        return self.sleep_until(self.now() + timedelta(seconds=sim_seconds), stop=stop)

    def describe(self) -> str:
        return "real"


class SimulatedClock(Clock):
    simulated = True

    def __init__(self, spec: ClockSpec) -> None:
        if spec.anchor is None:
            spec = replace(spec, anchor=_time.time())
        self.spec = spec

    def now(self) -> datetime:
        return self.spec.at(_time.time())

    @property
    def speed(self) -> float:
        return self.spec.speed

    def describe(self) -> str:
        return f"simulated {self.spec.format()}"


class FileClock(Clock):
    """A simulated clock read from a file; re-read whenever the file's mtime or size changes."""

    simulated = True

    def __init__(self, path: Path) -> None:
        self.path = path
        self._key: tuple[int, int] | None = None
        self._spec: ClockSpec | None = None
        self._lock = threading.Lock()
        self._current()

    def _current(self) -> ClockSpec:
        try:
            st = self.path.stat()
        except OSError as exc:
            if self._spec is not None:
                return self._spec  # a writer is mid-replace; keep the last good value
            raise ConfigError(f"{ENV_VAR}: clock file {self.path} cannot be read ({exc.strerror})") from None
        key = (st.st_mtime_ns, st.st_size)
        with self._lock:
            if key != self._key or self._spec is None:
                try:
                    text = self.path.read_text(encoding="utf-8")
                    spec = parse_spec(text, where=f"clock file {self.path}")
                except (OSError, ConfigError):
                    if self._spec is not None:
                        return self._spec
                    raise
                if spec.anchor is None:
                    spec = replace(spec, anchor=st.st_mtime_ns / 1e9)
                self._spec, self._key = spec, key
            return self._spec

    def now(self) -> datetime:
        return self._current().at(_time.time())

    @property
    def speed(self) -> float:
        return self._current().speed

    def describe(self) -> str:
        return f"file {self.path}: {self._current().format()}"


def clock_from_value(value: str | None) -> Clock:
    if not value or not value.strip():
        return Clock()
    value = value.strip()
    if value.startswith("file:"):
        return FileClock(Path(value[5:]).expanduser())
    return SimulatedClock(parse_spec(value))


def anchored(value: str | None, wall: float | None = None) -> str | None:
    """The ``TRADER_CLOCK`` value to hand to children: a spec gets its anchor filled in so that
    every child agrees on the time. ``file:`` values and the real clock pass unchanged."""
    if not value or not value.strip() or value.strip().startswith("file:"):
        return value
    spec = parse_spec(value)
    if spec.anchor is None:
        spec = replace(spec, anchor=_time.time() if wall is None else wall)
    return spec.format()


def write_clock_file(path: Path, start: datetime, speed: float = 1.0, anchor: float | None = None) -> None:
    """Atomically (re)write a clock file; every process reading it jumps at once."""
    if start.tzinfo is None:
        raise ValueError("clock start must be timezone-aware")
    spec = ClockSpec(start.astimezone(IST), speed, _time.time() if anchor is None else anchor)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(spec.format() + "\n", encoding="utf-8")
    os.replace(tmp, path)


_clock: Clock | None = None
_clock_lock = threading.Lock()


def get_clock() -> Clock:
    """The process's clock, from ``TRADER_CLOCK`` at first use."""
    global _clock
    if _clock is None:
        with _clock_lock:
            if _clock is None:
                _clock = clock_from_value(os.environ.get(ENV_VAR))
    return _clock


def set_clock(clock: Clock | None) -> None:
    """Replace the process clock (tests that drive logic in-process)."""
    global _clock
    _clock = clock


def now() -> datetime:
    return get_clock().now()


def today() -> date:
    return now().date()
