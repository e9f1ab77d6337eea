"""adopt and release (issue 18) in real worker processes against the real paper broker (real
kiteconnect, a file clock): bad input changes nothing; a kill between the ledger and the GTT write
(adopt) or between the GTT and the ledger write (release), then a rerun, completes the change
once; each step is reflected in the GTT list and the ledger."""

from __future__ import annotations

import json
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kitefleet.state import StateStore
from kitefleet.ticks import round_to_tick
from tests.integration.jobs.test_ownership import _gtt_qty, _hand
from tests.integration.jobs.test_place_orders_daily import Desk, last_json, open_desk
from tests.integration.jobs.test_update_cnc_stoploss import SCENARIO, SYMBOLS, A, P, _active, _at
from tests.support.broker import RunningBroker, broker_factory  # noqa: F401 (fixture)
from workers.intents import IntentLog, make_tag, send_order_once
from workers.ledger import owned_quantities


def _ledger(desk: Desk) -> dict[str, Any]:
    return desk.state("Som").get("ledger") or {}


def _gtt_writes(desk: Desk, since: int) -> list[tuple[str, str]]:
    return [(w["method"], w["path"]) for w in desk.writes(since) if w["path"].startswith("/gtt")]


def test_adopt_and_release_with_kills_between_the_writes_and_bad_input_changing_nothing(
        tmp_path: Path, broker_factory: Callable[..., RunningBroker]) -> None:  # noqa: F811
    desk = open_desk(tmp_path, broker_factory, {"Som": {}}, _at(P, 10, 5), SYMBOLS, SCENARIO)
    _hand(desk, "Som", "SBIN", "BUY", 40)  # a person's long-term shares
    desk.at(_at(A, 10, 5))
    ltp = desk.ltp("Som", "SBIN")

    # Bad input: one line, exit 2 (unknown user: the orchestrator's own refusal), nothing changed.
    before, state_before = desk.audit_len(), desk.home.state_file("Som").read_bytes() \
        if desk.home.state_file("Som").exists() else b""
    for args, text in ((["adopt", "Som", "NOPE"], "NOPE: not held"),
                       (["adopt", "Som", "SBIN", "--quantity", "41"], "--quantity 41 is not between 1 and 40"),
                       (["adopt", "Som", "SBIN", "--stop", str(ltp + 1)], "is not below the LTP"),
                       (["release", "Som", "SBIN"], "the bot owns no SBIN shares")):
        proc = desk.orchestrator(*args)
        assert proc.returncode == 2 and text in proc.stderr, (args, proc.returncode, proc.stderr)
    proc = desk.orchestrator("adopt", "Zed", "SBIN")
    assert proc.returncode == 2 and "Zed" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert _gtt_writes(desk, before) == [] and not _active(desk, "Som")
    assert owned_quantities(_ledger(desk)) == {}
    assert not state_before or json.loads(state_before).get("stops") == desk.state("Som").get("stops")

    # adopt 30, killed after the ledger write, before the GTT: the rerun places the stop once.
    killed = desk.run("Som", "adopt", "SBIN", "--quantity", "30", "--json", fault="after_ledger:SBIN")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert owned_quantities(_ledger(desk)) == {"SBIN": 30} and _ledger(desk)["pending"]["SBIN"]["op"] == "adopt"
    assert not _active(desk, "Som")
    before = desk.audit_len()
    rerun = desk.run("Som", "adopt", "SBIN", "--json")  # its arguments are not used: the marker is
    assert rerun.returncode == 0, rerun.stderr
    row = last_json(rerun.stdout)
    assert (row["symbol"], row["owned"], row["held"]) == ("SBIN", 30, 40) and row["lots"][0]["source"] == "adopted"
    assert _gtt_qty(desk, "Som") == {"SBIN": [30]} and _gtt_writes(desk, before) == [("POST", "/gtt/triggers")]
    assert "pending" not in _ledger(desk) or not _ledger(desk)["pending"]
    gtt_id = row["gtt_id"]
    # status's figures: the bot's 30 apart from the person's 10 it leaves alone
    summary = last_json(desk.run("Som", "summary").stdout)
    assert summary["owned"] == {"SBIN": 30} and summary["not_managed"] == 1 and summary["unprotected"] == {}
    assert summary["not_managed_value"] == round(summary["owned_value"] / 3, 2)
    assert desk.state("Som")["stops"]["SBIN"]["gtt_id"] == gtt_id

    # adopt the other 10 at a stop of the person's: the same GTT is extended, nothing placed.
    stop = round(ltp * 0.9, 1)
    proc = desk.orchestrator("adopt", "Som", "SBIN", "--stop", str(stop))
    assert proc.returncode == 0, proc.stderr
    assert "owned 40 of 40 held" in proc.stdout
    (g,) = _active(desk, "Som")["SBIN"]
    assert g["id"] == gtt_id and g["orders"][0]["quantity"] == 40 and g["condition"]["trigger_values"] == [stop]
    assert desk.orchestrator("adopt", "Som", "SBIN").returncode == 2  # nothing left to adopt

    # release 25, killed after the GTT change, before the ledger: the rerun writes the ledger,
    # and changes the GTT no further.
    killed = desk.run("Som", "release", "SBIN", "--quantity", "25", "--json", fault="after_send:SBIN")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert _gtt_qty(desk, "Som") == {"SBIN": [15]} and owned_quantities(_ledger(desk)) == {"SBIN": 40}
    before = desk.audit_len()
    rerun = desk.run("Som", "release", "SBIN", "--json")
    assert rerun.returncode == 0, rerun.stderr
    assert last_json(rerun.stdout)["owned"] == 15 and owned_quantities(_ledger(desk)) == {"SBIN": 15}
    assert _gtt_writes(desk, before) == [] and _gtt_qty(desk, "Som") == {"SBIN": [15]}
    # newest lots first: the 10 adopted second are gone, 15 of the first 30 remain
    assert [lot["quantity"] for lot in _ledger(desk)["lots"]["SBIN"]] == [15]

    # release the rest: the bot's GTT is deleted, the ledger and the stop record forget SBIN.
    proc = desk.orchestrator("release", "Som", "SBIN", "--json")
    assert proc.returncode == 0, proc.stderr
    assert not _active(desk, "Som") and desk.kite("Som").get_gtt(gtt_id)["status"] == "deleted"
    assert owned_quantities(_ledger(desk)) == {} and "SBIN" not in (desk.state("Som").get("stops") or {})


