"""An entry refused by the RMS (insufficient funds) under both answers Kite has been seen to give
(``--rms-reject=row``: the order id of a REJECTED row; ``error``: HTTP 400 MarginException with the
row kept): the run record shows Kite's status_message, and a rerun finds the REJECTED row by its
tag, adopts it and sends nothing. Real broker, real worker processes, real kiteconnect."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integration.jobs.test_place_orders_daily import (
    DAY_A,
    JOB,
    PREV_SESSION,
    book_by_tag,
    open_desk,
    records,
    scan_row,
)
from tests.support.broker import RunningBroker, broker_factory  # noqa: F401 (fixture)
from workers.intents import make_tag

FUNDS_MESSAGE = "Insufficient funds. Required margin is"


@pytest.mark.parametrize("mode", ["row", "error"])
def test_an_entry_refused_for_funds_is_recorded_with_kites_message_and_never_resent(
        tmp_path: Path, broker_factory: Callable[..., RunningBroker], mode: str) -> None:  # noqa: F811
    def factory(home: object, **kwargs: object) -> RunningBroker:
        return broker_factory(home, extra_args=["--rms-reject", mode], **kwargs)

    desk = open_desk(tmp_path, factory, {"Som": {}}, DAY_A, ["INFY", "TCS"])
    desk.write_scan("Som", PREV_SESSION, [scan_row("INFY", 6, 1095, 1000, 1250)])
    # The first run fixes its plan (sized on the full cash) and dies before sending.
    assert desk.run("Som", JOB, fault="after_intent:INFY").returncode == -9
    # Meanwhile most of the cash is blocked by a resting order placed by hand.
    kite = desk.kite("Som")
    tcs = desk.ltp("Som", "TCS")
    price = math.floor(tcs * 0.95 * 10) / 10
    kite.place_order("regular", exchange="NSE", tradingsymbol="TCS", transaction_type="BUY", product="CNC",
                     order_type="LIMIT", quantity=math.floor(900_000 / price), price=price)
    before = desk.audit_len()
    out = desk.ok("Som", JOB)  # completes the plan: the entry is sent and refused
    tag = make_tag("Som", JOB, DAY_A.date(), "INFY", "entry")
    (row,) = book_by_tag(kite)[tag]
    assert row["status"] == "REJECTED" and row["status_message"].startswith(FUNDS_MESSAGE)
    assert len([w for w in desk.writes(before) if w["path"].startswith("/orders")]) == 1
    (entry,) = records(desk, "Som")[-1]["orders"]
    assert FUNDS_MESSAGE in entry["error_message"] and not entry["order_success"]
    assert out["placed"] == [] or all(p["symbol"] != "INFY" for p in out["placed"])
    state_status = desk.state("Som")["intents"][tag]["status"]
    assert state_status == ("sent" if mode == "row" else "failed")

    again = desk.audit_len()
    desk.ok("Som", JOB)  # finds the REJECTED row by its tag: adopted, not sent again
    assert [w for w in desk.writes(again) if w["path"].startswith("/orders")] == []
    assert len(book_by_tag(kite)[tag]) == 1
    intent = desk.state("Som")["intents"][tag]
    assert (intent["status"], intent["broker_id"]) == ("sent", row["order_id"])
    if mode == "error":  # adopted from the book, with the status it shows
        assert intent["order_status"] == "REJECTED"
