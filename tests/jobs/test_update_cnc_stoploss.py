"""update_cnc_stoploss in real worker processes against the real paper broker: two users, scripted
prices over four sessions (scenario file), a file clock the test moves, kills at the fault points."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest

from kitefleet.clock import IST
from kitefleet.ticks import round_to_tick
from tests.jobs.test_place_orders_daily import Desk, open_desk
from tests.support.broker import RunningBroker, broker_factory  # noqa: F401 (fixture)
from workers.strategy.stops import gtt_limit_price

JOB = "update_cnc_stoploss"
P, A, B, C = date(2026, 3, 2), date(2026, 3, 4), date(2026, 3, 5), date(2026, 3, 6)


def _at(day: date, hh: int, mm: int) -> datetime:
    return datetime(day.year, day.month, day.day, hh, mm, tzinfo=IST)


def _path(symbol: str, day: date, *waypoints: tuple[str, float]) -> dict[str, Any]:
    return {"symbol": symbol, "date": day.isoformat(), "waypoints": [list(w) for w in waypoints]}


# INFY: lows P ~1400 < A ~1450 (rising: the stop moves up on B) and B ~1425 < A (falling: kept on C);
# B dips before 10:00, while the stop is still P's low, and is back above 1450 by the B run.
# TCS: A trades below P's low, so on A its stop would be above the price: not placed.
SCENARIO = {"paths": [
    _path("INFY", P, ("09:15", 1420.0), ("12:00", 1400.0), ("15:29", 1430.0)),
    _path("INFY", A, ("09:15", 1450.0), ("10:00", 1460.0), ("15:29", 1480.0)),
    _path("INFY", B, ("09:15", 1440.0), ("09:30", 1425.0), ("10:00", 1480.0), ("15:29", 1490.0)),
    _path("INFY", C, ("09:15", 1490.0), ("15:29", 1500.0)),
    _path("TCS", P, ("09:15", 3100.0), ("15:29", 3120.0)),
    _path("TCS", A, ("09:15", 3000.0), ("10:00", 2990.0), ("15:29", 3010.0)),
    _path("TCS", B, ("09:15", 3010.0), ("15:29", 3020.0)),
    _path("TCS", C, ("09:15", 3020.0), ("15:29", 3030.0)),
    *[_path(sym, d, ("09:15", base + i * 5), ("15:29", base + i * 5 + 5))
      for sym, base in (("SBIN", 950.0), ("HDFCBANK", 1000.0)) for i, d in enumerate((P, A, B, C))],
]}
SYMBOLS = ["INFY", "TCS", "SBIN", "HDFCBANK"]


def _low(desk: Desk, user: str, symbol: str, day: date) -> float:
    kite = desk.kite(user)
    token = kite.ltp(f"NSE:{symbol}")[f"NSE:{symbol}"]["instrument_token"]
    (candle,) = kite.historical_data(token, day, day, "day")
    return float(candle["low"])


def _active(desk: Desk, user: str) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for g in desk.kite(user).get_gtts():
        if g["status"] == "active":
            out.setdefault(g["condition"]["tradingsymbol"], []).append(g)
    return out


def _buy(desk: Desk, user: str, symbols: list[str], tmp_path: Path) -> dict[str, Any]:
    pick = tmp_path / f"{user}_pick.json"
    pick.write_text(json.dumps(symbols), encoding="utf-8")
    out = desk.ok(user, "place_orders_daily", "--from", str(pick))
    assert sorted(p["symbol"] for p in out["placed"]) == sorted(symbols)
    return out


def test_stops_follow_the_previous_low_up_never_down_per_user(
        tmp_path: Path, broker_factory: Callable[..., RunningBroker]) -> None:  # noqa: F811
    desk = open_desk(tmp_path, broker_factory, {"Som": {}, "Sai": {}}, _at(A, 10, 5), SYMBOLS, SCENARIO)
    orders = {"Som": _buy(desk, "Som", ["INFY", "TCS", "SBIN"], tmp_path),
              "Sai": _buy(desk, "Sai", ["SBIN", "HDFCBANK"], tmp_path)}
    qty = {u: {p["symbol"]: p["quantity"] for p in o["placed"]} for u, o in orders.items()}
    gtt_ids: dict[str, set[int]] = {"Som": set(), "Sai": set()}

    # Day A: today's filled buys get their stop at P's low; TCS trades below it: reported, not placed.
    out = desk.ok("Som", JOB)
    acts = {a["symbol"]: a for a in out["actions"]}
    assert acts["INFY"]["action"] == "create" and acts["SBIN"]["action"] == "create"
    assert "TCS" in out["not_placed"] and ">= LTP" in out["not_placed"]["TCS"]
    assert acts["TCS"]["action"] == "none"
    infy_p = round_to_tick(_low(desk, "Som", "INFY", P), 0.05, "floor")
    assert acts["INFY"]["trigger"] == infy_p
    assert acts["INFY"]["limit_price"] == gtt_limit_price(infy_p, 5.0, 0.05)
    gtt_ids["Som"] |= {acts["INFY"]["gtt_id"], acts["SBIN"]["gtt_id"]}
    infy_gtt = acts["INFY"]["gtt_id"]
    g = _active(desk, "Som")["INFY"][0]
    assert g["type"] == "single" and g["condition"]["trigger_values"] == [infy_p]
    (leg,) = g["orders"]
    assert (leg["transaction_type"], leg["order_type"], leg["product"], leg["quantity"]) == \
        ("SELL", "LIMIT", "CNC", qty["Som"]["INFY"])
    assert set(_active(desk, "Som")) == {"INFY", "SBIN"}
    sai = desk.ok("Sai", JOB)
    gtt_ids["Sai"] |= {a["gtt_id"] for a in sai["actions"] if a["action"] == "create"}
    assert set(_active(desk, "Sai")) == {"SBIN", "HDFCBANK"}

    # A second run the same day sends nothing.
    before = desk.audit_len()
    assert desk.ok("Som", JOB)["sent"] == 0 and desk.ok("Sai", JOB)["sent"] == 0
    assert desk.writes(before) == []
    stops = desk.state("Som")["stops"]
    assert stops["INFY"] == {**stops["INFY"], "stop": infy_p, "source": "prev_session_low", "gtt_id": infy_gtt}
    assert "TCS" not in stops

    # Day B: Som sold SBIN by hand before the run; INFY's previous low (A) rose.
    desk.at(_at(B, 10, 5))
    kite = desk.kite("Som")
    sbin = kite.ltp("NSE:SBIN")["NSE:SBIN"]["last_price"]
    kite.place_order("regular", exchange="NSE", tradingsymbol="SBIN", transaction_type="SELL",
                     quantity=qty["Som"]["SBIN"], product="CNC", order_type="LIMIT",
                     price=round_to_tick(sbin * 0.99, 0.05, "floor"))
    holdings = {h["tradingsymbol"]: h for h in kite.holdings()}
    assert holdings["INFY"]["t1_quantity"] == qty["Som"]["INFY"]  # yesterday's buy, not settled yet
    before = desk.audit_len()
    out = desk.ok("Som", JOB)
    acts = {a["symbol"]: a for a in out["actions"]}
    infy_a = round_to_tick(_low(desk, "Som", "INFY", A), 0.05, "floor")
    assert infy_a > infy_p
    assert acts["INFY"]["action"] == "modify" and acts["INFY"]["gtt_id"] == infy_gtt
    assert acts["SBIN"]["action"] == "delete"
    assert acts["TCS"]["action"] == "create"
    gtt_ids["Som"].add(acts["TCS"]["gtt_id"])
    writes = [(w["method"], w["path"]) for w in desk.writes(before)]
    assert ("PUT", f"/gtt/triggers/{infy_gtt}") in writes
    assert writes.count(("POST", "/gtt/triggers")) == 1  # TCS only: INFY moved in place
    active = _active(desk, "Som")
    assert set(active) == {"INFY", "TCS"} and len(active["INFY"]) == 1
    assert active["INFY"][0]["id"] == infy_gtt and active["INFY"][0]["condition"]["trigger_values"] == [infy_a]
    assert "SBIN" not in desk.state("Som")["stops"]
    assert desk.state("Som")["positions"]["SBIN"]["quantity"] == 0

    # Day C: INFY's previous low (B) fell below the stop: the stop stays.
    desk.at(_at(C, 10, 5))
    assert _low(desk, "Som", "INFY", B) < infy_a
    before = desk.audit_len()
    out = desk.ok("Som", JOB)
    acts = {a["symbol"]: a for a in out["actions"]}
    assert acts["INFY"]["action"] == "none" and acts["INFY"]["trigger"] == infy_a
    assert not [w for w in desk.writes(before) if w["path"] == f"/gtt/triggers/{infy_gtt}"]
    assert desk.state("Som")["stops"]["INFY"]["stop"] == infy_a
    sai = desk.ok("Sai", JOB)
    gtt_ids["Sai"] |= {a["gtt_id"] for a in sai["actions"] if a["action"] == "create"}

    # Isolation: each user's orders and GTTs went with that user's key only; state holds its own.
    for user, other in (("Som", "Sai"), ("Sai", "Som")):
        key = desk.api_key(user)
        mine = [r for r in desk.broker.audit(api_key=key)]
        placed_ids = {r["order_id"] for r in mine if r.get("order_id")}
        assert {p["order_id"] for p in orders[user]["placed"]} <= placed_ids
        assert not placed_ids & {p["order_id"] for p in orders[other]["placed"]}
        assert {g["id"] for gs in _active(desk, user).values() for g in gs} <= gtt_ids[user]
        gtt_paths = {r["path"] for r in mine if r["path"].startswith("/gtt/triggers/")}
        assert all(int(p.rsplit("/", 1)[1]) in gtt_ids[user] for p in gtt_paths)
    assert set(desk.state("Som")["positions"]) == {"INFY", "TCS", "SBIN"}
    assert set(desk.state("Sai")["positions"]) == {"SBIN", "HDFCBANK"}
    assert set(desk.state("Sai")["stops"]) == {"SBIN", "HDFCBANK"}
    assert all(len(gs) == 1 for u in ("Som", "Sai") for gs in _active(desk, u).values())


@pytest.mark.parametrize("faults", [("after_send:INFY", "after_intent:SBIN")])
def test_a_kill_at_each_fault_point_and_a_rerun_leave_one_gtt_per_symbol(
        tmp_path: Path, broker_factory: Callable[..., RunningBroker],  # noqa: F811
        faults: tuple[str, ...]) -> None:
    desk = open_desk(tmp_path, broker_factory, {"Raj": {}}, _at(A, 10, 5), SYMBOLS, SCENARIO)
    _buy(desk, "Raj", ["INFY", "SBIN"], tmp_path)
    for fault in faults:
        killed = desk.run("Raj", JOB, fault=fault)
        assert killed.returncode == -9, killed.stderr
    out = desk.ok("Raj", JOB)
    active = _active(desk, "Raj")
    assert set(active) == {"INFY", "SBIN"} and all(len(g) == 1 for g in active.values())
    posts = [w for w in desk.writes() if (w["method"], w["path"]) == ("POST", "/gtt/triggers")]
    assert len(posts) == 2
    stops = desk.state("Raj")["stops"]
    assert {s: v["gtt_id"] for s, v in stops.items()} == {s: g[0]["id"] for s, g in active.items()}
    assert all(i["status"] == "sent" for i in desk.state("Raj")["intents"].values())
    assert {a["symbol"]: a["action"] for a in out["actions"]} == {"INFY": "none", "SBIN": "create"}
    # Next day INFY's previous low rose: killed after the modification, before the state knew.
    desk.at(_at(B, 10, 5))
    gtt_id = stops["INFY"]["gtt_id"]
    killed = desk.run("Raj", JOB, fault="after_send:INFY")
    assert killed.returncode == -9, killed.stderr
    assert desk.state("Raj")["stops"]["INFY"] == stops["INFY"]
    moved = _active(desk, "Raj")["INFY"]
    assert [g["id"] for g in moved] == [gtt_id] and moved[0]["condition"]["trigger_values"][0] > stops["INFY"]["stop"]
    before = desk.audit_len()
    again = desk.ok("Raj", JOB)
    assert {a["symbol"]: a["action"] for a in again["actions"]} == {"INFY": "none", "SBIN": "modify"}
    assert [w["path"] for w in desk.writes(before)] == [f"/gtt/triggers/{stops['SBIN']['gtt_id']}"]
    assert desk.state("Raj")["stops"]["INFY"]["stop"] == moved[0]["condition"]["trigger_values"][0]
    assert all(len(g) == 1 for g in _active(desk, "Raj").values())
