"""Scenario files pin a symbol's path so that a rule fires at a known minute."""

from __future__ import annotations

import itertools
import json
from datetime import date, datetime, time, timedelta
from pathlib import Path

import pytest

from kitefleet.calendar import NseCalendar, load_calendar
from kitefleet.clock import IST
from kitefleet.errors import ConfigError
from kitefleet.sim.market import Market
from kitefleet.sim.scenario import ScenarioError, ScenarioSet

DAY = date(2026, 11, 25)  # a Wednesday; the 24th is a holiday (Guru Nanak Jayanti)
INFY = 408065
EXAMPLE = {"paths": [{"symbol": "INFY", "date": DAY.isoformat(),
                      "waypoints": [["09:15", 1500.0], ["11:00", 1495.0], ["11:20", 1479.0], ["15:29", 1470.0]]}]}


@pytest.fixture(scope="module")
def calendar(tmp_path_factory: pytest.TempPathFactory) -> NseCalendar:
    return load_calendar(tmp_path_factory.mktemp("cal") / "cal.json", date(2026, 11, 26))


def at(day: date, hh: int, mm: int, ss: int = 0) -> datetime:
    return datetime.combine(day, time(hh, mm, ss), IST)


def write(tmp_path: Path, data: object, name: str = "scenario.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(data) if not isinstance(data, str) else data, encoding="utf-8")
    return path


def minutes(market: Market, token: int, day: date) -> list[tuple[datetime, float, float, float, float, int]]:
    return market.candles(token, "minute", at(day, 0, 0), at(day, 23, 59), at(day, 23, 59))


def scenario_market(calendar: NseCalendar, tmp_path: Path, data: object, symbols: list[str] | None = None,
                    seed: int = 1) -> Market:
    return Market(calendar, seed=seed, scenarios=ScenarioSet.load(write(tmp_path, data)),
                  symbols=symbols or ["INFY", "TCS"])


def test_infy_falls_through_1480_at_11_20(calendar: NseCalendar, tmp_path: Path) -> None:
    market = scenario_market(calendar, tmp_path, EXAMPLE)
    bars = minutes(market, INFY, DAY)
    before = [b for b in bars if b[0] < at(DAY, 11, 20)]
    crossing = next(b for b in bars if b[0] == at(DAY, 11, 20))
    assert len(before) == 125
    assert all(b[4] >= 1480 and b[3] >= 1480 for b in before)  # closes and lows: no early stop
    assert crossing[4] == 1479.0 and crossing[3] <= 1479.0 and crossing[2] >= 1480
    # the waypoint minute is the minute *starting* at 11:20; the LTP shows it from 11:21:00 on
    assert market.ltp(INFY, at(DAY, 11, 20, 59)) >= 1480
    assert market.ltp(INFY, at(DAY, 11, 21)) == 1479.0
    stops = [m for m in market.minutes_between(INFY, at(DAY, 9, 15), at(DAY, 15, 30)) if m[1] < 1480]
    assert stops[0][0] == at(DAY, 11, 20)
    # every waypoint holds, the day opens at the first and closes at the last
    closes = {b[0]: b[4] for b in bars}
    assert [closes[at(DAY, h, m)] for h, m in ((9, 15), (11, 0), (11, 20), (15, 29))] == [1500.0, 1495.0, 1479.0,
                                                                                       1470.0]
    day_candle = market.candles(INFY, "day", at(DAY, 0, 0), at(DAY, 0, 0), at(DAY, 16, 0))[0]
    assert day_candle[1] == 1500.0 and day_candle[4] == 1470.0
    assert market.ltp(INFY, at(DAY, 15, 30)) == 1470.0


def test_between_waypoints_the_path_stays_between_them(calendar: NseCalendar, tmp_path: Path) -> None:
    market = scenario_market(calendar, tmp_path, EXAMPLE)
    bars = {b[0]: b for b in minutes(market, INFY, DAY)}
    points = [(at(DAY, 9, 15), 1500.0), (at(DAY, 11, 0), 1495.0), (at(DAY, 11, 20), 1479.0),
              (at(DAY, 15, 29), 1470.0)]
    for (ta, pa), (tb, pb) in itertools.pairwise(points):
        lo, hi = min(pa, pb), max(pa, pb)
        t = ta + timedelta(minutes=1)
        while t < tb:
            _, o, h, low, c, _ = bars[t]
            assert lo <= low <= min(o, c) and max(o, c) <= h <= hi, (t, bars[t])
            t += timedelta(minutes=1)
    # a bit of life between the waypoints, not a straight ruler
    segment = [bars[at(DAY, 11, 20) + timedelta(minutes=i)][4] for i in range(1, 249)]
    assert len(set(segment)) > 10


def test_a_pinned_close_chains_into_the_next_days(calendar: NseCalendar, tmp_path: Path) -> None:
    market = scenario_market(calendar, tmp_path, EXAMPLE)
    nxt = calendar.next_trading_day(DAY)
    assert market.prev_close(INFY, nxt) == 1470.0
    lower, upper = market.circuit_limits(INFY, nxt)
    assert (lower, upper) == (1323.0, 1617.0)
    following = market.candles(INFY, "day", at(nxt, 0, 0), at(nxt + timedelta(days=10), 0, 0),
                               at(nxt + timedelta(days=10), 16, 0))
    assert lower <= following[0][1] <= upper
    previous = None
    for c in following:
        if previous is not None:
            assert market.prev_close(INFY, c[0].date()) == previous
        previous = c[4]
    # the day before meets the pinned open without a jump through the band
    prev = market.prev_close(INFY, DAY)
    assert abs(prev / 1500.0 - 1) < 0.07


def test_scenario_leaves_other_symbols_alone_and_is_deterministic(calendar: NseCalendar, tmp_path: Path) -> None:
    plain = Market(calendar, seed=1, symbols=["INFY", "TCS"])
    pinned = scenario_market(calendar, tmp_path, EXAMPLE)
    again = scenario_market(calendar, tmp_path, EXAMPLE)
    tcs = pinned.instrument("TCS")
    assert tcs is not None
    assert minutes(pinned, tcs.instrument_token, DAY) == minutes(plain, tcs.instrument_token, DAY)
    assert minutes(pinned, INFY, DAY) == minutes(again, INFY, DAY)
    now = at(DAY, 16, 0)
    assert pinned.candles(INFY, "day", now - timedelta(days=400), now, now) == again.candles(
        INFY, "day", now - timedelta(days=400), now, now)


def test_first_waypoint_after_the_open_and_last_before_the_close(calendar: NseCalendar, tmp_path: Path) -> None:
    data = {"paths": [{"symbol": "INFY", "date": DAY.isoformat(),
                       "waypoints": [["11:00", 1495.0], ["11:20", 1479.0], ["13:00", 1485.5]]}]}
    market = scenario_market(calendar, tmp_path, data)
    bars = minutes(market, INFY, DAY)
    assert bars[0][1] == 1495.0  # the day opens at the first waypoint's price
    calm = [b for b in bars if b[0] < at(DAY, 11, 0)]
    assert all(abs(b[4] / 1495.0 - 1) <= 0.0031 for b in calm)
    assert all(b[4] >= 1480 and b[3] >= 1480 for b in bars if b[0] < at(DAY, 11, 20))
    closes = {b[0]: b[4] for b in bars}
    assert (closes[at(DAY, 11, 0)], closes[at(DAY, 11, 20)], closes[at(DAY, 13, 0)]) == (1495.0, 1479.0, 1485.5)
    # after the last waypoint the day goes to its own close, and the next day chains on it
    day_close = bars[-1][4]
    assert market.prev_close(INFY, calendar.next_trading_day(DAY)) == day_close
    assert market.candles(INFY, "day", at(DAY, 0, 0), at(DAY, 0, 0), at(DAY, 16, 0))[0][4] == day_close


def test_two_pinned_days_of_one_symbol(calendar: NseCalendar, tmp_path: Path) -> None:
    later = date(2026, 12, 2)
    data = {"paths": [
        EXAMPLE["paths"][0],
        {"symbol": "NSE:INFY", "date": later.isoformat(), "waypoints": [["09:15", 1400.0], ["15:29", 1420.0]]},
    ]}
    market = scenario_market(calendar, tmp_path, data)
    assert minutes(market, INFY, DAY)[-1][4] == 1470.0
    assert minutes(market, INFY, later)[0][1] == 1400.0
    assert minutes(market, INFY, later)[-1][4] == 1420.0
    now = at(later + timedelta(days=3), 16, 0)
    days = market.candles(INFY, "day", at(DAY, 0, 0), now, now)
    for prev, cur in itertools.pairwise(days):
        assert market.prev_close(INFY, cur[0].date()) == prev[4]
        lower, upper = market.circuit_limits(INFY, cur[0].date())
        if cur[0].date() not in (DAY, later):
            assert lower <= cur[3] and cur[2] <= upper


def test_waypoints_snap_to_the_tick(calendar: NseCalendar, tmp_path: Path) -> None:
    data = {"paths": [{"symbol": "INFY", "date": DAY.isoformat(),
                       "waypoints": [["10:00", 1501.23], ["10:30", 1490.07]]}]}
    market = scenario_market(calendar, tmp_path, data)
    closes = {b[0]: b[4] for b in minutes(market, INFY, DAY)}
    assert (closes[at(DAY, 10, 0)], closes[at(DAY, 10, 30)]) == (1501.2, 1490.1)


# --- bad files -----------------------------------------------------------------------------------
@pytest.mark.parametrize(("content", "fragment"), [
    ("{not json", "not valid JSON"),
    ({"paths": {}}, '"paths"'),
    ({"paths": [{"date": "2026-11-25", "waypoints": [["09:15", 1.0]]}]}, "paths[0]: symbol"),
    ({"paths": [{"symbol": "INFY", "date": "25/11/2026", "waypoints": [["09:15", 1.0]]}]}, "INFY"),
    ({"paths": [{"symbol": "INFY", "date": "2026-11-25", "waypoints": []}]}, "non-empty"),
    ({"paths": [{"symbol": "INFY", "date": "2026-11-25", "waypoints": [["9:15", 1.0]]}]}, "'9:15'"),
    ({"paths": [{"symbol": "INFY", "date": "2026-11-25", "waypoints": [["09:15", -3]]}]}, "positive"),
    ({"paths": [{"symbol": "INFY", "date": "2026-11-25", "waypoints": [["09:15", "1500"]]}]}, "positive"),
    ({"paths": [{"symbol": "INFY", "date": "2026-11-25",
                 "waypoints": [["11:00", 1.0], ["10:00", 2.0]]}]}, "waypoints[1]"),
    ({"paths": [EXAMPLE["paths"][0], EXAMPLE["paths"][0]]}, "pinned twice"),
])
def test_bad_scenario_files_fail_with_one_clear_line(tmp_path: Path, content: object, fragment: str) -> None:
    path = write(tmp_path, content, "bad-scenario.json")
    with pytest.raises(ScenarioError) as info:
        ScenarioSet.load(path)
    message = str(info.value)
    assert "bad-scenario.json" in message and fragment in message and "\n" not in message
    assert isinstance(info.value, ConfigError)


@pytest.mark.parametrize(("path", "fragment"), [
    ({"symbol": "NOPE", "date": "2026-11-25", "waypoints": [["09:15", 1.0]]}, "'NOPE' is not in the universe"),
    ({"symbol": "INFY", "date": "2026-11-24", "waypoints": [["09:15", 1.0]]}, "not an NSE trading day"),
    ({"symbol": "INFY", "date": "2026-11-28", "waypoints": [["09:15", 1.0]]}, "not an NSE trading day"),
    ({"symbol": "INFY", "date": "2031-01-01", "waypoints": [["09:15", 1.0]]}, "outside the simulated range"),
    ({"symbol": "INFY", "date": "2026-11-25", "waypoints": [["15:30", 1.0]]}, "outside the session"),
    ({"symbol": "INFY", "date": "2026-11-25", "waypoints": [["09:14", 1.0]]}, "outside the session"),
])
def test_scenarios_are_checked_against_calendar_and_universe(calendar: NseCalendar, tmp_path: Path,
                                                             path: dict[str, object], fragment: str) -> None:
    file = write(tmp_path, {"paths": [path]}, "bad-scenario.json")
    with pytest.raises(ScenarioError) as info:
        Market(calendar, scenarios=ScenarioSet.load(file), symbols=["INFY"])
    assert "bad-scenario.json" in str(info.value) and fragment in str(info.value)


def test_missing_scenario_file(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="not found"):
        ScenarioSet.load(tmp_path / "nope.json")


# --- market pins: spread, volume, fixed band (issue 16) -------------------------------------------
def _pin(**kw: object) -> dict[str, object]:
    return {"market": [{"symbol": "INFY", "date": DAY.isoformat(), "from": "10:00", "to": "10:29", **kw}]}


@pytest.mark.parametrize(("content", "fragment"), [
    (_pin(spread_ticks=-2), "market[0] (INFY): spread_ticks -2 must be at least 1"),
    (_pin(band_percent=7), "market[0] (INFY): band_percent 7 must be one of 2, 5, 10, 20"),
    (_pin(volume=0), "volume 0"),
    (_pin(spread_ticks=1.5), "whole number"),
    (_pin(), "at least one of"),
    (_pin(to="09:59", volume=10), "before from"),
    ({"market": {}}, '"market"'),
])
def test_bad_market_pins_fail_with_one_line_and_exit_2(tmp_path: Path, content: object, fragment: str) -> None:
    path = write(tmp_path, content, "bad-scenario.json")
    with pytest.raises(ScenarioError) as info:
        ScenarioSet.load(path)
    assert "bad-scenario.json" in str(info.value) and fragment in str(info.value) and "\n" not in str(info.value)
    assert info.value.exit_code == 2


def test_a_market_pin_on_an_unknown_symbol_or_outside_the_session_is_refused(calendar: NseCalendar,
                                                                            tmp_path: Path) -> None:
    unknown = write(tmp_path, {"market": [{"symbol": "NOPE", "date": DAY.isoformat(), "from": "10:00",
                                           "to": "10:05", "volume": 5}]}, "bad-scenario.json")
    with pytest.raises(ScenarioError, match=r"bad-scenario.json: market\[0\] \(NOPE\): symbol 'NOPE' is not"):
        Market(calendar, scenarios=ScenarioSet.load(unknown), symbols=["INFY"])
    late = write(tmp_path, _pin(to="15:30", volume=5), "late.json")
    with pytest.raises(ScenarioError, match="15:30 is outside the session"):
        Market(calendar, scenarios=ScenarioSet.load(late), symbols=["INFY"])


def test_pins_set_spread_and_volume_and_a_fixed_band_holds_the_path(calendar: NseCalendar, tmp_path: Path) -> None:
    data = {**EXAMPLE, "market": [
        {"symbol": "INFY", "date": DAY.isoformat(), "from": "10:00", "to": "10:29", "spread_ticks": 6, "volume": 77},
        {"symbol": "INFY", "date": DAY.isoformat(), "from": "09:15", "to": "15:29", "band_percent": 2}]}
    market = scenario_market(calendar, tmp_path, data)
    plain = scenario_market(calendar, tmp_path, EXAMPLE)
    bars = {b.start: b for b in market.minute_bars(INFY, at(DAY, 9, 15), at(DAY, 15, 30))}
    pinned = [bars[at(DAY, 10, m)] for m in range(30)]
    assert {(b.spread, b.volume) for b in pinned} == {(6, 77)}
    assert bars[at(DAY, 10, 30)].volume != 77
    prev = market.prev_close(INFY, DAY)
    lower, upper = (b.price(x) for b in pinned[:1] for x in (b.lower, b.upper))
    assert lower == pytest.approx(prev * 0.98, abs=0.1) and upper == pytest.approx(prev * 1.02, abs=0.1)
    # the scripted fall to 1470 is held at the band; the same day without the band reaches it
    assert min(b.price(b.low) for b in bars.values()) == lower > 1470.0
    assert plain.ltp(INFY, at(DAY, 15, 30)) == 1470.0
    assert market.ltp(INFY, at(DAY, 15, 30)) == lower
    quote_band = market.book(INFY, at(DAY, 12, 0))
    assert (quote_band.price(quote_band.lower), quote_band.price(quote_band.upper)) == (lower, upper)
