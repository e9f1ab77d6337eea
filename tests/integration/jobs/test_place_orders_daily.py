"""place_orders_daily in real worker processes against the real paper broker (real kiteconnect,
real HTTP, a file clock the test moves); the rig is tests/support/desk.py."""

from __future__ import annotations

import json
import math
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest
from kiteconnect import KiteConnect

from kitefleet.clock import IST
from kitefleet.state import StateStore
from kitefleet.ticks import on_tick
from tests.support.broker import RunningBroker, broker_factory  # noqa: F401 (fixture)
from tests.support.desk import Desk, last_json, open_desk
from tests.support.homes import PROJECT_ROOT, VENV_PYTHON, child_env, write_env
from workers.intents import make_tag
from workers.strategy.patterns import ScanResult

#: 2026-03-02 (Mon) and 2026-03-04 (Wed) trade; 03-03 is a holiday (Holi) in the XNSE calendar.
PREV_SESSION = date(2026, 3, 2)
DAY_A = datetime(2026, 3, 4, 10, 5, tzinfo=IST)
JOB = "place_orders_daily"




def scan_row(symbol: str, score: int, entry: float, stop: float, target: float, rr: float = 2.0) -> ScanResult:
    return ScanResult(symbol, score, entry=entry, stop_loss=stop, target_1=target, risk_reward=rr,
                      last_session=PREV_SESSION.isoformat(), candles=120)


def records(desk: Desk, user: str) -> list[dict[str, Any]]:
    folder = desk.home.user_data_dir(user) / "orders"
    return [json.loads(p.read_text()) for p in sorted(folder.glob(f"orders_{user}_*.json"))]


def book_by_tag(kite: KiteConnect) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for o in kite.orders():
        out.setdefault(o.get("tag") or "", []).append(o)
    return out


# --- tests -----------------------------------------------------------------------------------------
SYMBOLS = ["INFY", "TCS", "SBIN", "RELIANCE"]


@pytest.fixture
def desk(tmp_path: Path, broker_factory: Callable[..., RunningBroker]) -> Iterator[Desk]:  # noqa: F811
    yield open_desk(tmp_path, broker_factory, {"Som": {}}, DAY_A.replace(hour=8, minute=30), SYMBOLS)


