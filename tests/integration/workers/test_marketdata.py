"""Shared market data: ranges on plain data, then the cache against the real paper broker."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest

from kitefleet import clock
from kitefleet.clock import clock_from_value, write_clock_file
from kitefleet.home import Home
from kitefleet.settings import load_settings
from tests.support.broker import RunningBroker, broker_factory, clock_file  # noqa: F401 (fixture)
from tests.support.jobs import MARKET_OPEN, last_json, paper_home, point_users_at, start_job
from workers.kite_client import KiteApi, build_kite
from workers.marketdata import MarketData, UnknownInstrument

D = date.fromisoformat


class CountingKite:
    """The real client, with a count of what reached it (to prove the cache answers)."""

    def __init__(self, kite: KiteApi) -> None:
        self.kite = kite
        self.historical: list[tuple[Any, ...]] = []

    def instruments(self, exchange: str | None = None) -> list[dict[str, Any]]:
        return self.kite.instruments(exchange)

    def historical_data(self, token: int, start: Any, end: Any, interval: str, continuous: bool = False,
                        oi: bool = False) -> list[dict[str, Any]]:
        self.historical.append((token, start, end, interval))
        return self.kite.historical_data(token, start, end, interval)


@pytest.fixture
def paper(tmp_path: Path, broker_factory: Callable[..., RunningBroker]  # noqa: F811
          ) -> Iterator[tuple[Home, RunningBroker, Path, KiteApi]]:
    home = paper_home(tmp_path / "home", ("Som", "Sai"))
    clock_path = tmp_path / "clock"
    value = clock_file(clock_path, MARKET_OPEN)
    broker = broker_factory(home, clock=value, symbols=["INFY", "TCS", "RELIANCE"])
    point_users_at(home, broker.url, ("Som", "Sai"))
    clock.set_clock(clock_from_value(value))
    yield home, broker, clock_path, build_kite(home, load_settings(home, "Som"))
    clock.set_clock(None)


def test_completed_sessions_are_cached_for_good_and_the_forming_one_never(paper) -> None:
    home, broker, _, kite = paper
    counting = CountingKite(kite)
    md = MarketData(home, broker.url, counting)
    today = MARKET_OPEN.date()
    first = md.daily_candles("INFY", D("2025-06-01"), today)
    assert first[-1]["date"].date() == today  # today's forming candle is served...
    assert first[0]["date"].tzinfo is not None and first[0]["date"].utcoffset() == timedelta(hours=5, minutes=30)
    assert md.api_calls["historical"] == 2  # completed range + today
    again = MarketData(home, broker.url, counting).daily_candles("INFY", D("2025-06-01"), today)
    assert [c["close"] for c in again[:-1]] == [c["close"] for c in first[:-1]]
    assert len(counting.historical) == 3  # ...but only today's candle was fetched again
    cache = json.loads((md.folder / "candles" / "day" / f"{md.token('INFY')}.json").read_text())
    assert all(not row[0].startswith(today.isoformat()) for row in cache["candles"])  # never cached
    last_completed = md.calendar.last_completed_session(MARKET_OPEN)
    assert last_completed == D("2026-03-02")  # 3 March 2026 is Holi, an NSE holiday
    assert cache["covered"] == [["2025-06-01", "2026-03-02"]]

    # A longer range fetches only what is missing.
    older = md.daily_candles("INFY", D("2025-01-01"), D("2025-12-31"))
    assert counting.historical[-1][1:3] == (D("2025-01-01"), D("2025-05-31"))
    assert older[0]["date"].date() >= D("2025-01-01") and older[-1]["date"].date() <= D("2025-12-31")

    hourly = md.hourly_candles("INFY", D("2026-03-02"), D("2026-03-03"))
    assert hourly and all(c["date"].date() in (D("2026-03-02"), D("2026-03-03")) for c in hourly)
    assert md.hourly_candles("INFY", D("2026-03-02"), D("2026-03-03")) == hourly
    assert counting.historical[-1][3] == "60minute" and len(counting.historical) == 5


def test_long_ranges_are_split_under_kites_span_limits(paper) -> None:
    home, broker, _, kite = paper
    md = MarketData(home, broker.url, kite)
    candles = md.hourly_candles("TCS", D("2024-10-01"), D("2026-03-03"))  # ~520 days > 400
    assert md.api_calls["historical"] == 2
    assert candles[0]["date"].date() < D("2025-01-01")


def test_instruments_fetched_once_per_day_and_shared(paper) -> None:
    home, broker, clock_path, kite = paper
    a = MarketData(home, broker.url, kite)
    b = MarketData(home, broker.url, kite)
    assert a.tick_size("INFY") > 0 and a.token("NSE:INFY") == b.token("INFY")
    assert (a.api_calls["instruments"], b.api_calls["instruments"]) == (1, 0)
    with pytest.raises(UnknownInstrument):
        a.token("NOSUCH")
    write_clock_file(clock_path, MARKET_OPEN + timedelta(days=1))
    c = MarketData(home, broker.url, kite)
    c.instruments()
    assert c.api_calls["instruments"] == 1
    assert [p.name for p in c.folder.glob("instruments_*.json")] == ["instruments_20260305.json"]


def test_live_source_does_not_read_the_paper_cache(paper) -> None:
    home, broker, _, kite = paper
    paper_md = MarketData(home, broker.url, kite)
    paper_md.daily_candles("INFY", D("2026-01-01"), D("2026-03-03"))
    live_md = MarketData(home, "live", kite)  # same home, same symbol, other source
    live_md.daily_candles("INFY", D("2026-01-01"), D("2026-03-03"))
    assert live_md.api_calls == {"instruments": 1, "historical": 1}
    assert live_md.folder != paper_md.folder and live_md.folder == home.market_data_dir("live")


def test_two_users_fetching_the_same_candles_at_once_cost_one_fetch(
        tmp_path: Path, broker_factory: Callable[..., RunningBroker]) -> None:  # noqa: F811
    users = ("Som", "Sai")
    home = paper_home(tmp_path / "home", users)
    value = clock_file(tmp_path / "clock", MARKET_OPEN.replace(hour=17))  # after the close: no live part
    broker = broker_factory(home, clock=value, symbols=["INFY", "TCS", "RELIANCE"], rate_limits=True)
    point_users_at(home, broker.url, users)
    go = tmp_path / "go"
    symbols = "INFY,TCS,RELIANCE"
    procs = [start_job(home, user, "candles", "--symbols", symbols, "--go-file", str(go),
                       "--ready-file", str(tmp_path / f"ready-{user}"), env={"TRADER_CLOCK": value})
             for user in users]
    # Both past their start-up (logged in, instruments loaded: one fetched them, the other waited
    # and read them), then both ask for the same candles at the same moment.
    deadline = time.monotonic() + 60
    while not all((tmp_path / f"ready-{u}").exists() for u in users):
        assert time.monotonic() < deadline and all(p.poll() is None for p in procs), "jobs did not get ready"
        time.sleep(0.01)
    go.touch()
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        results.append(last_json(out))
    assert results[0]["candles"] == results[1]["candles"]
    assert sum(r["api_calls"]["historical"] for r in results) == 3  # one per symbol, not per user
    assert sum(r["api_calls"]["instruments"] for r in results) == 1
    audit = broker.audit()
    assert sum(1 for r in audit if r["path"].startswith("/instruments/historical")) == 3
    assert all(r["status"] != 429 for r in audit)


def _double_cached_prices(path: Path) -> dict[str, Any]:
    """The cache as it was before a 1:2 split's ex-date (Kite now serves the history halved)."""
    data = json.loads(path.read_text())
    for row in data["candles"]:
        row[1:5] = [p * 2 for p in row[1:5]]
    path.write_text(json.dumps(data))
    return data


