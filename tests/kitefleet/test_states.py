"""kitefleet/states.py: the groupings are Kite's, and members match what the client returns."""

from __future__ import annotations

import ast
import json
import sys
from pathlib import Path

import kitefleet.states
from kitefleet.states import OPEN, TERMINAL, OrderStatus


def test_groupings_are_kites_and_disjoint() -> None:
    # reference/kite-api.md 3.7: terminal, resting, and an AMO waiting for the session
    assert set(TERMINAL) == {"COMPLETE", "CANCELLED", "REJECTED"}
    assert set(OPEN) == {"OPEN", "TRIGGER PENDING", "AMO REQ RECEIVED"}
    assert not set(OPEN) & set(TERMINAL)


def test_a_status_from_the_wire_matches_its_member() -> None:
    # The workers compare statuses parsed from JSON (plain str) against the groupings, in tuples
    # and in sets; the broker stores and serialises members. Both only work for a str enum.
    wire = json.loads('["TRIGGER PENDING", "CANCELLED", "OPEN PENDING"]')
    assert wire[0] in OPEN and wire[0] not in TERMINAL
    assert wire[1] in set(TERMINAL)
    assert wire[2] == OrderStatus.OPEN_PENDING and hash(wire[2]) == hash(OrderStatus.OPEN_PENDING)
    assert json.dumps([OrderStatus.OPEN_PENDING]) == '["OPEN PENDING"]'
    assert f"{OrderStatus.AMO_REQ_RECEIVED}".lower() == "amo req received"


def test_states_depends_on_the_standard_library_only() -> None:
    tree = ast.parse(Path(kitefleet.states.__file__).read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {str(node.module).split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert imported <= set(sys.stdlib_module_names) | {"__future__"}