def test_entries_are_sized_on_the_tick_recorded_and_a_second_run_sends_nothing(desk: Desk) -> None:
    desk.write_scan("Som", PREV_SESSION, [
        scan_row("INFY", 6, 1095, 1000, 1250), scan_row("TCS", 5, 2600, 2400, 3000),
        scan_row("SBIN", 4, 930, 880, 1000),
        ScanResult("RELIANCE", 0, reason="insufficient data: 10 candles, need 60"),
    ])
    # Before the open: says so, places nothing, writes no record.
    proc = desk.run("Som", JOB)
    assert proc.returncode == 0 and "market closed" in proc.stdout
    assert desk.writes() == [] and records(desk, "Som") == []

    desk.at(DAY_A)
    dry = desk.ok("Som", JOB, "--dry-run")
    assert set(dry["planned"]) == {"INFY", "TCS"} and desk.writes() == [] and records(desk, "Som") == []

    out = desk.ok("Som", JOB)
    kite = desk.kite("Som")
    cash = 1_000_000.0  # PAPER_STARTING_CASH default
    placed = {p["symbol"]: p for p in out["placed"]}
    assert set(placed) == {"INFY", "TCS"}
    assert out["skipped"]["SBIN"].startswith("score 4 below MIN_SCORE 5")
    assert out["skipped"]["RELIANCE"].startswith("scan: insufficient data")
    book = book_by_tag(kite)
    for sym, p in placed.items():
        tag = make_tag("Som", JOB, DAY_A.date(), sym, "entry")
        assert p["tag"] == tag and len(book[tag]) == 1
        order = book[tag][0]
        assert (order["transaction_type"], order["order_type"], order["product"], order["validity"]) == \
            ("BUY", "LIMIT", "CNC", "DAY")
        # This test once expected the limit at the LTP and an instant fill there: that relied on the
        # old paper market filling any BUY at or above the LTP. With a spread, a BUY at the LTP
        # rests below the ask (as on NSE). Now the entry is priced at the ask of a quote read just
        # before the send (one level covers these quantities), within ENTRY_SLIPPAGE_PERCENT
        # (0.5 %) of that LTP, and fills; floor(cash x 50 % / 2 / price) shares at most.
        rec_order = {o["ticker"]: o for o in records(desk, "Som")[-1]["orders"]}[sym]
        ltp = out["planned"][sym]["ltp"]
        assert on_tick(order["price"], 0.05) and order["price"] == rec_order["best_ask"] == p["limit_price"]
        assert order["price"] <= round(ltp * 1.005, 2)
        # ... at most MAX_POSITION_PERCENT (20 %) of the bot's equity (here all cash), sized down to it
        assert order["quantity"] == min(rec_order["planned_quantity"], math.floor(cash * 0.5 / 2 / order["price"]),
                                        math.floor(cash * 0.2 / order["price"]))
        assert order["status"] == "COMPLETE" and order["average_price"] <= order["price"]

    rec = records(desk, "Som")[-1]
    assert rec["user_profile"] == "Som" and rec["brooks_file_used"] == "pattern_daily_20260302.csv"
    assert rec["available_capital"] == cash and rec["usable_capital"] == cash * 0.5
    assert rec["total_orders_attempted"] == 2 and rec["successful_orders"] == 2
    for o in rec["orders"]:
        assert set(o) >= {"ticker", "stop_loss", "target_price", "current_price", "position_size",
                          "investment_amount", "order_success", "error_message", "order_id", "tag"}
        assert o["order_success"] is True and o["error_message"] is None
        assert o["investment_amount"] == pytest.approx(o["position_size"] * o["limit_price"])
    positions = desk.state("Som")["positions"]
    assert set(positions) == {"INFY", "TCS"}
    assert positions["INFY"]["quantity"] == placed["INFY"]["quantity"]
    assert positions["INFY"]["stop_loss"] == 1000 and positions["INFY"]["target_price"] == 1250
    assert positions["INFY"]["order_id"] == placed["INFY"]["order_id"]

    before = desk.audit_len()
    again = desk.ok("Som", JOB)
    assert again["placed"] == [] and desk.writes(before) == []
    assert set(again["skipped"]) >= {"INFY", "TCS"}
    assert len(records(desk, "Som")) == 2 and records(desk, "Som")[-1]["total_orders_attempted"] == 0


@dataclass
class LimitsReplay:
    """What the pause/limits day left, one field per step (each row's test asserts on its own)."""

    users: list[str]
    pause_rc: int
    pause_reason: str
    paused_run: dict[str, Any]
    paused_writes: list[dict[str, Any]]
    paused_record: dict[str, Any]
    pause_all_rc: int
    flagged_after_pause_all: dict[str, bool]
    resume_all_rc: int
    pause_again_rc: int
    run_while_paused_again: dict[str, Any]
    resume_rc: int
    flag_after_resume: bool
    resumed_run: dict[str, Any]
    writes_since_pause: list[dict[str, Any]]
    sai_run: dict[str, Any]
    sai_writes: list[dict[str, Any]]
    sai_record: dict[str, Any]
    raj_run: dict[str, Any]
    raj_stops: dict[str, float]
    ana_ltp_at_confirm: float
    ana_rc: int
    ana_run: dict[str, Any]
    ana_writes: list[dict[str, Any]]


@pytest.fixture(scope="module")
def limits(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LimitsReplay]:
    """One day of four users, replayed once for the pause and pre-trade limit rows:

    Som: paused (one user, then --all, then resume), then resumed: the day's plan completes.
    Sai: MAX_ORDER_VALUE 20,000 against ~2 lakh entries: sized down to fit, not refused.
    Raj: RISK_PER_TRADE_PERCENT 0.1: shares capped by (limit - stop) x shares <= 0.1 % of equity.
    Ana: a --confirm plan shown at ~1400 and confirmed after RELIANCE jumped to ~1500: refused
         by the price band as a stale plan, not bought 7 % higher.
    """
    from tests.support.broker import start_broker

    tmp_path = tmp_path_factory.mktemp("limits")
    brokers: list[RunningBroker] = []

    def factory(home: Any, **kwargs: Any) -> RunningBroker:
        brokers.append(start_broker(home, **kwargs))
        return brokers[-1]

    try:
        yield _run_limits(tmp_path, factory)
    finally:
        for broker in brokers:
            broker.stop()


