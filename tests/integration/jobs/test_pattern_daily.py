"""pattern_daily end to end: real worker processes, the real kiteconnect client, the real paper broker
(a subprocess with its own rate limits on) and a simulated ``file:`` clock.

The scoring rules themselves are unit-tested on hand-made candles in tests/workers/strategy/test_patterns.py.
"""

from __future__ import annotations

import csv
import json
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

import pytest

from kitefleet.clock import write_clock_file
from kitefleet.exitcodes import ExitCode
from kitefleet.home import Home
from kitefleet.settings import load_settings
from tests.support.broker import RunningBroker, broker_factory, clock_file  # noqa: F401 (fixture)
from tests.support.homes import PROJECT_ROOT, VENV_PYTHON, child_env, make_home, write_env
from workers.scans import scan_file
from workers.strategy.patterns import SCAN_COLUMNS, ScanResult, scan_sort_key

SYMBOLS = ["INFY", "TCS", "RELIANCE", "SBIN", "ITC"]
#: Wednesday 2026-03-04 after the close, and the next trading day (Thursday) just after the open.
EVENING = datetime.fromisoformat("2026-03-04T18:00:00+05:30")
MORNING_BEFORE = datetime.fromisoformat("2026-03-04T09:16:00+05:30")
NEXT_MORNING = datetime.fromisoformat("2026-03-05T09:16:00+05:30")
HISTORICAL = "/instruments/historical/"


@dataclass
class Paper:
    home: Home
    broker: RunningBroker
    clock_path: Path
    clock_value: str

    def set_time(self, moment: datetime) -> None:
        write_clock_file(self.clock_path, moment)
        deadline = time.monotonic() + 10
        # The broker re-reads the clock file when it changes; the jump may go back or forward.
        while abs((self.broker.now() - moment).total_seconds()) > 60:
            assert time.monotonic() < deadline, "paper broker did not follow the clock file"
            time.sleep(0.01)

    def env(self, simulated: bool = True) -> dict[str, str]:
        env = child_env(self.home, TRADER_CLOCK=self.clock_value) if simulated else child_env(self.home)
        env["PYTHONPATH"] = str(PROJECT_ROOT)
        return env

    def start(self, user: str, *args: str, simulated: bool = True) -> subprocess.Popen[str]:
        return subprocess.Popen([str(VENV_PYTHON), "-m", "workers", "pattern_daily", "--user", user, *args],
                                cwd=PROJECT_ROOT, env=self.env(simulated), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)

    def run(self, user: str, *args: str, expect: int = 0, simulated: bool = True) -> dict:
        proc = self.start(user, "--json", *args, simulated=simulated)
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == expect, f"exit {proc.returncode}\nstdout:\n{out}\nstderr:\n{err}"
        return json.loads(out.strip().splitlines()[-1]) if expect == 0 else {"stderr": err}

    def historical(self, since: datetime | None = None) -> list[dict]:
        return [r for r in self.broker.audit(since=since) if str(r["path"]).startswith(HISTORICAL)]


def _home(root: Path, users: tuple[str, ...], **extra: object) -> Home:
    home = make_home(root)
    (home.root / "universe.csv").write_text("Ticker,Note\n" + "".join(f"{s},x\n" for s in SYMBOLS) + "NOPE,\n",
                                            encoding="utf-8")
    for user in users:
        write_env(home, user, UNIVERSE="universe.csv", **extra)
    return home


@pytest.fixture
def paper(tmp_path: Path, broker_factory: Callable[..., RunningBroker]) -> Iterator[Paper]:  # noqa: F811
    home = _home(tmp_path / "home", ("Som", "Sai"))
    clock_path = tmp_path / "clock"
    value = clock_file(clock_path, EVENING)
    broker = broker_factory(home, clock=value, symbols=SYMBOLS, rate_limits=True)
    for user in ("Som", "Sai"):  # same keys, now pointing at this broker
        write_env(home, user, UNIVERSE="universe.csv", KITE_ROOT=broker.url)
    yield Paper(home, broker, clock_path, value)


