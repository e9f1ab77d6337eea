"""kitefleet.state_schema on plain data: each hostile inner type is named by its place in the
document; every state the fixtures and the real writers produce passes; unknown keys pass."""

from __future__ import annotations

import json
import os
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest

from kitefleet.clock import IST
from kitefleet.errors import StateError
from kitefleet.exitcodes import ExitCode
from kitefleet.home import Home
from kitefleet.state import SCHEMA_VERSION, StateStore, _parse, default_state, validation_problem
from kitefleet.state_migrations import upgrade
from kitefleet.state_schema import DEEP, document_problem, render_path, too_deep_path
from tests.support import DATA
from tests.support.homes import make_home

STATE_FIXTURES = sorted(DATA.glob("*.json"))
SESSION = "2026-03-04"


def _doc(**extra: Any) -> dict[str, Any]:
    return {"schema_version": SCHEMA_VERSION, "user": "Som", "mode": "paper", **extra}


def _intent(**changes: Any) -> dict[str, Any]:
    base = {"tag": "STAAAAAAAAAAAAAAAAAA", "kind": "gtt", "symbol": "INFY", "purpose": "stop:1400.00:10",
            "job": "update_cnc_stoploss", "session": SESSION, "placed_on": SESSION,
            "params": {"trigger_type": "single", "exchange": "NSE", "trigger_values": [1400.0], "last_price": 1460.0,
                       "orders": [{"transaction_type": "SELL", "quantity": 10, "price": 1330.0}]},
            "status": "sent", "broker_id": "1", "order_status": None, "created_at": "2026-03-04T10:05:00+05:30",
            "updated_at": "2026-03-04T10:05:00+05:30", "note": ""}
    return {**base, **changes}


#: (the document's extra keys, the exact one-line problem)
HOSTILE = [
    ({"stops": [1, 2]}, "stops: expected an object, got a list of 2 item(s)"),
    ({"stops": {"INFY": None}}, "stops.INFY: expected an object, got null"),
    ({"stops": {"INFY": {"gtt_id": "x"}}}, 'stops.INFY.gtt_id: expected an integer or null, got "x"'),
    ({"stops": {"INFY": {"gtt_id": True}}}, "stops.INFY.gtt_id: expected an integer or null, got true"),
    ({"stops": {"INFY": {"stop": "1400"}}}, 'stops.INFY.stop: expected a number or null, got "1400"'),
    ({"stops": {"INFY": {"stop": float("nan")}}}, "stops.INFY.stop: expected a number or null, got nan"),
    ({"intents": {"T1": "sent"}}, 'intents.T1: expected an object, got "sent"'),
    ({"intents": {"T1": _intent(kind="oco")}},
     'intents.T1.kind: expected one of order, gtt, cancel, modify, got "oco"'),
    ({"intents": {"T1": {k: v for k, v in _intent().items() if k != "symbol"}}},
     "intents.T1.symbol: missing (every record here has it)"),
    ({"intents": {"T1": _intent(created_at=5)}}, "intents.T1.created_at: expected a string, got 5"),
    ({"intents": {"T1": _intent(placed_on="yesterday")}},
     'intents.T1.placed_on: expected a date YYYY-MM-DD or null, got "yesterday"'),
    ({"intents": {"T1": _intent(params={"trigger_values": "1400"})}},
     'intents.T1.params.trigger_values: expected a list or null, got "1400"'),
    ({"intents": {"T1": _intent(params={"orders": [{"quantity": "ten"}]})}},
     'intents.T1.params.orders[0].quantity: expected a number or null, got "ten"'),
    ({"positions": {"INFY": [10]}}, "positions.INFY: expected an object, got a list of 1 item(s)"),
    ({"positions": {"INFY": {"quantity": "ten"}}}, 'positions.INFY.quantity: expected a number or null, got "ten"'),
    ({"daily_tickers": {"long": "INFY"}}, 'daily_tickers.long: expected a list, got "INFY"'),
    ({"meta": {"intents_pruned_on": 20260304}},
     "meta.intents_pruned_on: expected a date YYYY-MM-DD or null, got 20260304"),
    ({"entry_plans": {"2026-03-04|pick.json": {"session": SESSION, "cash": 1.0, "equity": 1.0}}},
     'entry_plans["2026-03-04|pick.json"].n_selected: missing (every record here has it)'),
    ({"entry_plans": {"k": {"session": "03/04/2026", "cash": 1.0, "equity": 1.0, "n_selected": 1}}},
     'entry_plans.k.session: expected a date YYYY-MM-DD, got "03/04/2026"'),
    ({"watchdog": {SESSION: {"symbols": {"INFY": {"hourly": None}}}}},
     "watchdog.2026-03-04.symbols.INFY.exits: missing (every record here has it)"),
    ({"watchdog": {SESSION: {"symbols": {"INFY": {"exits": [{"tag": "EX1", "order_status": ["OPEN"]}]}}}}},
     "watchdog.2026-03-04.symbols.INFY.exits[0].order_status: expected a string or null, got a list of 1 item(s)"),
    # issue 18: the ownership ledger and the loss limit
    ({"ledger": {"lots": {"INFY": {"quantity": 5}}}}, "ledger.lots.INFY: expected a list, got an object of 1 key(s)"),
    ({"ledger": {"lots": {"INFY": [{"quantity": 0, "price": 1.0, "date": SESSION, "source": "adopted"}]}}},
     "ledger.lots.INFY[0].quantity: expected an integer > 0, got 0"),
    ({"ledger": {"lots": {"INFY": [{"quantity": 5, "price": 1.0, "date": SESSION, "source": "gift"}]}}},
     'ledger.lots.INFY[0].source: expected one of entry, migrated, adopted, got "gift"'),
    ({"ledger": {"lots": {"INFY": [{"quantity": 5, "price": 1.0, "date": SESSION, "source": "entry"}]}}},
     "ledger.lots.INFY[0].order_id: missing (an entry lot names its order)"),
    ({"ledger": {"lots": {}, "applied": {"1": {"symbol": "INFY", "side": "HOLD", "quantity": 5, "session": SESSION}}}},
     'ledger.applied.1.side: expected one of BUY, SELL, got "HOLD"'),
    ({"ledger": {"lots": {}, "shortfalls": {"INFY": {"quantity": 5}}}},
     "ledger.shortfalls.INFY.session: missing (every record here has it)"),
    ({"ledger": {"lots": {}, "pending": {"INFY": {"op": "give", "quantity": 5, "session": SESSION}}}},
     'ledger.pending.INFY.op: expected one of adopt, release, got "give"'),
    ({"loss_limit": {"session": SESSION, "base_equity": "lots"}},
     'loss_limit.base_equity: expected a number, got "lots"'),
]


