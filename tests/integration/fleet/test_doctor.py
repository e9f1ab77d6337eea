"""``orchestrator.py doctor`` on a healthy paper setup, then with each failure injected in turn. Real
paper broker, real per-user check processes, real files and locks. The clock is frozen at
Wednesday 2026-11-25 10:00 IST (a trading day) so market orders fill at once."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from kiteconnect import KiteConnect

from fleet.cli import main
from kitefleet.clock import IST
from kitefleet.home import Home
from kitefleet.state import StateStore
from tests.support.broker import RunningBroker, clock_file, start_broker
from tests.support.homes import make_home, write_env

NOW = datetime(2026, 11, 25, 10, 0, tzinfo=IST)
FROZEN = 1e-6


@pytest.fixture(scope="module")
def desk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Home, RunningBroker, str]]:
    root = tmp_path_factory.mktemp("doctor")
    home = make_home(root / "home")
    clock = clock_file(root / "clock", NOW, FROZEN)
    broker = start_broker(home, clock=clock, symbols=["INFY"])
    try:
        write_env(home, "Som", KITE_ROOT=broker.url)
        broker.reload_accounts()
        kite = broker.kite("Som")
        kite.place_order(variety="regular", exchange="NSE", tradingsymbol="INFY", transaction_type="BUY",
                         quantity=10, product="CNC", order_type="MARKET", market_protection=-1)
        ltp = kite.ltp("NSE:INFY")["NSE:INFY"]["last_price"]
        stop = round(ltp * 0.9, 1)
        kite.place_gtt("single", "INFY", "NSE", [stop], ltp, [
            {"exchange": "NSE", "tradingsymbol": "INFY", "transaction_type": "SELL", "quantity": 10,
             "order_type": "LIMIT", "product": "CNC", "price": round(stop * 0.95, 1)}])
        with StateStore(home, "Som", "paper").transaction() as state:
            state["positions"]["INFY"] = {"type": "LONG", "quantity": 10, "product_type": "CNC"}
            # The bot owns them (MANAGE_SCOPE=own): doctor's coverage is owed to owned shares.
            state["ledger"] = {"lots": {"INFY": [{"quantity": 10, "price": ltp, "date": "2026-11-25",
                                                  "source": "adopted"}]}, "applied": {}, "shortfalls": {}}
        yield home, broker, clock
    finally:
        broker.stop()


def doctor(home: Home, clock: str, monkeypatch: pytest.MonkeyPatch,
           capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[tuple[str, str], dict[str, str]]]:
    monkeypatch.setenv("KITEFLEET_HOME", str(home.root))
    monkeypatch.setenv("TRADER_CLOCK", clock)
    rc = main(["doctor", "--json"])
    data = json.loads(capsys.readouterr().out)
    return rc, {(r["user"], r["check"]): r for r in data["rows"]}


def assert_fails(rows: dict[tuple[str, str], dict[str, str]], user: str, check: str, text: str) -> None:
    r = rows[(user, check)]
    assert r["status"] == "fail" and text in r["detail"], r
    assert r["fix"], r  # every failing row says how to fix it


def test_healthy_then_each_failure(desk: tuple[Home, RunningBroker, str], monkeypatch: pytest.MonkeyPatch,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    home, broker, clock = desk
    rc, rows = doctor(home, clock, monkeypatch, capsys)
    som = {check: r["status"] for (user, check), r in rows.items() if user == "Som"}
    assert som == {c: "ok" for c in ("env", "clock", "session", "broker", "state", "intents", "ownership", "gtt",
                                      "drift", "instance", "loss_limit")}, rows
    assert "1 owned position(s)" in rows[("Som", "ownership")]["detail"]
    assert "checked by the watchdog on each positions refresh" in rows[("Som", "loss_limit")]["detail"]
    assert rc == 0
    assert rows[("*", "disk")]["status"] == "ok"

    # A manual sale of 4 shares at the broker: the state still says 10 -> drift; GTT still covers.
    kite: KiteConnect = broker.kite("Som")
    kite.place_order(variety="regular", exchange="NSE", tradingsymbol="INFY", transaction_type="SELL",
                     quantity=4, product="CNC", order_type="MARKET", market_protection=-1)
    rc, rows = doctor(home, clock, monkeypatch, capsys)
    assert rc == 1
    assert_fails(rows, "Som", "drift", "INFY: state 10, broker 6")
    with StateStore(home, "Som", "paper").transaction() as state:
        state["positions"]["INFY"]["quantity"] = 6

    # The GTT stop is deleted: the holding is uncovered.
    for g in kite.get_gtts():
        kite.delete_gtt(g["id"])
    rc, rows = doctor(home, clock, monkeypatch, capsys)
    assert_fails(rows, "Som", "gtt", "no active GTT stop")
    assert rows[("Som", "drift")]["status"] == "ok"

    # An intent parked as unresolved.
    with StateStore(home, "Som", "paper").transaction() as state:
        state["intents"]["EN0000000000000000AB"] = {"tag": "EN0000000000000000AB", "kind": "order", "symbol": "TCS",
                                                   "purpose": "entry", "status": "unresolved", "note": "not in book"}
    rc, rows = doctor(home, clock, monkeypatch, capsys)
    assert_fails(rows, "Som", "intents", "TCS")

    # A heartbeat claiming a running scheduler without anyone holding the instance lock.
    beat = home.heartbeat_file("Som")
    beat.write_text(json.dumps({"schema_version": 1, "user": "Som", "pid": 999999, "state": "idle",
                                "wall": time.time()}))
    rc, rows = doctor(home, clock, monkeypatch, capsys)
    assert_fails(rows, "Som", "instance", "nobody holds the instance lock")
    beat.unlink()

    # A stale generated supervisord config.
    conf = home.generated_conf_dir / "trader.conf"
    conf.parent.mkdir(parents=True, exist_ok=True)
    conf.write_text("[group:trader]\nprograms=Gone\n")
    rc, rows = doctor(home, clock, monkeypatch, capsys)
    assert_fails(rows, "*", "supervisord", "out of date")
    conf.unlink()

    # A corrupt state file: state fails, drift and intents are skipped, nothing is rewritten.
    state_file = home.state_file("Som")
    good = state_file.read_bytes()
    state_file.write_text("{ not json")
    rc, rows = doctor(home, clock, monkeypatch, capsys)
    assert_fails(rows, "Som", "state", "unusable")
    assert rows[("Som", "drift")]["status"] == "n/a" and state_file.read_text() == "{ not json"
    state_file.write_bytes(good)

    # env file readable by others: the checks process refuses to start; the row says chmod.
    os.chmod(home.env_file("Som"), 0o644)
    rc, rows = doctor(home, clock, monkeypatch, capsys)
    assert_fails(rows, "Som", "env", "readable by group or others")
    assert "chmod 600" in rows[("Som", "env")]["fix"] and rows[("Som", "broker")]["status"] == "n/a"
    os.chmod(home.env_file("Som"), 0o600)

    # A live user: no session; and the simulated clock of this shell is refused for it.
    write_env(home, "Liv", mode="live")
    rc, rows = doctor(home, clock, monkeypatch, capsys)
    assert_fails(rows, "Liv", "clock", "simulated clock")
    monkeypatch.delenv("TRADER_CLOCK")
    from kitefleet import clock as clock_module

    clock_module.set_clock(None)
    rc = main(["doctor", "--json", "--users", "Liv"])
    rows = {(r["user"], r["check"]): r for r in json.loads(capsys.readouterr().out)["rows"]}
    assert_fails(rows, "Liv", "session", "no session file")
    assert "orchestrator.py login Liv" in rows[("Liv", "session")]["fix"]
    home.env_file("Liv").unlink()

    # The broker is down.
    broker.stop()
    rc, rows = doctor(home, clock, monkeypatch, capsys)
    assert_fails(rows, "Som", "broker", "")
    assert "paper-broker" in rows[("Som", "broker")]["fix"]
    assert rows[("Som", "gtt")]["status"] == "n/a"


def test_table_output_has_fixes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                capsys: pytest.CaptureFixture[str]) -> None:
    home = make_home(tmp_path / "home")
    write_env(home, "Liv", mode="live")
    monkeypatch.setenv("KITEFLEET_HOME", str(home.root))
    assert main(["doctor"]) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and "-> fix: orchestrator.py login Liv" in out
    assert "secret-liv" not in out


def test_doctor_fails_a_state_whose_inner_types_are_wrong(desk: tuple[Home, RunningBroker, str],
                                                         monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 15, item 12: doctor said "state ok" for a file every job crashed on. It now loads the
    state as the jobs do (the whole schema): the row fails naming the place, nothing is rewritten."""
    home, _broker, clock = desk
    state_file = home.state_file("Som")
    good = state_file.read_bytes()
    hostile = {**json.loads(good), "stops": [1, 2]}
    state_file.write_text(json.dumps(hostile))
    bad = state_file.read_bytes()
    try:
        rc, rows = doctor(home, clock, monkeypatch, capsys)
        assert rc == 1
        assert_fails(rows, "Som", "state", "stops: expected an object, got a list")
        assert "restore" in rows[("Som", "state")]["fix"]
        assert rows[("Som", "intents")]["status"] == "n/a" and rows[("Som", "drift")]["status"] == "n/a"
        assert state_file.read_bytes() == bad
    finally:
        state_file.write_bytes(good)