def _run_limits(tmp_path: Path, factory: Callable[..., RunningBroker]) -> LimitsReplay:
    users: dict[str, dict[str, object]] = {
        "Som": {}, "Sai": {"MAX_ORDER_VALUE": 20000}, "Raj": {"RISK_PER_TRADE_PERCENT": 0.1}, "Ana": {},
    }
    scenario = {"paths": [{"symbol": "RELIANCE", "date": DAY_A.date().isoformat(),
                           "waypoints": [["09:15", 1400.0], ["10:10", 1400.0], ["10:30", 1500.0]]}]}
    desk = open_desk(tmp_path, factory, users, DAY_A, SYMBOLS, scenario)
    rows = [scan_row("INFY", 6, 1095, 1000, 1250), scan_row("TCS", 5, 2600, 2400, 3000)]
    for user in ("Som", "Sai"):
        desk.write_scan(user, PREV_SESSION, rows)
    stops = {s: round(desk.ltp("Raj", s) * 0.95, 1) for s in ("INFY", "TCS")}
    desk.write_scan("Raj", PREV_SESSION, [scan_row(s, 6, desk.ltp("Raj", s), stop, stop * 1.3)
                                          for s, stop in stops.items()])

    # Som: pause, pause --all, resume --all, pause, resume.
    pause_rc = desk.orchestrator("pause", "Som", "--reason", "testing the brakes").returncode
    pause_reason = json.loads((desk.home.user_data_dir("Som") / "paused").read_text())["reason"]
    before = desk.audit_len()
    paused_run = desk.ok("Som", JOB)
    paused_writes = desk.writes(before)
    paused_record = records(desk, "Som")[-1]
    pause_all_rc = desk.orchestrator("pause", "--all").returncode
    flagged = {u: (desk.home.user_data_dir(u) / "paused").exists() for u in users}
    resume_all_rc = desk.orchestrator("resume", "--all").returncode
    pause_again_rc = desk.orchestrator("pause", "Som").returncode
    run_while_paused_again = desk.ok("Som", JOB)
    resume_rc = desk.orchestrator("resume", "Som").returncode
    flag_after_resume = (desk.home.user_data_dir("Som") / "paused").exists()
    resumed_run = desk.ok("Som", JOB)
    writes_since_pause = desk.writes(before)

    # Sai: MAX_ORDER_VALUE.
    before = desk.audit_len()
    sai_run = desk.ok("Sai", JOB)
    sai_writes = desk.writes(before)
    sai_record = records(desk, "Sai")[-1]

    # Raj: RISK_PER_TRADE_PERCENT.
    raj_run = desk.ok("Raj", JOB)

    # Ana: the plan is shown at 10:12 (RELIANCE ~1400); while the person thinks, it jumps to ~1500.
    manual = tmp_path / "pick.csv"
    manual.write_text("ticker,stop_loss,target_price\nRELIANCE,1300,1600\n", encoding="utf-8")
    desk.at(DAY_A.replace(minute=12))
    env = child_env(desk.home, TRADER_CLOCK=desk.clock_value, PYTHONPATH=str(PROJECT_ROOT))
    proc = subprocess.Popen([str(VENV_PYTHON), "-m", "workers", JOB, "--user", "Ana", "--confirm", "--json",
                             "--from", str(manual)], cwd=PROJECT_ROOT, env=env, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdin is not None and proc.stderr is not None
    stdout = proc.stdout
    shown: list[str] = []
    reader = threading.Thread(target=lambda: shown.extend(iter(lambda: stdout.read(1), "")), daemon=True)
    reader.start()
    deadline = time.monotonic() + 60
    while "(y/n)" not in "".join(shown):
        assert proc.poll() is None, f"exited early: {''.join(shown)} {proc.stderr.read()}"
        assert time.monotonic() < deadline, "no confirmation prompt"
        time.sleep(0.02)
    before = desk.audit_len()
    desk.at(DAY_A.replace(minute=40))
    ana_ltp = desk.ltp("Ana", "RELIANCE")
    proc.stdin.write("y\n")
    proc.stdin.close()
    ana_rc = proc.wait(60)
    reader.join(10)
    return LimitsReplay(
        list(users), pause_rc, pause_reason, paused_run, paused_writes, paused_record, pause_all_rc, flagged,
        resume_all_rc, pause_again_rc, run_while_paused_again, resume_rc, flag_after_resume, resumed_run,
        writes_since_pause, sai_run, sai_writes, sai_record, raj_run, stops, ana_ltp, ana_rc,
        last_json("".join(shown)), desk.writes(before))


def test_pause_refuses_every_entry_and_says_so(limits: LimitsReplay) -> None:
    assert limits.pause_rc == 0 and limits.pause_reason == "testing the brakes"
    out = limits.paused_run
    assert out["placed"] == [] and set(out["refused"]) == {"INFY", "TCS"}
    assert all("paused" in reason for reason in out["refused"].values())
    assert limits.paused_writes == []
    rec = limits.paused_record
    assert rec["paused"] is True and all("paused" in o["error_message"] for o in rec["orders"])


def test_pause_all_flags_everyone_and_resume_user_lifts_one(limits: LimitsReplay) -> None:
    assert limits.pause_all_rc == 0 and limits.flagged_after_pause_all == dict.fromkeys(limits.users, True)
    assert limits.resume_all_rc == 0 and limits.pause_again_rc == 0
    assert limits.run_while_paused_again["placed"] == []
    assert limits.resume_rc == 0 and not limits.flag_after_resume


def test_the_run_after_resume_completes_the_days_plan(limits: LimitsReplay) -> None:
    assert {p["symbol"] for p in limits.resumed_run["placed"]} == {"INFY", "TCS"}
    assert [w["path"] for w in limits.writes_since_pause].count("/orders/regular") == 2


def test_max_order_value_sizes_entries_down_instead_of_refusing(limits: LimitsReplay) -> None:
    # ~2 lakh entries against a 20,000 cap are sized down to fit, not refused (issue 18).
    out = limits.sai_run
    assert {p["symbol"] for p in out["placed"]} == {"INFY", "TCS"} and out["refused"] == {}
    for p in out["placed"]:
        assert p["quantity"] == math.floor(20_000 / p["limit_price"]) > 0
    assert [w["path"] for w in limits.sai_writes].count("/orders/regular") == 2  # (and the stops at the fills)
    assert all("sized down" in o["sized_down"] and "MAX_ORDER_VALUE" in o["sized_down"]
               for o in limits.sai_record["orders"])


def test_risk_per_trade_caps_the_shares_by_the_distance_to_the_stop(limits: LimitsReplay) -> None:
    out = limits.raj_run
    assert {p["symbol"] for p in out["placed"]} == {"INFY", "TCS"}
    for p in out["placed"]:
        budget_shares = math.floor(1_000_000 * 0.5 / 2 / p["limit_price"])
        capped = math.floor(1_000_000 * 0.001 / (p["limit_price"] - limits.raj_stops[p["symbol"]]))
        assert p["quantity"] == capped < budget_shares


def test_a_plan_confirmed_after_the_price_jumped_is_refused_by_the_price_band(limits: LimitsReplay) -> None:
    # The fresh ask is 6-7 % from the LTP the plan was sized on and confirmed at: a stale plan.
    assert limits.ana_ltp_at_confirm >= 1450 and limits.ana_rc == 0
    assert limits.ana_run["placed"] == [] and "sanity band" in limits.ana_run["refused"]["RELIANCE"]
    assert limits.ana_writes == []


def _confirm_later(desk: Desk, user: str, args: list[str], then: datetime) -> dict[str, Any]:
    """Run with --confirm: wait for the prompt (the plan is sized), move the clock to ``then``, say y."""
    env = child_env(desk.home, TRADER_CLOCK=desk.clock_value, PYTHONPATH=str(PROJECT_ROOT))
    proc = subprocess.Popen([str(VENV_PYTHON), "-m", "workers", JOB, "--user", user, "--confirm", "--json", *args],
                            cwd=PROJECT_ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    shown: list[str] = []
    reader = threading.Thread(target=lambda: shown.extend(iter(lambda: proc.stdout.read(1), "")), daemon=True)
    reader.start()
    deadline = time.monotonic() + 60
    while "(y/n)" not in "".join(shown):
        assert proc.poll() is None, f"exited early: {''.join(shown)} {proc.stderr.read()}"
        assert time.monotonic() < deadline, "no confirmation prompt"
        time.sleep(0.02)
    desk.at(then)
    proc.stdin.write("y\n")
    proc.stdin.close()
    assert proc.wait(60) == 0, proc.stderr.read()
    reader.join(10)
    return last_json("".join(shown))


def test_a_stale_plan_is_priced_at_the_fresh_ask_and_a_thin_stock_beyond_the_slippage_cap_is_skipped(
        tmp_path: Path, broker_factory: Callable[..., RunningBroker]) -> None:  # noqa: F811
    day = DAY_A.date().isoformat()
    # INFY rises 1 % between the plan (10:12) and the send (10:40); SBIN is a thin stock all day:
    # a 600-tick (Rs 30) spread and 200 shares a minute, so its ask sits ~2 % above its LTP.
    scenario = {"paths": [{"symbol": "INFY", "date": day, "waypoints": [["09:15", 1500.0], ["10:10", 1500.0],
                                                                        ["10:30", 1515.0], ["15:29", 1515.0]]}],
                "market": [{"symbol": "SBIN", "date": day, "from": "09:15", "to": "15:29", "spread_ticks": 600,
                            "volume": 200}]}
    desk = open_desk(tmp_path, broker_factory, {"Ana": {"CAPITAL_DEPLOYMENT_PERCENT": 40}}, DAY_A, SYMBOLS, scenario)
    pick = tmp_path / "pick.csv"
    pick.write_text("ticker,stop_loss,target_price\nINFY,1400,1700\nSBIN,500,1200\n", encoding="utf-8")
    desk.at(DAY_A.replace(minute=12))
    planned_ltp = desk.ltp("Ana", "INFY")
    assert 1495 <= planned_ltp <= 1505
    before = desk.audit_len()
    out = _confirm_later(desk, "Ana", ["--from", str(pick)], DAY_A.replace(minute=40))
    fresh = desk.ltp("Ana", "INFY")
    assert fresh >= planned_ltp * 1.009

    # INFY: at the fresh ask (within 0.5 % of the fresh LTP), not at the plan's LTP, which now
    # lies more than 0.5 % under the market and would rest unfilled; fewer shares for the budget.
    [placed] = out["placed"]
    [order] = book_by_tag(desk.kite("Ana"))[placed["tag"]]
    rec = {o["ticker"]: o for o in records(desk, "Ana")[-1]["orders"]}
    budget = 1_000_000 * 0.4 / 2
    assert placed["symbol"] == "INFY" and order["price"] == rec["INFY"]["best_ask"] == placed["limit_price"]
    assert fresh <= order["price"] <= round(fresh * 1.005, 2) and order["price"] > planned_ltp * 1.005
    assert rec["INFY"]["planned_quantity"] == math.floor(budget / planned_ltp)  # the plan: sized at 10:12
    assert order["quantity"] == math.floor(budget / order["price"]) < rec["INFY"]["planned_quantity"]
    assert order["status"] == "COMPLETE" and order["filled_quantity"] == order["quantity"]

    # SBIN: skipped with the reason, nothing sent for it.
    assert out["refused"]["SBIN"].startswith("refused: ask ")
    assert "above slippage cap" in out["refused"]["SBIN"]
    assert rec["SBIN"]["order_success"] is False and rec["SBIN"]["refusals"][0].startswith("ask ")
    # (and the stop GTT of INFY's fill: tests/integration/jobs/test_stop_at_fill.py)
    assert [w["path"] for w in desk.writes(before) if w["path"].startswith("/orders")] == ["/orders/regular"]


def test_an_entry_re_sent_after_a_crash_is_priced_fresh_and_its_intent_says_what_was_sent(
        tmp_path: Path, broker_factory: Callable[..., RunningBroker]) -> None:  # noqa: F811
    day = DAY_A.date().isoformat()
    scenario = {"paths": [{"symbol": "TCS", "date": day, "waypoints": [["09:15", 3000.0], ["10:10", 3000.0],
                                                                       ["10:30", 3030.0], ["15:29", 3030.0]]}]}
    # MAX_POSITION_PERCENT 100: the plan is sized by the budget alone, which the fresh price then cuts.
    desk = open_desk(tmp_path, broker_factory, {"Som": {"MAX_POSITION_PERCENT": 100}}, DAY_A, SYMBOLS, scenario)
    desk.write_scan("Som", PREV_SESSION, [scan_row("INFY", 6, 1095, 1000, 1250), scan_row("TCS", 5, 3000, 2800, 3400)])
    tag = make_tag("Som", JOB, DAY_A.date(), "TCS", "entry")
    killed = desk.run("Som", JOB, fault="after_intent:TCS")
    assert killed.returncode == -9, killed.stderr
    first = desk.state("Som")["intents"][tag]
    planned = desk.state("Som")["entry_plans"][f"{day}|pattern_daily_20260302.csv"]["entries"]["TCS"]["quantity"]
    assert first["status"] == "pending" and first["params"]["quantity"] == planned

    desk.at(DAY_A.replace(minute=40))  # TCS is 1 % higher when the rerun sends it
    out = desk.ok("Som", JOB)
    assert [p["symbol"] for p in out["placed"]] == ["TCS"]
    [order] = book_by_tag(desk.kite("Som"))[tag]
    intent = desk.state("Som")["intents"][tag]
    # The intent records what was actually sent (written before the call), not the crashed run's price.
    assert intent["status"] == "sent" and intent["broker_id"] == order["order_id"]
    assert (intent["params"]["price"], intent["params"]["quantity"]) == (order["price"], order["quantity"])
    assert order["price"] > first["params"]["price"] * 1.005
    # the plan's quantity at most; the budget at the new price cuts it
    assert order["quantity"] == min(planned, math.floor(1_000_000 * 0.5 / 2 / order["price"])) < planned
    assert order["status"] == "COMPLETE"


def test_a_kill_at_each_fault_point_and_a_rerun_leave_one_order_per_intent(
        tmp_path: Path, broker_factory: Callable[..., RunningBroker]) -> None:  # noqa: F811
    desk = open_desk(tmp_path, broker_factory, {"Som": {}, "Sai": {}}, DAY_A, SYMBOLS)
    rows = [scan_row("INFY", 6, 1095, 1000, 1250), scan_row("TCS", 5, 2600, 2400, 3000),
            scan_row("SBIN", 5, 930, 880, 1000)]
    faults = {"Som": "after_intent:TCS", "Sai": "after_send:TCS"}
    for user, fault in faults.items():
        desk.write_scan(user, PREV_SESSION, rows)
        killed = desk.run(user, JOB, fault=fault)
        assert killed.returncode == -9, killed.stderr
        first = desk.state(user)["entry_plans"]
        out = desk.ok(user, JOB)
        assert desk.state(user)["entry_plans"] == first  # the rerun completed the first plan
        book = book_by_tag(desk.kite(user))
        for sym in ("INFY", "TCS", "SBIN"):
            tag = make_tag(user, JOB, DAY_A.date(), sym, "entry")
            assert len(book[tag]) == 1, (user, sym, book.get(tag))
            assert desk.state(user)["intents"][tag]["status"] == "sent"
        assert sum(len(v) for v in book.values()) == 3
        # Sized as the first run sized them: cash x 50 % / 3 each, not the rerun's leftover cash.
        for o in (o for v in book.values() for o in v):
            assert o["quantity"] == math.floor(1_000_000 * 0.5 / 3 / o["price"])
        assert desk.ok(user, JOB)["placed"] == []
        assert {p["symbol"] for p in out["placed"]} <= {"TCS", "SBIN"}


def test_a_symbol_4_percent_above_its_scan_entry_or_under_its_stop_is_skipped_with_the_reason(desk: Desk) -> None:
    desk.at(DAY_A)
    ltp = {s: desk.ltp("Som", s) for s in ("INFY", "SBIN", "RELIANCE")}
    desk.write_scan("Som", PREV_SESSION, [
        scan_row("INFY", 6, ltp["INFY"], round(ltp["INFY"] * 0.93, 1), ltp["INFY"] * 1.2),
        # SBIN opened 4 % above the close the scan entered at: the risk to its stop is not the scan's.
        scan_row("SBIN", 6, round(ltp["SBIN"] / 1.04, 2), round(ltp["SBIN"] * 0.9, 1), ltp["SBIN"] * 1.2),
        # RELIANCE already trades under the scan's stop: the setup failed before the entry.
        scan_row("RELIANCE", 6, round(ltp["RELIANCE"] * 1.01, 2), round(ltp["RELIANCE"] * 1.005, 1),
                 ltp["RELIANCE"] * 1.2),
    ])
    before = desk.audit_len()
    out = desk.ok("Som", JOB)
    assert [p["symbol"] for p in out["placed"]] == ["INFY"]
    assert out["refused"]["SBIN"].startswith("skipped: gapped up: LTP ")
    assert "above the scan's entry" in out["refused"]["SBIN"] and "ENTRY_MAX_GAP_PERCENT 3" in out["refused"]["SBIN"]
    assert out["refused"]["RELIANCE"].startswith("skipped: below the scan's stop")
    rec = {o["ticker"]: o for o in records(desk, "Som")[-1]["orders"]}
    assert rec["SBIN"]["order_success"] is False and rec["SBIN"]["refusals"][0].startswith("gapped up")
    assert rec["RELIANCE"]["error_message"].startswith("skipped: below the scan's stop")
    assert [w["path"] for w in desk.writes(before) if w["path"].startswith("/orders")] == ["/orders/regular"]


def test_from_file_json_ticker_list_and_held_symbols_are_skipped(desk: Desk, tmp_path: Path) -> None:
    desk.at(DAY_A)
    pick = tmp_path / "pick.json"
    pick.write_text(json.dumps(["SBIN", {"ticker": "INFY", "stop": 1.0}]), encoding="utf-8")
    out = desk.ok("Som", JOB, "--from", str(pick))
    assert [p["symbol"] for p in out["placed"]] == ["SBIN", "INFY"]
    for p in out["placed"]:
        assert p["quantity"] == min(math.floor(1_000_000 * 0.5 / 2 / p["limit_price"]),
                                    math.floor(1_000_000 * 0.2 / p["limit_price"]))  # MAX_POSITION_PERCENT
    # Another file the same day: held symbols are skipped, the new one is entered.
    other = tmp_path / "other.csv"
    other.write_text("symbol\nINFY\nTCS\n", encoding="utf-8")
    again = desk.ok("Som", JOB, "--from", str(other))
    assert again["skipped"] == {"INFY": "already held"}
    assert [p["symbol"] for p in again["placed"]] == ["TCS"]


def test_open_buy_orders_take_position_slots_across_runs(tmp_path: Path,
                                                         broker_factory: Callable[..., RunningBroker]) -> None:  # noqa: F811
    desk = open_desk(tmp_path, broker_factory, {"Som": {"MAX_CNC_POSITIONS": 2}}, DAY_A, SYMBOLS)
    # An earlier entry that has not filled yet: a BUY LIMIT resting below the market.
    price = round(desk.ltp("Som", "INFY") * 0.97, 1)
    desk.kite("Som").place_order("regular", exchange="NSE", tradingsymbol="INFY", transaction_type="BUY",
                                 quantity=1, product="CNC", order_type="LIMIT", price=price)
    assert [o["status"] for o in desk.kite("Som").orders()] == ["OPEN"]
    pick = tmp_path / "pick.csv"
    pick.write_text("ticker\nTCS\nSBIN\nRELIANCE\n", encoding="utf-8")
    out = desk.ok("Som", JOB, "--from", str(pick))
    # 1 pending + 1 new = MAX_CNC_POSITIONS 2: one slot was left, not two.
    assert [p["symbol"] for p in out["placed"]] == ["TCS"]
    assert out["skipped"]["SBIN"].startswith("MAX_CNC_POSITIONS 2 reached (1 held or pending")
    assert set(out["skipped"]) == {"SBIN", "RELIANCE"}


def test_an_unconfirmed_intent_from_an_earlier_day_blocks_its_symbol(desk: Desk) -> None:
    desk.at(DAY_A)
    desk.write_scan("Som", PREV_SESSION, [scan_row("INFY", 6, 1500, 1, 1700), scan_row("TCS", 5, 3000, 1, 3400)])
    old = make_tag("Som", JOB, PREV_SESSION, "INFY", "entry")
    with StateStore(desk.home, "Som", "paper").transaction() as state:
        state["intents"][old] = {
            "tag": old, "kind": "order", "symbol": "INFY", "purpose": "entry", "job": JOB,
            "session": PREV_SESSION.isoformat(), "placed_on": PREV_SESSION.isoformat(), "params": {},
            "status": "pending", "broker_id": None, "order_status": None, "created_at": "2026-03-02T09:20:00+05:30",
            "updated_at": "2026-03-02T09:20:00+05:30", "note": ""}
    out = desk.ok("Som", JOB)
    assert out["skipped"]["INFY"].startswith("blocked")
    assert [p["symbol"] for p in out["placed"]] == ["TCS"]
    assert desk.state("Som")["intents"][old]["status"] == "unresolved"
    assert [o["tradingsymbol"] for o in desk.kite("Som").orders()] == ["TCS"]


class LosingProxy:
    """Forwards HTTP to the broker; for the first ``POST /orders/regular`` it forwards the request
    and then hangs up without answering: the order exists, the worker never hears its id."""

    def __init__(self, target: str) -> None:
        import http.server

        import requests

        proxy = self
        self.dropped = 0

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
                r = requests.request(self.command, target + self.path, data=body, headers=headers,
                                     allow_redirects=False, timeout=30)
                if self.command == "POST" and self.path.startswith("/orders/") and proxy.dropped == 0:
                    proxy.dropped += 1
                    self.close_connection = True
                    return
                self.send_response(r.status_code)
                for k, v in r.headers.items():
                    if k.lower() not in ("content-length", "transfer-encoding", "connection", "content-encoding"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(r.content)))
                self.end_headers()
                self.wfile.write(r.content)

            do_GET = do_POST = do_PUT = do_DELETE = _forward

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_a_write_whose_answer_is_lost_is_found_by_its_tag_and_not_resent(desk: Desk) -> None:
    desk.at(DAY_A)
    desk.write_scan("Som", PREV_SESSION, [scan_row("INFY", 6, 1500, 1, 1700), scan_row("TCS", 5, 3000, 1, 3400)])
    proxy = LosingProxy(desk.broker.url)
    try:
        write_env(desk.home, "Som", KITE_ROOT=proxy.url)
        out = desk.ok("Som", JOB)
    finally:
        proxy.close()
    assert proxy.dropped == 1
    assert {p["symbol"] for p in out["placed"]} == {"INFY", "TCS"}
    book = book_by_tag(desk.kite("Som"))
    assert sorted(len(v) for k, v in book.items()) == [1, 1]
    assert [w["path"] for w in desk.writes()].count("/orders/regular") == 2


# --- pure parts: --from files, manual selection, the pause flag -----------------------------------