@pytest.mark.parametrize(("extra", "problem"), HOSTILE, ids=[p.split(":")[0] for _, p in HOSTILE])
def test_state_inner_types_are_validated_on_load(extra: dict[str, Any], problem: str) -> None:
    assert validation_problem(_doc(**extra)) == problem
    data, reason = _parse(json.dumps(_doc(**extra)).encode())
    assert data is None and reason == problem and "\n" not in problem


def test_unknown_keys_in_records_and_at_the_top_level_pass() -> None:
    doc = _doc(
        future_top_level={"anything": [1, {"x": None}]},
        positions={"INFY": {"quantity": 10, "custom_note": {"deep": [[1]]}, "gtt": {"trigger_id": "9"}}},
        stops={"INFY": {"gtt_id": 7, "stop": 1450.0, "extra": "kept"}},
        intents={"T1": _intent(new_field=[1, 2])},
        watchdog={SESSION: {"rule": "hourly_low", "symbols": {"INFY": {"exits": [], "new": 1}}, "new": {}}},
    )
    assert validation_problem(doc) is None


def test_states_of_the_fixtures_and_the_writers_pass() -> None:
    assert STATE_FIXTURES, "tests/support/data has state files"
    for path in STATE_FIXTURES:
        data = upgrade(json.loads(path.read_text(encoding="utf-8")), SCHEMA_VERSION)
        assert validation_problem(data) is None, path
    assert validation_problem(default_state("Som", "paper")) is None


