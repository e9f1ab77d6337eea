"""``orchestrator.py halt USER --flatten`` (issue 20): the halt, then every position the bot owns
sold by the ``flatten`` job in a process of the user; a person's holding is never sold. Real
worker processes, the real kiteconnect client, the real paper broker, a file clock the test moves
(tests/jobs/test_watchdog.py's Paper).

    Som  10 INFY owned + 40 INFY bought by hand (a bot stop of 10, a person's stop of 40); 5 TCS
         owned with the bot's exit resting 3 % above the market and a bot stop; his watchdog runs.
         The flatten modifies the resting exit (no new TCS order) and sells the 10 INFY; the bot
         stops go once the shares are gone, the person's 40 and their stop stay.
    Ana  the same 10 + 40 INFY, halted after the close: nothing sold, "market closed", still halted.
"""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from kitefleet import halt
from kitefleet.state import StateStore
from kitefleet.ticks import round_to_tick
from tests.integration.jobs.test_watchdog import (
    DAY,
    JOB,
    PREV_DAY,
    SPEED,
    Paper,
    _paper_scenario,
    _path,
    at,
    papers,  # noqa: F401 (fixture)
    wait_for,
)
from tests.support.broker import RunningBroker, broker_factory  # noqa: F401 (fixture)
from tests.support.homes import PROJECT_ROOT, VENV_PYTHON, child_env
from workers.context import FAULT_ENV
from workers.intents import IntentLog, make_tag, send_order_once
from workers.ledger import owned_quantities
from workers.portfolio import held_quantities, snapshot

FLAT = [["09:15", 1500], ["15:29", 1500]]
TCS_FLAT = [["09:15", 3100], ["15:29", 3100]]
SCENARIO = {"paths": [_path("INFY", PREV_DAY, FLAT), _path("INFY", DAY, FLAT),
                      _path("TCS", PREV_DAY, TCS_FLAT), _path("TCS", DAY, TCS_FLAT)]}


