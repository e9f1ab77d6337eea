"""Trade only what is ours (issue 18): the ownership ledger in real worker processes against the real
paper broker (real kiteconnect, a file clock the test moves). A person's shares in the same demat
account are never given a stop by the bot; the upgrade from a state written before the ledger deletes
nothing."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kitefleet.state import SCHEMA_VERSION
from kitefleet.ticks import round_to_tick
from tests.integration.jobs.test_place_orders_daily import Desk, open_desk
from tests.integration.jobs.test_update_cnc_stoploss import SCENARIO, SYMBOLS, A, B, P, _active, _at, _buy, _replay_gtts
from tests.support import DATA
from tests.support.broker import RunningBroker, broker_factory  # noqa: F401 (fixture)
from workers.ledger import owned_quantities

STOP_JOB = "update_cnc_stoploss"
FIXTURES = DATA
#: written by main's code before the ledger (schema 2): SBIN bought by hand on P (40 shares) and
#: given a stop GTT by update_cnc_stoploss on A; INFY and TCS bought by place_orders_daily on A.
V2_HAND_BOUGHT = FIXTURES / "trading_state_Som_v2_hand_bought_sbin.json"


def _hand(desk: Desk, user: str, symbol: str, side: str, qty: int) -> str:
    """A person's order from the Kite app: no tag, marketable LIMIT."""
    ltp = desk.ltp(user, symbol)
    tick = {"INFY": 0.1}.get(symbol, 0.05)
    price = round_to_tick(ltp * (1.01 if side == "BUY" else 0.99), tick, "ceil" if side == "BUY" else "floor")
    oid = desk.kite(user).place_order("regular", exchange="NSE", tradingsymbol=symbol, transaction_type=side,
                                      quantity=qty, product="CNC", order_type="LIMIT", price=price)
    (order,) = [o for o in desk.kite(user).orders() if o["order_id"] == oid]
    assert order["status"] == "COMPLETE", order
    return str(oid)


def _gtt_qty(desk: Desk, user: str) -> dict[str, list[int]]:
    return {s: [g["orders"][0]["quantity"] for g in gs] for s, gs in _active(desk, user).items()}


def test_a_persons_holding_never_gets_a_stop_and_with_manage_scope_all_it_does(
        tmp_path: Path, broker_factory: Callable[..., RunningBroker]) -> None:  # noqa: F811
    desk = open_desk(tmp_path, broker_factory, {"Som": {}, "Sai": {"MANAGE_SCOPE": "all"}}, _at(P, 10, 5),
                     SYMBOLS, SCENARIO)
    for user in ("Som", "Sai"):  # long-term shares bought in the app before the bot started
        _hand(desk, user, "SBIN", "BUY", 40)
    desk.at(_at(A, 10, 5))
    for user in ("Som", "Sai"):
        _buy(desk, user, ["INFY"], tmp_path)
    # The filled entry is owned as soon as the entry run reads it back; the person's SBIN is not.
    assert set(owned_quantities(desk.state("Som")["ledger"])) == {"INFY"}

    som = desk.ok("Som", STOP_JOB)
    assert set(_active(desk, "Som")) == {"INFY"}  # the person's SBIN: no GTT
    assert som["scope"] == "own" and som["unmanaged"] == {"SBIN": 40} and set(som["protected"]) == {"INFY"}
    assert set(owned_quantities(desk.state("Som")["ledger"])) == {"INFY"}
    proc = desk.run("Sai", STOP_JOB)
    assert proc.returncode == 0, proc.stderr
    assert "MANAGE_SCOPE=all" in proc.stderr + proc.stdout  # the legacy scope warns at each start
    assert set(_active(desk, "Sai")) == {"INFY", "SBIN"}

    # Next day, still nothing on Som's SBIN; INFY's stop trails.
    desk.at(_at(B, 10, 5))
    desk.ok("Som", STOP_JOB)
    assert set(_active(desk, "Som")) == {"INFY"}


def test_owned_and_hand_bought_shares_of_one_symbol_the_stop_covers_the_owned_and_the_ledger_follows_sales(
        tmp_path: Path, broker_factory: Callable[..., RunningBroker]) -> None:  # noqa: F811
    desk = open_desk(tmp_path, broker_factory, {"Som": {}}, _at(A, 10, 5), SYMBOLS, SCENARIO)
    owned = _buy(desk, "Som", ["INFY"], tmp_path)["placed"][0]["quantity"]
    _hand(desk, "Som", "INFY", "BUY", 10)  # a person adds 10 by hand
    out = desk.ok("Som", STOP_JOB)
    assert out["protected"] == {"INFY": owned} and out["unmanaged"] == {"INFY": 10}
    assert _gtt_qty(desk, "Som") == {"INFY": [owned]}

    # Next day a person sells 10 (their own): the ledger does not change, nor the stop.
    desk.at(_at(B, 10, 5))
    _hand(desk, "Som", "INFY", "SELL", 10)
    desk.ok("Som", STOP_JOB)
    assert owned_quantities(desk.state("Som")["ledger"]) == {"INFY": owned}
    assert _gtt_qty(desk, "Som") == {"INFY": [owned]}
    # Then 5 more: those were the bot's; the ledger follows the trade and the stop shrinks to it.
    _hand(desk, "Som", "INFY", "SELL", 5)
    desk.ok("Som", STOP_JOB)
    assert owned_quantities(desk.state("Som")["ledger"]) == {"INFY": owned - 5}
    assert _gtt_qty(desk, "Som") == {"INFY": [owned - 5]}  # no oversell: the GTT never exceeds held