def test_the_real_writers_produce_valid_state(tmp_path: Path) -> None:
    """Each writer's own function, into a real store (whose commit validates too)."""
    from workers.entry_plan import Basis, fix_plan
    from workers.intents import IntentLog
    from workers.jobs.update_cnc_stoploss import Outcome, _record
    from workers.strategy.patterns import ScanResult

    home = make_home(tmp_path / "home")
    store = StateStore(home, "Som", "paper")
    now = datetime(2026, 3, 4, 10, 5, tzinfo=IST)
    row = ScanResult("INFY", 5, entry=1460.0, stop_loss=1400.0, target_1=1580.0, risk_reward=2.0)
    fix_plan(store, "Som", date(2026, 3, 4), "pick.json", now, Basis(1e6, 1e6, 1), 50.0, [row])
    intents = IntentLog(store)
    intents.record("STAAAAAAAAAAAAAAAAAA", "gtt", "INFY", "stop:1400.00:10", _intent()["params"],
                   job="update_cnc_stoploss")
    intents.mark_sent("STAAAAAAAAAAAAAAAAAA", "1")
    intents.prune()
    with store.transaction() as st:
        st["positions"]["INFY"] = {"type": "LONG", "product_type": "CNC", "entry_price": 1460.0, "quantity": 10}
    _record(store, [Outcome("INFY", "create", 1, 1400.0, 1330.0, 10, "", done=True, source="prev_session_low")],
            {"INFY": 10}, now)
    state = store.read()
    assert state["stops"]["INFY"]["gtt_id"] == 1 and state["entry_plans"] and state["intents"]
    assert validation_problem(state) is None


def test_a_commit_of_a_bad_inner_type_writes_nothing(tmp_path: Path) -> None:
    store = StateStore(make_home(tmp_path / "home"), "Som", "paper")
    with store.transaction() as st:
        st["positions"]["A"] = {"quantity": 1}
    before = store.path.read_bytes()
    with pytest.raises(StateError, match=r"stops\.INFY: expected an object.*nothing was written"), \
            store.transaction() as st:
        st["stops"] = {"INFY": "1400"}
    assert store.path.read_bytes() == before


# --- deep nesting and a directory ----------------------------------------------------------------
def test_deep_nesting_is_one_line_naming_where() -> None:
    head = '{"schema_version": 2, "user": "Som", "mode": "paper", '
    for body, where in [
        ('"stops": ' + "[" * 100_000 + "]" * 100_000, "stops[0][0][0][0][0][0][0]…"),
        ('"positions": {"A B": {"x": ' + '{"k": ' * 100_000 + "1" + "}" * 100_000 + "}}",
         'positions["A B"].x.k.k.k.k.k…'),
    ]:
        data, reason = _parse((head + body + "}").encode())
        assert data is None and reason is not None and "\n" not in reason
        assert reason.startswith(f"{where}: nested more than {DEEP} levels deep"), reason


def test_too_deep_path_scans_strings_and_indexes() -> None:
    text = '{"a": [1, "x[{", {"b": ' + "[" * 5 + "]" * 5 + "}]}"
    assert too_deep_path(text, limit=4) == ("a", 2, "b", 0)
    assert too_deep_path(text, limit=10) is None
    assert render_path(("stops", "INFY", "gtt_id")) == "stops.INFY.gtt_id"
    assert render_path(("a", *([0] * 20))) == "a[0][0][0][0][0][0][0]…"
    assert render_path(()) == "the top level"


@pytest.fixture
def home(tmp_path: Path) -> Home:
    return make_home(tmp_path / "home")


def test_a_directory_where_the_state_file_should_be_is_refused_with_exit_4(home: Home) -> None:
    store = StateStore(home, "Som", "paper")
    store.path.mkdir()
    for attempt in (store.read, lambda: store.transaction().__enter__()):
        with pytest.raises(StateError) as err:
            attempt()
        msg = str(err.value)
        assert "is a directory, not a file" in msg and "\n" not in msg and str(store.path) in msg
        assert err.value.exit_code == ExitCode.CONFIG == 4
    assert store.path.is_dir() and os.listdir(store.path) == [] and not store.backup_path.exists()


def test_a_state_without_schema_problems_is_still_read_unchanged(home: Home) -> None:
    store = StateStore(home, "Som", "paper")
    with store.transaction() as st:
        st["stops"] = {"INFY": {"stop": 1400.0, "gtt_id": 1, "source": "prev_session_low"}}
    assert store.read()["stops"]["INFY"]["gtt_id"] == 1
    assert document_problem(store.read()) is None
