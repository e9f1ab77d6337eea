"""workers/jobs/update_cnc_stoploss.py on plain data: stop tags, stop ownership, the stop record, state schema."""

from __future__ import annotations

import json
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest

from kitefleet.clock import IST
from kitefleet.errors import StateError
from kitefleet.exitcodes import ExitCode
from kitefleet.state import SCHEMA_VERSION, StateStore
from kitefleet.state_migrations import fold_legacy_stop_ids, upgrade
from tests.support import DATA
from tests.support.homes import make_home
from workers.bot_stop import fresh_stop_tag
from workers.gtt import stop_ownership
from workers.intents import make_tag
from workers.jobs.update_cnc_stoploss import Outcome, _record

JOB = "update_cnc_stoploss"
P, A, B, C = date(2026, 3, 2), date(2026, 3, 4), date(2026, 3, 5), date(2026, 3, 6)


def _at(day: date, hh: int, mm: int) -> datetime:
    return datetime(day.year, day.month, day.day, hh, mm, tzinfo=IST)


# --- the job's pure pieces, on plain data -------------------------------------------------------------
def test_a_new_stop_gtt_after_a_sent_one_gets_the_next_tag_never_a_spent_one() -> None:
    def tag(purpose: str) -> str:
        return make_tag("Som", JOB, A, "INFY", purpose)

    assert fresh_stop_tag("Som", A, "INFY", 1450.0, 10, {}) == (tag("stop:1450.00:10"), "stop:1450.00:10")
    for status in ("pending", "unknown", "failed"):  # not known to be at the broker: the protocol checks first
        intents = {tag("stop:1450.00:10"): {"status": status}}
        assert fresh_stop_tag("Som", A, "INFY", 1450.0, 10, intents)[1] == "stop:1450.00:10"
    spent = {tag("stop:1450.00:10"): {"status": "sent"}, tag("stop:1450.00:10:2"): {"status": "unresolved"},
             tag("stop:1450.00:10:3"): {"status": "resolved"}}
    assert fresh_stop_tag("Som", A, "INFY", 1450.0, 10, spent) == (tag("stop:1450.00:10:4"), "stop:1450.00:10:4")


def test_the_bot_owns_the_gtt_ids_of_its_stop_record_and_its_intents() -> None:
    state = {
        "stops": {"INFY": {"gtt_id": 7}, "TCS": {"gtt_id": None}},
        "positions": {"SBIN": {"gtt_order_id": 8}, "HDFCBANK": {"gtt": {"trigger_id": "9"}}, "WIPRO": {}},
        "intents": {"a": {"kind": "gtt", "job": JOB, "symbol": "ITC", "broker_id": "10"},
                    "b": {"kind": "gtt", "job": JOB, "symbol": "ONGC", "broker_id": None},
                    "c": {"kind": "order", "job": "place_orders_daily", "symbol": "LT", "broker_id": "11"}},
    }
    ownership = stop_ownership(state)
    assert ownership.owned_ids == {7, 10}  # positions' ids are folded into stops on load, not read
    assert ownership.known_symbols == {"INFY", "TCS", "ITC", "ONGC"}
    fold_legacy_stop_ids(state)  # (the positions there have no quantity: not open, nothing folded)
    assert stop_ownership(state) == ownership


def test_the_state_never_names_a_stop_gtt_that_is_gone(tmp_path: Path) -> None:
    store = StateStore(make_home(tmp_path / "home"), "Som", "paper")
    with store.transaction() as state:
        state["stops"] = {"INFY": {"stop": 1450.0, "source": "prev_session_low", "gtt_id": 7, "trigger": 1450.0,
                                   "limit_price": 1377.5, "quantity": 10, "updated_at": "x"}}
        state["positions"] = {"INFY": {"quantity": 10, "gtt_order_id": 7, "stop_loss": 1450.0}}
    # GTT 7 is gone and the new one was refused: the stop stays as the floor, the id goes.
    refused = Outcome("INFY", "create", None, 1235.0, 1173.25, 10, error="refused", source="fallback")
    _record(store, [refused], {"INFY": 10}, _at(A, 14, 0))
    state = store.read()
    assert state["stops"]["INFY"]["gtt_id"] is None and state["stops"]["INFY"]["stop"] == 1450.0
    assert state["positions"]["INFY"]["gtt_order_id"] is None


# --- the stop record: one home, schema 2 ----------------------------------------------------------
FIXTURES = DATA
#: written by update_cnc_stoploss of schema 1 (commit 8c94513) after one run on day A, 10:05, for Som
#: holding INFY, TCS (a fallback stop) and SBIN.
V1_AFTER_STOP_RUN = FIXTURES / "trading_state_Som_v1_after_stop_run.json"


def test_a_state_file_of_a_newer_schema_is_refused_with_exit_4(tmp_path: Path) -> None:
    home = make_home(tmp_path / "home")
    store = StateStore(home, "Som", "paper")
    newer = json.loads(V1_AFTER_STOP_RUN.read_text(encoding="utf-8")) | {"schema_version": SCHEMA_VERSION + 1}
    store.path.write_text(json.dumps(newer), encoding="utf-8")
    raw = store.path.read_bytes()
    with pytest.raises(StateError, match=f"schema_version {SCHEMA_VERSION + 1} is newer") as refused:
        store.read()
    assert refused.value.exit_code == ExitCode.CONFIG == 4 and store.path.read_bytes() == raw


def test_a_legacy_gtt_id_on_a_position_gets_a_stop_record_and_only_the_stop_record_owns() -> None:
    state: dict[str, Any] = {
        "schema_version": 1,
        "stops": {"INFY": {"gtt_id": 7, "stop": 1450.0}},
        "positions": {"INFY": {"quantity": 10, "gtt_order_id": 99},  # derived, stale: never read
                      "SBIN": {"quantity": 5, "gtt_order_id": 8},
                      "HDFCBANK": {"quantity": 3, "gtt": {"trigger_id": "9"}},
                      "GONE": {"quantity": 0, "closed_at": "x", "gtt_order_id": 11}},
        "intents": {"a": {"kind": "gtt", "job": JOB, "symbol": "ITC", "broker_id": "10"}},
    }
    assert stop_ownership(state).owned_ids == {7, 10}  # positions are not an owner of record
    upgrade(state, SCHEMA_VERSION)
    assert state["schema_version"] == SCHEMA_VERSION
    assert state["stops"]["SBIN"] == {"stop": None, "source": "legacy", "gtt_id": 8}
    assert state["stops"]["HDFCBANK"]["gtt_id"] == 9 and "GONE" not in state["stops"]
    assert state["stops"]["INFY"] == {"gtt_id": 7, "stop": 1450.0}
    assert stop_ownership(state).owned_ids == {7, 8, 9, 10}
