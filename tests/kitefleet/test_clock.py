"""The clock parser refuses values that parse but cannot be computed (issue 15, item 11): nan, inf,
huge speeds and out-of-range starts would make ``now()`` raise in every process reading the clock."""

from __future__ import annotations

import os
import time
from datetime import datetime
from pathlib import Path

import pytest

from kitefleet.clock import IST, MAX_SPEED, FileClock, clock_from_value, parse_spec
from kitefleet.errors import ConfigError

START = "2026-11-25T09:15:00+05:30"


@pytest.mark.parametrize("value", [
    f"{START},anchor=nan",
    f"{START},anchor=inf",
    f"{START},anchor=-inf",
    f"{START},anchor=1e300",
    f"{START},speed=inf",
    f"{START},speed=nan",
    f"{START},speed=1e308",
    f"{START},speed={MAX_SPEED * 10:g}",
    "0001-01-01T00:00:00+05:30",
    "0001-01-01T10:00:00",
    "9999-12-31T23:59:59+05:30",
    f"{START},speed=100000,anchor=0",  # each part in range, the sum is not: 1.7e14 simulated seconds
])
def test_uncomputable_clock_values_are_refused_when_parsing(value: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_spec(value, where="clock file /x")
    message = str(info.value)
    assert message.startswith("clock file /x: ") and "\n" not in message
    with pytest.raises(ConfigError):
        clock_from_value(value)  # the same one line at a process start (exit 4 via ConfigError)


@pytest.mark.parametrize("value", [
    f"{START},speed=60,anchor=1764041100.0",
    f"{START},speed=1e-06",
    f"{START},speed={MAX_SPEED:g}",
    "1990-01-01T09:15:00",
])
def test_ordinary_clock_values_still_parse(value: str) -> None:
    assert clock_from_value(value).now().tzinfo is not None


def test_uncomputable_clock_values_in_a_clock_file_keep_the_last_good_time(tmp_path: Path) -> None:
    path = tmp_path / "clock"
    path.write_text(f"{START},speed=1e-06,anchor={time.time():.6f}\n", encoding="utf-8")
    clock = FileClock(path)
    good = clock.now()
    assert abs((good - datetime(2026, 11, 25, 9, 15, tzinfo=IST)).total_seconds()) < 1
    for bad in ("anchor=nan", "anchor=inf", "speed=inf", "speed=1e308"):
        path.write_text(f"2026-11-26T10:00:00+05:30,{bad}\n", encoding="utf-8")
        stamp = time.time_ns() + 10**9  # a new mtime, so the file is read again
        os.utime(path, ns=(stamp, stamp))
        assert abs((clock.now() - good).total_seconds()) < 1, bad
        assert clock.speed == pytest.approx(1e-6)
        assert "2026-11-25T09:15" in clock.describe()
    path.write_text("0001-01-01T00:00:00+05:30\n", encoding="utf-8")
    assert abs((clock.now() - good).total_seconds()) < 1
