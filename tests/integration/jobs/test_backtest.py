"""``orchestrator.py backtest`` in real processes (issue 21): a backtest can never trade, bad input
is one line with a stable exit code and writes nothing, a killed run leaves no output folder.

The tests marked "waits for the engine" need workers/backtest/engine.py, paper.py (h40) and
metrics.py, report.py (h41): they fail on this branch alone and pass once the lead merges them.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from kitefleet.clock import IST
from kitefleet.exitcodes import ExitCode
from kitefleet.home import Home
from tests.support.broker import RunningBroker, broker_factory  # noqa: F401 (fixture)
from tests.support.desk import Desk, open_desk
from tests.support.fleet import fleet_home, orchestrator
from tests.support.homes import PROJECT_ROOT, VENV_PYTHON, child_env
from workers.context import FAULT_ENV

SYMBOLS = ["INFY", "TCS", "RELIANCE"]
#: the paper market's clock sits after the range, so every session in it is complete
NOW = datetime(2026, 11, 25, 16, 0, tzinfo=IST)
WRITE_METHODS = {"POST", "PUT", "DELETE"}


def _trading_writes(audit: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in audit if r["method"] in WRITE_METHODS
            and (r["path"].startswith("/orders") or r["path"].startswith("/gtt"))]


def _backtests(home: Home, user: str) -> Path:
    return home.user_data_dir(user) / "backtests"


# --- bad input: one line, exit 2 or 4, nothing written --------------------------------------

@pytest.fixture
def quiet_home(tmp_path: Path) -> Home:
    home, _ = fleet_home(tmp_path / "home", {"Som": {}, "Sai": {"TRADER_MODE": "live"}}, clock_at=None)
    return home


@pytest.mark.parametrize(("args", "code", "says"), [
    (["--from", "2026-11-20", "--to", "2026-11-10"], ExitCode.USAGE, "is after"),
    (["--from", "2026-11-10", "--to", "2026-11-20", "--rule", "moon"], ExitCode.USAGE, "--rule 'moon'"),
    (["--from", "2026-11-10", "--to", "2026-11-20", "--source", "live", "--seed", "3"], ExitCode.USAGE,
     "paper market"),
    (["--from", "2026-11-10", "--to", "2026-1-20"], ExitCode.USAGE, "YYYY-MM-DD"),
    (["--from", "2026-11-21", "--to", "2026-11-22"], ExitCode.USAGE, "no NSE session"),  # a weekend
])
def test_bad_input_is_one_line_and_writes_nothing(quiet_home: Home, args: list[str], code: int, says: str) -> None:
    proc = orchestrator(quiet_home, "backtest", "Som", *args)
    assert proc.returncode == code, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and says in lines[0], proc.stderr
    assert not _backtests(quiet_home, "Som").exists()


def test_an_existing_out_folder_is_refused_untouched(quiet_home: Home, tmp_path: Path) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep", encoding="utf-8")
    proc = orchestrator(quiet_home, "backtest", "Som", "--from", "2026-11-10", "--to", "2026-11-20",
                        "--out", str(out))
    assert proc.returncode == ExitCode.USAGE and "already exists" in proc.stderr
    assert [p.name for p in out.iterdir()] == ["notes.txt"] and not (tmp_path / "mine.partial").exists()


def test_a_live_source_without_a_session_is_a_config_error(quiet_home: Home) -> None:
    proc = orchestrator(quiet_home, "backtest", "Sai", "--from", "2026-11-10", "--to", "2026-11-20",
                        "--source", "live")
    assert proc.returncode == ExitCode.CONFIG, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "session" in lines[0], proc.stderr
    assert not _backtests(quiet_home, "Sai").exists()


# --- a backtest can never trade (waits for the engine) --------------------------------------

@pytest.fixture
def desk(tmp_path: Path, broker_factory: Callable[..., RunningBroker]) -> Iterator[Desk]:  # noqa: F811
    desk = open_desk(tmp_path, broker_factory, {"Som": {"UNIVERSE": "universe.csv"}}, NOW, SYMBOLS)
    # the paper broker lists only these symbols: the user's universe is them
    (desk.home.root / "universe.csv").write_text("Ticker\n" + "".join(f"{s}\n" for s in SYMBOLS), encoding="utf-8")
    yield desk


def _backtest(desk: Desk, *args: str, fault: str | None = None) -> subprocess.Popen[str]:
    env = child_env(desk.home, TRADER_CLOCK=desk.clock_value, PYTHONPATH=str(PROJECT_ROOT))
    if fault is not None:
        env[FAULT_ENV] = fault
    return subprocess.Popen([str(VENV_PYTHON), str(PROJECT_ROOT / "orchestrator.py"), "backtest", "Som", *args],
                            cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


@pytest.mark.parametrize("source", ["paper", "live"])
def test_a_backtest_sends_no_order_and_no_gtt(desk: Desk, tmp_path: Path, source: str) -> None:
    """Waits for the engine. The live source against a paper user reads the paper broker's history."""
    out = tmp_path / f"bt-{source}"
    proc = _backtest(desk, "--from", "2026-11-02", "--to", "2026-11-20", "--rule", "all", "--source", source,
                     "--out", str(out), "--json")
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    summary = json.loads(stdout.strip().splitlines()[-1])
    assert set(summary["summaries"]) == {"hourly_low", "atr_trailing"}
    assert {p.name for p in out.iterdir()} >= {"trades.csv", "orders.csv", "equity.csv", "summary.json",
                                               "report.html"}
    if source == "live":
        assert "historical requests" in stderr
    audit = desk.broker.audit(api_key=desk.api_key("Som"))
    assert any(r["path"].startswith("/user/margins") for r in audit)  # the run did talk to the broker
    assert _trading_writes(audit) == []