# --- end to end ------------------------------------------------------------------------------
def test_two_users_at_once_cost_the_historical_calls_of_one_and_agree(paper: Paper) -> None:
    procs = {user: paper.start(user, "--json") for user in ("Som", "Sai")}  # same moment
    summaries = {}
    for user, proc in procs.items():
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, f"{user}: exit {proc.returncode}\n{out}\n{err}"
        summaries[user] = json.loads(out.strip().splitlines()[-1])

    audit = paper.broker.audit()
    historical = [r for r in audit if str(r["path"]).startswith(HISTORICAL)]
    assert len(historical) == len(SYMBOLS)  # one per symbol, for both users together
    assert len({r["path"] for r in historical}) == len(SYMBOLS)
    assert [r for r in audit if r["status"] == 429] == []
    assert sum(s["historical_calls"] for s in summaries.values()) == len(SYMBOLS)
    assert [r["path"] for r in audit].count("/instruments/NSE") == 1  # instruments once per day

    som = scan_file(paper.home, "Som", date(2026, 3, 4))
    sai = scan_file(paper.home, "Sai", date(2026, 3, 4))
    assert som.name == "pattern_daily_20260304.csv"
    assert som.read_bytes() == sai.read_bytes()
    assert summaries["Som"]["file"] == str(som) and summaries["Som"]["written"] is True

    with som.open(encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        assert tuple(reader.fieldnames or ()) == SCAN_COLUMNS
        rows = list(reader)
    results = [ScanResult.from_row(r) for r in rows]
    assert sorted(r.symbol for r in results) == sorted([*SYMBOLS, "NOPE"])  # one row per universe symbol
    assert results == sorted(results, key=scan_sort_key)
    nope = next(r for r in results if r.symbol == "NOPE")
    assert nope.score == 0 and nope.reason is not None and "unknown instrument" in nope.reason
    for r in results:
        if r.symbol == "NOPE":
            continue
        assert r.last_session == "2026-03-04" and r.candles >= 100  # about six months of sessions
        assert r.trend in ("bull", "bear", "sideways") and r.growth_pattern is not None
        assert r.score == len(r.conditions)
        if r.stop_loss is not None:
            assert r.entry is not None and r.stop_loss < r.entry < r.target_1 < r.target_2  # type: ignore[operator]
    assert summaries["Som"]["symbols"] == len(SYMBOLS) + 1 and summaries["Som"]["not_scored"] == 1


def test_same_session_scanned_in_the_evening_and_next_morning_gives_the_same_file(paper: Paper) -> None:
    # 09:16 on the 4th: the 4th has not completed, so the scan is of the session before (the 2nd:
    # the 3rd is a holiday, Holi, in the exported calendar).
    paper.set_time(MORNING_BEFORE)
    before = paper.run("Som")
    assert before["last_session"] == "2026-03-02"
    assert Path(before["file"]).name == "pattern_daily_20260302.csv"
    assert len(paper.historical()) == len(SYMBOLS)

    # 18:00 on the 4th: the shared cache fetches only the new session, one call per symbol.
    paper.set_time(EVENING)
    evening = paper.run("Som")
    assert evening["last_session"] == "2026-03-04" and evening["historical_calls"] == len(SYMBOLS)
    evening_file = Path(evening["file"])
    evening_bytes = evening_file.read_bytes()
    assert evening_bytes != Path(before["file"]).read_bytes()

    # 09:16 on the 5th, the session of the 5th forming: still the scan of the 4th, byte for byte,
    # from the cache (Sai) and fetched afresh from the broker (Som, cache off; dry run first).
    paper.set_time(NEXT_MORNING)
    since = paper.broker.now()
    dry = paper.run("Som", "--no-shared-cache", "--dry-run")
    assert dry["written"] is False and dry["last_session"] == "2026-03-04"
    assert evening_file.read_bytes() == evening_bytes  # untouched by the dry run
    morning = paper.run("Som", "--no-shared-cache")
    assert morning["file"] == str(evening_file) and morning["historical_calls"] == len(SYMBOLS)
    assert evening_file.read_bytes() == evening_bytes
    assert len(paper.historical(since)) == 2 * len(SYMBOLS)  # the two cache-off runs only
    cached = paper.run("Sai")
    assert cached["historical_calls"] == 0
    assert scan_file(paper.home, "Sai", date(2026, 3, 4)).read_bytes() == evening_bytes
    assert [r for r in paper.broker.audit() if r["status"] == 429] == []


def test_paper_and_live_sources_never_share_a_cache_folder(paper: Paper) -> None:
    write_env(paper.home, "Liv", mode="live", UNIVERSE="universe.csv")
    paper_settings = load_settings(paper.home, "Som")
    live_settings = load_settings(paper.home, "Liv")
    paper_dir = paper.home.market_data_dir(paper_settings.data_source)
    live_dir = paper.home.market_data_dir(live_settings.data_source)
    assert live_dir.name == "live" and paper_dir != live_dir
    assert paper_dir.name == paper.broker.url.removeprefix("http://").replace(":", "_")
    # Another paper broker (another address) gets a folder of its own too.
    assert paper.home.market_data_dir("http://127.0.0.1:1") not in (paper_dir, live_dir)

    paper.run("Som")
    assert list((paper_dir / "candles" / "day").glob("*.json"))
    # A live user (real clock: a simulated one is refused in live mode) without a session stops
    # with the token exit code before touching any market data.
    failed = paper.run("Liv", expect=ExitCode.TOKEN, simulated=False)
    assert "log in again" in failed["stderr"]
    assert sorted(p.name for p in paper.home.shared_dir.iterdir() if p.is_dir()) == [paper_dir.name]


def test_bad_universe_is_a_configuration_error(paper: Paper) -> None:
    write_env(paper.home, "Som", UNIVERSE="missing.csv", KITE_ROOT=paper.broker.url)
    failed = paper.run("Som", expect=ExitCode.CONFIG)
    assert "missing.csv" in failed["stderr"]
    assert not scan_file(paper.home, "Som", date(2026, 3, 4)).parent.exists()