def test_release_refused_while_a_bot_sell_is_open(
        tmp_path: Path, broker_factory: Callable[..., RunningBroker]) -> None:  # noqa: F811
    """Issue 18: an exit in flight would sell shares the person took back, so release waits for it.
    A watchdog exit of 10 of the 40 SBIN the bot owns rests open above the market: release (all,
    or some) exits 2 with one line and changes nothing; once the exit is cancelled it goes through."""
    desk = open_desk(tmp_path, broker_factory, {"Som": {}}, _at(P, 10, 5), SYMBOLS, SCENARIO)
    _hand(desk, "Som", "SBIN", "BUY", 40)
    desk.at(_at(A, 10, 5))
    assert desk.orchestrator("adopt", "Som", "SBIN").returncode == 0
    (gtt,) = _active(desk, "Som")["SBIN"]
    tag = make_tag("Som", "hourly_candle_watchdog", A, "SBIN", "exit")
    params = {"variety": "regular", "exchange": "NSE", "tradingsymbol": "SBIN", "transaction_type": "SELL",
              "quantity": 10, "product": "CNC", "order_type": "LIMIT", "validity": "DAY",
              "price": round_to_tick(desk.ltp("Som", "SBIN") * 1.03, 0.05, "floor")}
    exit_ = send_order_once(desk.kite("Som"), IntentLog(StateStore(desk.home, "Som", "paper")), tag, params,
                            purpose="exit", job="hourly_candle_watchdog", session=A)
    assert exit_.broker_id
    assert next(o for o in desk.kite("Som").orders() if o["order_id"] == exit_.broker_id)["status"] == "OPEN"

    before, state = desk.audit_len(), desk.state("Som")
    for args in (["release", "Som", "SBIN"], ["release", "Som", "SBIN", "--quantity", "5"]):
        proc = desk.orchestrator(*args)
        assert proc.returncode == 2, (args, proc.returncode, proc.stdout, proc.stderr)
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert "SBIN: refused: a SELL of the bot (10 shares) is open" in proc.stderr, proc.stderr
    assert desk.writes(before) == []  # no order or GTT write
    after = desk.state("Som")
    assert after["ledger"] == state["ledger"] and owned_quantities(after["ledger"]) == {"SBIN": 40}
    assert after["stops"] == state["stops"] and not (after["ledger"].get("pending") or {})
    assert _active(desk, "Som")["SBIN"] == [gtt]

    desk.kite("Som").cancel_order("regular", exit_.broker_id)  # the exit is done with: release goes through
    proc = desk.orchestrator("release", "Som", "SBIN")
    assert proc.returncode == 0, proc.stderr
    assert owned_quantities(desk.state("Som")["ledger"]) == {} and not _active(desk, "Som")