def test_a_killed_run_leaves_no_out_and_its_rerun_is_not_refused(desk: Desk, tmp_path: Path) -> None:
    """Waits for the engine. Killed (SIGKILL) with every output written to <out>.partial/, before the rename."""
    out = tmp_path / "bt"
    partial = tmp_path / "bt.partial"
    args = ("--from", "2026-11-02", "--to", "2026-11-20", "--rule", "all", "--out", str(out), "--json")
    killed = _backtest(desk, *args, fault="backtest_written")
    _, stderr = killed.communicate(timeout=300)
    assert killed.returncode == ExitCode.KILLED, stderr
    assert not out.exists() and (partial / "summary.json").is_file()
    rerun = _backtest(desk, *args)
    _, stderr = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, stderr
    assert out.is_dir() and not partial.exists()
    assert json.loads((out / "summary.json").read_text(encoding="utf-8"))


def test_the_live_source_reads_a_paper_users_history_and_writes_nothing(desk: Desk) -> None:
    """Runs now: the read-only client and LiveSource on the real paper broker, in process."""
    import logging
    from datetime import date

    from kitefleet import clock
    from kitefleet.calendar import build_from_library
    from kitefleet.clock import clock_from_value
    from kitefleet.settings import load_settings
    from workers.backtest.live import LiveSource
    from workers.backtest.model import BacktestSpec
    from workers.kite_readonly import WriteRefused, build_readonly_kite
    from workers.marketdata import MarketData

    clock.set_clock(clock_from_value(desk.clock_value))
    try:
        settings = load_settings(desk.home, "Som")
        kite = build_readonly_kite(desk.home, settings)
        calendar, _ = build_from_library(date(2025, 6, 1), date(2026, 12, 31))
        source = LiveSource(MarketData(desk.home, settings.data_source, kite, calendar=calendar), calendar,
                            SYMBOLS, logging.getLogger("test"))
        spec = BacktestSpec(user="Som", start=date(2026, 11, 16), end=date(2026, 11, 20), rules=("hourly_low",),
                            source="live")
        assert source.requests_needed(spec) == 2 * len(SYMBOLS)
        days = source.daily("INFY", date(2026, 10, 1), date(2026, 11, 20))
        assert days and days[-1].date == date(2026, 11, 20)
        assert source.minutes("INFY", date(2026, 11, 16))  # loads its chunk, up to the last closed session
        minutes = source.minutes("INFY", date(2026, 11, 20))
        assert minutes and minutes[0].date.astimezone(IST).time().isoformat() == "09:15:00"
        assert source.book("INFY", date(2026, 11, 20), 0) is None
        # what was fetched is cached: the same plan now costs no minute request for that chunk
        assert source.requests_needed(spec) == 2 * len(SYMBOLS) - 1
        with pytest.raises(WriteRefused):
            kite.place_order("regular", exchange="NSE", tradingsymbol="INFY", transaction_type="BUY", quantity=1,
                             product="CNC", order_type="LIMIT", price=1.0)
        assert source.minutes("INFY", date(2026, 11, 29)) is None  # not closed yet: reported, not invented
        assert source.missing and "2026-11-29" in source.missing[-1]
    finally:
        clock.set_clock(None)
    audit = desk.broker.audit(api_key=desk.api_key("Som"))
    assert any("/instruments/historical/" in r["path"] for r in audit)
    assert _trading_writes(audit) == []
