"""``make demo``, bounded: the real demo (paper broker, supervisord, both schedulers, a clock file)
in a short temporary home, faster and cut off after INFY's fall; plus its refusals, Ctrl-C, and
the report's audit logic on plain data. The full demo runs under ``KITEFLEET_SOAK=1``.

Order matters within the module: the Ctrl-C run and the bounded run share one home, so the
bounded run also shows that a second demo wipes the first one's home and works.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from demo.home import HAND_HELD, MARKER
from demo.procs import kill_leftovers, leftovers
from kitefleet.home import PROJECT_ROOT, Home
from tests.conftest import soak_enabled
from tests.support.homes import VENV_PYTHON

pytestmark = pytest.mark.supervisord


def demo_cmd(home: Path, *args: str) -> list[str]:
    return [str(VENV_PYTHON), "-m", "demo", "--home", str(home), *args]


def run_demo(home: Path, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(demo_cmd(home, *args), cwd=PROJECT_ROOT, capture_output=True, text=True,
                          timeout=timeout, check=False)


def poll(fn: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = fn()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


@pytest.fixture(scope="module")
def demo_home() -> Iterator[Path]:
    # short: supervisord's unix socket lives in <home>/run
    base = Path(tempfile.mkdtemp(prefix="kfdemo-"))
    home = base / "home"
    try:
        yield home
    finally:
        if home.exists():
            kill_leftovers(Home(home.resolve()))
        shutil.rmtree(base, ignore_errors=True)


# --- refusals ----------------------------------------------------------------------------------------
def test_refuses_a_home_with_a_live_env_file(tmp_path: Path) -> None:
    home = tmp_path / "h"
    (home / "env").mkdir(parents=True)
    (home / MARKER).write_text("")
    live = home / "env" / "Som.env"
    live.write_text("TRADER_MODE=live\nKITE_API_KEY=k\nKITE_API_SECRET=s\n")
    # a process of that (live) home: a refused demo must leave it alone
    bystander = subprocess.Popen([str(VENV_PYTHON), "-c", "import time; time.sleep(60)"],
                                 env={"KITEFLEET_HOME": str(home.resolve()), "PATH": "/usr/bin:/bin"})
    try:
        out = run_demo(home, timeout=60)
        assert out.returncode == 4, out.stdout + out.stderr
        assert "live" in out.stdout and str(live) in out.stdout
        assert live.read_text().startswith("TRADER_MODE=live")  # nothing touched
        assert not (home / "data").exists()
        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()


def test_refuses_a_folder_it_did_not_make(tmp_path: Path) -> None:
    keep = tmp_path / "notes.txt"
    keep.write_text("mine")
    out = run_demo(tmp_path, timeout=60)
    assert out.returncode == 4 and MARKER in out.stdout
    assert keep.read_text() == "mine"




# --- the report's audit, on plain data ---------------------------------------------------------------






# --- the real thing ------------------------------------------------------------------------------------
def test_ctrl_c_stops_everything(demo_home: Path) -> None:
    proc = subprocess.Popen(demo_cmd(demo_home), cwd=PROJECT_ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        # once both schedulers beat, supervisord, its programs and the broker are all up
        poll(lambda: all((demo_home / "data" / u / "heartbeat.json").exists() for u in ("Som", "Sai")), 90,
             "both schedulers' heartbeats")
        assert leftovers(Home(demo_home.resolve()))
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, out
    assert "SIGINT: stopping everything" in out
    assert f"processes left naming {demo_home.resolve()}: 0" in out
    assert leftovers(Home(demo_home.resolve())) == []


def hourly_exits_before_a_full_candle(state: dict[str, Any]) -> tuple[int, list[str]]:
    """(exits checked, violations): every exit by the hourly rule of a position entered that day
    (the watchdog's ``entry`` record) must be decided no earlier than the end of the first hourly
    candle that started at or after the entry's first fill (candles start at 09:15 + n hours)."""
    from datetime import datetime, timedelta

    checked, bad = 0, []
    for day, wd in (state.get("watchdog") or {}).items():
        for symbol, rec in ((wd or {}).get("symbols") or {}).items():
            entry = (rec or {}).get("entry") or {}
            if not entry.get("at"):
                continue
            filled = datetime.fromisoformat(entry["at"])
            start = filled.replace(hour=9, minute=15, second=0, microsecond=0)
            while start < filled:
                start += timedelta(hours=1)
            candle_end = min(start + timedelta(hours=1), start.replace(hour=15, minute=30))
            for e in rec.get("exits") or []:
                if e.get("rule") != "hourly_low" or not e.get("decided_at"):
                    continue
                checked += 1
                if datetime.fromisoformat(e["decided_at"]) < candle_end:
                    bad.append(f"{day} {symbol}: filled {entry['at']}, sold by the hourly rule at {e['decided_at']}, "
                               f"before {candle_end.isoformat()}")
    return checked, bad


def test_the_full_candle_check_sees_an_early_hourly_exit() -> None:
    def state(decided: str) -> dict[str, Any]:
        return {"watchdog": {"2026-11-25": {"symbols": {"INFY": {
            "entry": {"at": "2026-11-25T09:20:00+05:30"},
            "exits": [{"rule": "hourly_low", "decided_at": f"2026-11-25T{decided}+05:30"}]}}}}}

    # a 09:20 fill: the first full candle after it is 10:15-11:15
    assert hourly_exits_before_a_full_candle(state("11:15:00")) == (1, [])
    assert len(hourly_exits_before_a_full_candle(state("11:14:00"))[1]) == 1
    assert len(hourly_exits_before_a_full_candle(state("09:41:00"))[1]) == 1


def check_report(report: dict[str, Any], home: Path, report_text: str) -> None:
    assert set(report["users"]) == {"Som", "Sai"}
    audit = report["audit"]
    assert audit["foreign_key_requests"] == 0
    for user in ("Som", "Sai"):
        assert audit["per_user"][user]["orders"] >= 1
        att = audit["attribution"][user]
        assert att["placed_with_own_key"] >= 1 and not att["placed_with_other_key"] and not att["not_in_audit"]
        activity = report["users"][user]["activity"]
        # Entries are priced at the ask of a fresh quote (issue 16). Priced at the LTP, as before,
        # most would rest below the ask of the paper market's spread. Yesterday's picks must fill
        # (the stops and exits below need them); of the rest, one may miss: the demo's clock runs
        # 10x around the entries, so the wall milliseconds between the quote and the order can
        # cross into the next simulated minute, whose ask may be a tick higher (as on NSE, a limit
        # at the ask can miss); the report then says "not filled" or "filled late".
        entries = activity["entries"]
        filled = [e for e in entries if e["filled"]]
        assert {"INFY", "ITC"} <= {e["symbol"] for e in filled}, f"{user}: yesterday's entries not filled: {entries}"
        assert len(filled) >= max(2, len(entries) - 1), f"{user}: entries not filled: {entries}"
        assert activity["stops"], f"{user} has no GTT stop"
        # issue 19: every entry ends filled with a broker stop GTT placed at or after its order
        # (from its fill on), or cancelled at its timeout; the report's text names each outcome
        for e in entries:
            if e["filled"]:
                assert e["stop_gtt"] is not None and e["stop_placed_at"], f"{user}: filled, no stop: {e}"
            else:
                assert e["cancelled"], f"{user}: entry neither filled nor cancelled: {e}"
            assert e["outcome"] in report_text, f"{user}: the report does not list {e}"
        assert any(e["symbol"] == "INFY" for e in activity["exits"]), f"{user}: no watchdog exit of INFY"
    notes = report["notifications"]
    som, sai = notes["users"]["Som"], notes["users"]["Sai"]
    kinds = [m["kind"] for m in som["received"]]
    assert "fill" in kinds and "exit" in kinds, f"Som's sink: {kinds}"
    # the INFY exit of the replay day, with its time on that day
    infy = [m for m in som["received"] if m["kind"] == "exit" and "INFY" in m["first_line"]]
    assert infy and infy[0]["time"].startswith(report["day"]), som["received"]
    assert som["how"].get("sent") == len(som["received"]) and som["undelivered"] == 0
    assert sai["received"] == [] and not notes["unattributed"]
    # Sai's bot had things to say (the same kinds of events as Som's), and none was sent anywhere
    assert sai["events"] > 0 and not sai["how"].get("sent") and sai["undelivered"] == 0
    assert report["checks_passed"]
    # issue 18: Som's hand-bought shares (a plain client order before the bot ran) are left alone
    hand_user, hand_symbol, hand_qty = HAND_HELD
    hh = report["users"][hand_user]["hand_held"]
    assert hh == {"symbol": hand_symbol, "bought": hand_qty, "held_at_end": hand_qty, "bot_stop": False,
                  "bot_lots": False, "untouched": True}, hh
    assert not [x for x in report["users"][hand_user]["activity"]["exits"] if x["symbol"] == hand_symbol]
    assert not [st for st in report["users"][hand_user]["activity"]["stops"] if st["symbol"] == hand_symbol]
    assert leftovers(Home(home.resolve())) == []
    # Issue 20: no position entered that day is sold by the hourly rule before a full hourly
    # candle after its fill has completed (the demo's Friday once sold seven within 18 minutes).
    entered = 0
    for user in ("Som", "Sai"):
        state = json.loads(Home(home.resolve()).state_file(user).read_text(encoding="utf-8"))
        entered += sum(1 for wd in (state.get("watchdog") or {}).values()
                       for rec in ((wd or {}).get("symbols") or {}).values() if (rec or {}).get("entry"))
        _checked, bad = hourly_exits_before_a_full_candle(state)
        assert bad == [], f"{user}: {bad}"
    assert entered, "the demo recorded no position entered that day: the check above saw nothing"
    # Issue 21: the backtest's engine over the same two days (seed, scenario, settings, the demo's
    # runs) sends the same entries (quantity, limit within a tick) and the same exits (rule, level,
    # between the jobs' polls); demo.consistency builds it, workers.backtest.compare compares.
    for user in ("Som", "Sai"):
        c = report["consistency"][user]
        assert c["differences"] == [], f"{user}: the backtest differs from the demo: {c}"
        ran = report["users"][user]["activity"]
        assert c["entries"] == len(ran["entries"]) >= 2, c
        assert c["exits"] == len([x for x in ran["exits"] if x.get("order_id")]) >= 1, c
        # what the accelerated clock kept the jobs from seeing is a note; most must compare strictly
        assert len(c["notes"]) <= (c["entries"] + c["exits"]) // 2, c
    assert "==== the backtest over the same two days" in report_text


def test_bounded_demo_reports_both_users_and_leaves_nothing(demo_home: Path) -> None:
    report_path = demo_home.parent / "report.json"
    started = time.monotonic()
    out = run_demo(demo_home, "--speed", "900", "--until", "12:15", "--json",
                   str(report_path), timeout=240)
    wall = time.monotonic() - started
    assert out.returncode == 0, out.stdout[-6000:] + out.stderr[-3000:]
    assert "==== isolation audit" in out.stdout and "requests made with any other key: 0" in out.stdout
    assert "==== notifications" in out.stdout and "Sai has no NOTIFY_URLS" in out.stdout
    assert "som-demo-hook" not in out.stdout  # the URL is a secret: only the sink's address is shown
    check_report(json.loads(report_path.read_text()), demo_home, out.stdout)
    print(f"bounded demo: {wall:.1f}s wall")


@pytest.mark.soak
@pytest.mark.skipif(not soak_enabled(), reason="set KITEFLEET_SOAK=1 for the full demo (~2.5 minutes)")
def test_full_demo(tmp_path: Path) -> None:
    base = Path(tempfile.mkdtemp(prefix="kfdemo-"))
    try:
        started = time.monotonic()
        out = run_demo(base / "home", "--json", str(base / "report.json"), timeout=400)
        wall = time.monotonic() - started
        assert out.returncode == 0, out.stdout[-6000:] + out.stderr[-3000:]
        report = json.loads((base / "report.json").read_text())
        check_report(report, base / "home", out.stdout)
        jobs = {(r["user"], r["job"]) for r in report["runs"]}
        for user in ("Som", "Sai"):
            for job in ("update_cnc_stoploss", "hourly_candle_watchdog", "place_orders_daily", "pattern_daily"):
                assert (user, job) in jobs
        assert wall < 180, f"the full demo took {wall:.0f}s"
    finally:
        kill_leftovers(Home((base / "home").resolve()))
        shutil.rmtree(base, ignore_errors=True)