def test_upgrade_from_a_state_before_the_ledger_deletes_nothing_and_leaves_the_hand_bought_stop_alone(
        tmp_path: Path, broker_factory: Callable[..., RunningBroker]) -> None:  # noqa: F811
    # Rebuild the account the fixture was written from (same orders, same order, same GTT ids;
    # sized as that code sized them, before MAX_POSITION_PERCENT).
    desk = open_desk(tmp_path, broker_factory, {"Som": {"MAX_POSITION_PERCENT": 100}}, _at(P, 10, 5), SYMBOLS,
                     SCENARIO)
    _hand(desk, "Som", "SBIN", "BUY", 40)
    desk.at(_at(A, 10, 5))
    _buy(desk, "Som", ["INFY", "TCS"], tmp_path)
    v2 = json.loads(V2_HAND_BOUGHT.read_text(encoding="utf-8"))
    assert v2["schema_version"] == 2 and "ledger" not in v2
    ids = _replay_gtts(desk, "Som", v2)
    assert set(ids) == {"INFY", "SBIN", "TCS"}
    desk.home.state_file("Som").write_text(json.dumps(v2), encoding="utf-8")
    assert {s: [g["id"] for g in gs] for s, gs in _active(desk, "Som").items()} == {s: [i] for s, i in ids.items()}

    before = desk.audit_len()
    proc = desk.run("Som", STOP_JOB, "--json")
    assert proc.returncode == 0, proc.stderr
    assert "SBIN: bot stop on an unowned holding: run adopt or release" in proc.stderr
    assert desk.writes(before) == []
    state = desk.state("Som")
    assert state["schema_version"] == SCHEMA_VERSION == 3
    assert owned_quantities(state["ledger"]) == {"INFY": 164, "TCS": 80}
    assert {lot["source"] for lots in state["ledger"]["lots"].values() for lot in lots} == {"entry"}
    assert state["stops"]["SBIN"] == v2["stops"]["SBIN"]  # the record stays as it was

    # Next session: the two bot stops trail up in place; SBIN's GTT is untouched; nothing deleted.
    desk.at(_at(B, 10, 5))
    before = desk.audit_len()
    out = desk.ok("Som", STOP_JOB)
    acts = {a["symbol"]: (a["action"], a["gtt_id"]) for a in out["actions"]}
    assert acts == {"INFY": ("modify", ids["INFY"]), "TCS": ("modify", ids["TCS"])}
    writes = desk.writes(before)
    assert sorted(w["path"] for w in writes) == sorted(f"/gtt/triggers/{ids[s]}" for s in ("INFY", "TCS"))
    assert not [w for w in writes if w["method"] == "DELETE"]
    sbin = desk.kite("Som").get_gtt(ids["SBIN"])
    assert sbin["status"] == "active" and sbin["condition"]["trigger_values"] == [950.0]
    assert sbin["orders"][0]["quantity"] == 40
    assert {s: [g["id"] for g in gs] for s, gs in _active(desk, "Som").items()} == {s: [i] for s, i in ids.items()}


def test_seed_ledger_from_a_state_before_the_ledger() -> None:
    from kitefleet.state_migrations import upgrade

    v2: dict[str, Any] = json.loads(V2_HAND_BOUGHT.read_text(encoding="utf-8"))
    v2["positions"]["WIPRO"] = {"quantity": 7, "entry_price": 400.0, "product_type": "CNC",
                                "legacy_migration": {"source": "trading_state.json"}}
    v2["positions"]["OLD"] = {"quantity": 3, "entry_price": 1.0, "order_id": "X1", "source": "place_orders_daily",
                              "entry_time": "2025-01-02 09:20:00"}
    v2["positions"]["GONE"] = {"quantity": 0, "order_id": "X2", "source": "place_orders_daily", "closed_at": "x"}
    doc = upgrade(v2, 3)
    lots = doc["ledger"]["lots"]
    assert {s: [(x["quantity"], x["source"]) for x in ls] for s, ls in lots.items()} == {
        "INFY": [(164, "entry")], "TCS": [(80, "entry")], "WIPRO": [(7, "migrated")], "OLD": [(3, "entry")]}
    assert lots["OLD"][0]["date"] == "2025-01-02"
    assert "SBIN" not in lots and doc["stops"]["SBIN"]["gtt_id"] == 2
    assert set(doc["ledger"]["applied"]) == {"260304000000002", "260304000000003", "X1"}