def test_a_held_symbols_cache_is_checked_once_a_day_and_dropped_when_the_history_changed(paper) -> None:
    """The stop run's check (``adjustment``): one fresh request for the newest cached day, once a
    day for all processes; a close beyond rounding drops and refetches the cache and reports the
    factor for the day."""
    home, broker, clock_path, kite = paper
    counting = CountingKite(kite)
    md = MarketData(home, broker.url, counting)
    start, last = D("2026-02-01"), D("2026-03-02")
    md.daily_candles("INFY", start, last, last_completed=last)
    path = md.folder / "candles" / "day" / f"{md.token('INFY')}.json"
    fetched = len(counting.historical)
    assert md.adjustment("INFY") is None and len(counting.historical) == fetched + 1  # nothing changed
    assert md.adjustment("INFY") is None and len(counting.historical) == fetched + 1  # once a day
    stale = _double_cached_prices(path)
    write_clock_file(clock_path, MARKET_OPEN + timedelta(days=1))
    nxt = MarketData(home, broker.url, counting)
    assert nxt.adjustment("INFY") == pytest.approx(2.0) and not path.exists()
    fresh = nxt.daily_candles("INFY", start, last, last_completed=last)
    assert fresh[-1]["close"] == stale["candles"][-1][4] / 2  # refetched, not the stale cache
    after = len(counting.historical)
    # Later the same day, in another process: no second check, the factor still known.
    assert MarketData(home, broker.url, counting).adjustment("INFY") == pytest.approx(2.0)
    assert len(counting.historical) == after


def test_appending_a_new_session_checks_the_newest_cached_day_at_no_extra_cost(paper) -> None:
    home, broker, _, kite = paper
    counting = CountingKite(kite)
    md = MarketData(home, broker.url, counting)
    md.daily_candles("TCS", D("2026-02-01"), D("2026-02-27"), last_completed=D("2026-02-27"))
    path = md.folder / "candles" / "day" / f"{md.token('TCS')}.json"
    stale = _double_cached_prices(path)
    before = len(counting.historical)
    later = MarketData(home, broker.url, counting)
    rows = later.daily_candles("TCS", D("2026-02-01"), D("2026-03-02"), last_completed=D("2026-03-02"))
    assert later.adjustment("TCS") == pytest.approx(2.0)
    # One fetch for the new session (started a day early), then the whole range again after the drop.
    assert len(counting.historical) == before + 2
    assert rows[0]["close"] == stale["candles"][0][4] / 2
