"""The transition tables of kitefleet/states.py on plain data: the moves the code makes are
legal, the settled-meanwhile ones are explicit no-ops, anything else raises naming the legal moves."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kitefleet.state import StateStore
from kitefleet.states import (
    EXIT_PENDING,
    EXIT_TRANSITIONS,
    INTENT_OPEN,
    INTENT_TRANSITIONS,
    ExitStatus,
    IllegalTransition,
    IntentStatus,
    Move,
)
from tests.support.homes import make_home
from workers.exit_records import move, new_record
from workers.intents import IntentLog

IS, E = IntentStatus, ExitStatus
APPLY, KEEP = Move.APPLY, Move.KEEP


@pytest.mark.parametrize(("current", "to", "expected"), [
    (None, IS.PENDING, APPLY),  # record
    (IS.PENDING, IS.UNKNOWN, APPLY), (IS.PENDING, IS.SENT, APPLY), (IS.PENDING, IS.FAILED, APPLY),
    (IS.PENDING, IS.UNRESOLVED, APPLY),  # reconcile: an earlier day's, or two orders with the tag
    (IS.UNKNOWN, IS.UNKNOWN, APPLY), (IS.UNKNOWN, IS.SENT, APPLY), (IS.UNKNOWN, IS.FAILED, APPLY),
    (IS.FAILED, IS.PENDING, APPLY), (IS.FAILED, IS.SENT, APPLY), (IS.FAILED, IS.UNRESOLVED, APPLY),
    (IS.SENT, IS.SENT, APPLY),
    (IS.UNRESOLVED, IS.RESOLVED, APPLY),
    # another job's reconcile settled it between this job's read and its write
    (IS.SENT, IS.UNKNOWN, KEEP), (IS.SENT, IS.FAILED, KEEP), (IS.UNRESOLVED, IS.UNKNOWN, KEEP),
    (IS.UNRESOLVED, IS.FAILED, KEEP),
])
def test_intent_moves_the_code_makes(current: IntentStatus | None, to: IntentStatus, expected: Move) -> None:
    assert INTENT_TRANSITIONS.check(current, to) is expected


@pytest.mark.parametrize(("current", "to"), [
    (IS.SENT, IS.PENDING), (IS.UNKNOWN, IS.PENDING), (IS.PENDING, IS.PENDING), (IS.RESOLVED, IS.SENT),
    (IS.RESOLVED, IS.UNRESOLVED), (IS.UNRESOLVED, IS.SENT), (IS.PENDING, IS.RESOLVED), (None, IS.SENT),
])
def test_intent_moves_no_code_path_makes_raise_naming_the_legal_ones(current: IntentStatus | None,
                                                                     to: IntentStatus) -> None:
    with pytest.raises(IllegalTransition, match=f"-> {to} is not a move") as info:
        INTENT_TRANSITIONS.check(current, to, "TAG1")
    assert "TAG1" in str(info.value) and "legal from" in str(info.value)


def test_every_status_has_a_row_and_the_groupings_are_members() -> None:
    assert set(INTENT_TRANSITIONS.moves) == {None, *IntentStatus}
    assert set(EXIT_TRANSITIONS.moves) == {None, *ExitStatus}
    assert set(INTENT_OPEN) == {"pending", "unknown"}
    assert set(EXIT_PENDING) == {"sending", "sent", "unknown"}
    # stored as the same strings as before the enums (no schema change)
    assert json.dumps([IS.UNRESOLVED, E.NOT_SENT]) == '["unresolved", "not_sent"]'


@pytest.mark.parametrize(("current", "to"), [
    (None, E.SENDING), (E.NOT_SENT, E.SENDING),
    (E.SENDING, E.SENT), (E.SENDING, E.UNKNOWN), (E.SENDING, E.REJECTED), (E.SENDING, E.BLOCKED),
    (E.SENDING, E.NOT_SENT), (E.SENDING, E.LOST),
    (E.UNKNOWN, E.SENT), (E.UNKNOWN, E.LOST), (E.UNKNOWN, E.NOT_SENT), (E.UNKNOWN, E.BLOCKED),
    (E.UNKNOWN, E.REJECTED), (E.SENT, E.SENT), (E.SENT, E.BLOCKED), (E.LOST, E.SENT), (E.NOT_SENT, E.SENT),
    (None, E.SENT),  # a bot GTT's child order adopted from the book (issue 20: repriced like an exit)
])
def test_exit_record_moves_the_code_makes(current: ExitStatus | None, to: ExitStatus) -> None:
    assert EXIT_TRANSITIONS.check(current, to) is APPLY


@pytest.mark.parametrize(("current", "to"), [
    (E.REJECTED, E.SENDING), (E.BLOCKED, E.SENT), (E.LOST, E.SENDING), (E.SENT, E.SENDING),
    (E.SENT, E.NOT_SENT),
])
def test_exit_record_moves_no_code_path_makes_raise(current: ExitStatus | None, to: ExitStatus) -> None:
    record = new_record("exit", "EXTAG")
    if current is not None:
        record["status"] = current
    before = dict(record)
    with pytest.raises(IllegalTransition, match="exit record EXTAG"):
        move(record, to, note="x")
    assert record == before  # nothing written


def test_move_applies_status_and_fields() -> None:
    record = new_record("exit", "EXTAG")
    assert move(record, E.SENDING, price=10.0)
    assert record["status"] == "sending" and record["price"] == 10.0


def test_a_settled_intent_is_kept_by_a_late_mark(tmp_path: Path) -> None:
    """The table as IntentLog applies it: mark_failed after another job recorded the send keeps
    it sent; reopening a sent intent is a bug and raises without writing."""
    log = IntentLog(StateStore(make_home(tmp_path / "home"), "Som", "paper"))
    log.record("T1", "order", "INFY", "exit", {})
    log.mark_sent("T1", "42")
    assert log.mark_failed("T1", "late")["status"] == "sent" and log.get("T1")["note"] == ""
    with pytest.raises(IllegalTransition, match="sent -> pending"):
        log.reopen("T1")
    assert log.get("T1")["status"] == "sent"