def orchestrator(paper: Paper, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = child_env(paper.home, TRADER_CLOCK=paper.clock_value, PYTHONPATH=str(PROJECT_ROOT))
    return subprocess.run([str(VENV_PYTHON), str(PROJECT_ROOT / "orchestrator.py"), *args], cwd=PROJECT_ROOT,
                          env=env, capture_output=True, text=True, timeout=180, input=stdin)


def run_job(paper: Paper, user: str, job: str, *args: str,
            fault: str | None = None) -> subprocess.CompletedProcess[str]:
    env = child_env(paper.home, TRADER_CLOCK=paper.clock_value, PYTHONPATH=str(PROJECT_ROOT))
    if fault:
        env[FAULT_ENV] = fault
    return subprocess.run([str(VENV_PYTHON), "-m", "workers", job, "--user", user, *args], cwd=PROJECT_ROOT,
                          env=env, capture_output=True, text=True, timeout=180)


def _owned_and_persons(paper: Paper, user: str) -> tuple[int, int]:
    """10 INFY the bot owns and 40 a person bought (each with its stop GTT); (bot stop, person's)."""
    paper.buy(user, "INFY", 40, owned=False)
    paper.buy(user, "INFY", 10)
    bot_stop = paper.stop_gtt(user, "INFY", 10)
    persons = paper.stop_gtt(user, "INFY", 40)
    with StateStore(paper.home, user, "paper").transaction() as state:
        state.setdefault("stops", {})["INFY"] = {"gtt_id": bot_stop, "quantity": 10}
    return bot_stop, persons


def _writes(paper: Paper, user: str, since: Any) -> list[dict[str, Any]]:
    return [r for r in paper.broker.audit(since=since, api_key=paper.api_key(user))
            if r["method"] in ("POST", "PUT", "DELETE") and r["path"].startswith(("/orders", "/gtt"))]


def _held(paper: Paper, user: str) -> dict[str, int]:
    return held_quantities(snapshot(paper.kite(user)))


def test_halt_flatten_sells_owned_positions_only_and_leaves_a_persons_holding(
        tmp_path: Path, broker_factory: Callable[..., RunningBroker], papers: list[Paper]) -> None:  # noqa: F811
    paper = _paper_scenario(tmp_path, broker_factory, {"Som": {}, "Ana": {}}, SCENARIO, at("14:30", PREV_DAY))
    papers.append(paper)
    stops = {u: _owned_and_persons(paper, u) for u in ("Som", "Ana")}
    paper.buy("Som", "TCS", 5)
    tcs_stop = paper.stop_gtt("Som", "TCS", 5)
    with StateStore(paper.home, "Som", "paper").transaction() as state:
        state["stops"]["TCS"] = {"gtt_id": tcs_stop, "quantity": 5}

    paper.set_time(at("10:30"), SPEED)
    # The watchdog's exit of the 5 TCS, resting 3 % above the market (sent as the watchdog sends).
    tag = make_tag("Som", JOB, DAY, "TCS", "exit")
    above = round_to_tick(3100 * 1.03, 0.1, "floor")
    resting = send_order_once(paper.kite("Som"), IntentLog(StateStore(paper.home, "Som", "paper")), tag,
                              {"variety": "regular", "exchange": "NSE", "tradingsymbol": "TCS",
                               "transaction_type": "SELL", "quantity": 5, "product": "CNC", "order_type": "LIMIT",
                               "price": above, "validity": "DAY"}, purpose="exit", job=JOB, session=DAY)
    started = paper.broker.now()
    # The flatten first, the watchdog after: a running watchdog reprices an exit resting above the
    # market on its first poll, within milliseconds of its start (since the quote limit counts
    # market seconds at this clock's 60x), which would leave the flatten nothing to reprice.
    proc = orchestrator(paper, "halt", "Som", "--flatten", "--wait", "5", "--reason", "test")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Som: halted" in proc.stdout and "Som: selling 10 INFY, 5 TCS" in proc.stdout, proc.stdout
    assert "INFY: sold 10 of 10" in proc.stdout and "TCS: sold 5 of 5" in proc.stdout, proc.stdout
    assert halt.is_halted(paper.home, "Som")

    # TCS: the resting exit was modified down (one PUT), no second TCS order; INFY: one new exit of 10.
    sells = {s: paper.sells("Som", s) for s in ("INFY", "TCS")}
    assert [(o["order_id"], o["status"]) for o in sells["TCS"]] == [(resting.broker_id, "COMPLETE")]
    assert sells["TCS"][0]["price"] < above
    puts = [w for w in _writes(paper, "Som", started) if w["method"] == "PUT" and w["path"].startswith("/orders")]
    assert [w["path"] for w in puts] == [f"/orders/regular/{resting.broker_id}"]
    assert [(o["quantity"], o["status"], o["tag"]) for o in sells["INFY"]] == \
        [(10, "COMPLETE", make_tag("Som", JOB, DAY, "INFY", "exit"))]
    assert _held(paper, "Som") == {"INFY": 40}  # the person's 40 stay
    assert owned_quantities(StateStore(paper.home, "Som", "paper").read()["ledger"]) == {}
    # The stops stood until the shares were gone; then the bot's went, the person's stayed as it was.
    kite = paper.kite("Som")
    bot_stop, persons = stops["Som"]
    assert kite.get_gtt(bot_stop)["status"] == "deleted" and kite.get_gtt(tcs_stop)["status"] == "deleted"
    person = kite.get_gtt(persons)
    assert person["status"] == "active" and [o["quantity"] for o in person["orders"]] == [40]
    # Ordinary watchdog exit records, which the watchdog started now takes in and keeps.
    infy = paper.symbol_state("Som", "INFY")["exits"]
    assert [(e["purpose"], e["rule"], e["status"]) for e in infy] == [("exit", "flatten", "sent")]
    halted_at = paper.broker.now()
    watchdog = paper.start("Som")
    # its start has read the positions (the halt process had ended: these are the watchdog's reads)
    wait_for(lambda: [r for r in paper.broker.audit(since=halted_at, api_key=paper.api_key("Som"))
                      if r["path"] == "/portfolio/positions"], 30, "the watchdog's start")

    paper.set_time(at("15:29:45"), SPEED)
    code, _summary, err = paper.finish("Som")
    assert code == 0, err[-2000:]
    assert watchdog.returncode == 0
    assert len(paper.sells("Som", "INFY")) == 1 and len(paper.sells("Som", "TCS")) == 1  # nothing sold twice
    assert [(e["purpose"], e["rule"]) for e in paper.symbol_state("Som", "INFY")["exits"]] == [("exit", "flatten")]

    # After the close: Ana is halted, nothing is sold, the halt stays, and it says so.
    paper.set_time(at("15:45"), SPEED)
    since = paper.broker.now()
    proc = orchestrator(paper, "halt", "Ana", "--flatten")
    assert proc.returncode == 7, proc.stdout + proc.stderr
    assert "market closed" in proc.stdout and "Ana: halted" in proc.stdout, proc.stdout
    assert _writes(paper, "Ana", since) == [] and paper.sells("Ana", "INFY") == []
    assert halt.is_halted(paper.home, "Ana") and _held(paper, "Ana") == {"INFY": 50}


@pytest.mark.parametrize("fault", ["after_intent", "after_send"])
def test_halt_flatten_killed_mid_flatten_then_run_again_sells_once(
        tmp_path: Path, broker_factory: Callable[..., RunningBroker], papers: list[Paper],  # noqa: F811
        fault: str) -> None:
    paper = _paper_scenario(tmp_path, broker_factory, {"Som": {}}, SCENARIO, at("14:30", PREV_DAY))
    papers.append(paper)
    _owned_and_persons(paper, "Som")
    paper.set_time(at("11:00"), SPEED)
    halt.halt(paper.home, "Som", reason="test")
    killed = run_job(paper, "Som", "flatten", "--json", fault=f"{fault}:INFY")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    tag = make_tag("Som", JOB, DAY, "INFY", "exit")
    assert StateStore(paper.home, "Som", "paper").read()["intents"][tag]["status"] == "pending"
    assert len(paper.sells("Som", "INFY")) == (0 if fault == "after_intent" else 1)

    proc = orchestrator(paper, "halt", "Som", "--flatten", "--wait", "5")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # after_send: the killed run's exit had filled already; the rerun finds it by its tag
    assert ("INFY: sold 10 of 10" if fault == "after_intent" else "nothing the bot owns is held") in proc.stdout, \
        proc.stdout
    assert StateStore(paper.home, "Som", "paper").read()["intents"][tag]["status"] == "sent"
    sells = paper.sells("Som", "INFY")
    assert [(o["quantity"], o["status"], o["tag"]) for o in sells] == [(10, "COMPLETE", tag)]  # sold once
    assert _held(paper, "Som") == {"INFY": 40}


def test_all_flatten_needs_the_typed_word_or_yes(tmp_path: Path) -> None:
    from tests.support.homes import make_home, write_env

    home = make_home(tmp_path / "home")
    for user in ("Som", "Sai"):
        write_env(home, user)
    env = child_env(home, PYTHONPATH=str(PROJECT_ROOT))
    proc = subprocess.run([str(VENV_PYTHON), str(PROJECT_ROOT / "orchestrator.py"), "halt", "--all", "--flatten"],
                          cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=60, input="yes\n")
    assert proc.returncode == 2 and "not confirmed" in proc.stderr and "Type FLATTEN" in proc.stderr
    assert not halt.is_halted(home, "Som") and not halt.is_halted(home, "Sai")  # nothing halted either


def test_flatten_owned_outside_the_session_sends_nothing(tmp_path: Path) -> None:
    """What the loss limit calls with LOSS_LIMIT_ACTION=flatten: after the close, no broker call."""
    import logging
    import threading
    from datetime import date

    from kitefleet.calendar import NseCalendar
    from kitefleet.clock import SimulatedClock, parse_spec
    from tests.support.homes import make_home
    from workers.flatten import build_watchdog, flatten_owned

    class NoBroker:
        def __getattr__(self, name: str) -> Any:
            raise AssertionError(f"broker called outside the session: {name}")

    home = make_home(tmp_path / "home")
    clk = SimulatedClock(parse_spec(f"{at('15:31').isoformat()},speed=1"))
    wd = build_watchdog(user="Som", kite=NoBroker(), market=NoBroker(), store=StateStore(home, "Som", "paper"),
                        calendar=NseCalendar((PREV_DAY, DAY, date(2026, 3, 5))), clock=clk, settings={},
                        log=logging.getLogger("test"), stop=threading.Event())
    report = flatten_owned(wd, wait=timedelta(minutes=10), stop=threading.Event())
    assert report.market_closed and not report.done and report.symbols == []
