"""A bot stop GTT in any state but ``active`` (Kite disables GTTs on a split or bonus ex-date and a
trigger too near the LTP, cancels them on a delisting) protects nothing: doctor fails the held
position, and update_cnc_stoploss treats it as gone and places a new stop under the next tag.
Real broker, real worker processes; the GTT's status is changed in the broker's own database, as
its corporate-action events change it."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path

from tests.integration.jobs.test_place_orders_daily import DAY_A, open_desk
from tests.support.broker import RunningBroker, broker_factory  # noqa: F401 (fixture)
from workers.jobs.doctor_checks import inactive_bot_stops

JOB = "update_cnc_stoploss"


def test_inactive_bot_stops_is_per_held_symbol() -> None:
    state = {"stops": {"INFY": {"gtt_id": 7}, "TCS": {"gtt_id": 8}, "SBIN": {"gtt_id": 9}}}
    gtts = [{"id": 7, "status": "disabled"}, {"id": 8, "status": "active"}, {"id": 9, "status": "cancelled"}]
    assert inactive_bot_stops({"INFY": 5, "TCS": 3}, gtts, state) == {
        "INFY": "INFY: the bot's stop GTT 7 is disabled, not active"}


def test_a_disabled_bot_stop_is_replaced_and_doctor_fails_until_then(
        tmp_path: Path, broker_factory: Callable[..., RunningBroker]) -> None:  # noqa: F811
    # Bought by hand here, so MANAGE_SCOPE=all makes it the bot's to protect (under `own` a
    # person's holding gets no bot stop at all: tests/integration/jobs/test_ownership.py).
    desk = open_desk(tmp_path, broker_factory, {"Som": {"MANAGE_SCOPE": "all"}}, DAY_A, ["INFY"])
    desk.kite("Som").place_order("regular", exchange="NSE", tradingsymbol="INFY", transaction_type="BUY",
                                 quantity=10, product="CNC", order_type="MARKET", market_protection=-1)
    first = {a["symbol"]: a for a in desk.ok("Som", JOB)["actions"]}["INFY"]
    assert first["action"] == "create"
    with sqlite3.connect(desk.broker.data_dir / "paper.db") as db:
        db.execute("UPDATE gtts SET status='disabled' WHERE id=?", (first["gtt_id"],))

    doctor = json.loads(desk.orchestrator("doctor", "--json").stdout)
    (gtt_row,) = [r for r in doctor["rows"] if r["user"] == "Som" and r["check"] == "gtt"]
    assert gtt_row["status"] == "fail" and f"GTT {first['gtt_id']} is disabled" in gtt_row["detail"]

    again = {a["symbol"]: a for a in desk.ok("Som", JOB)["actions"]}["INFY"]
    assert again["action"] == "create" and again["gtt_id"] != first["gtt_id"]
    assert desk.kite("Som").get_gtt(again["gtt_id"])["status"] == "active"
    assert desk.state("Som")["stops"]["INFY"]["gtt_id"] == again["gtt_id"]
    doctor = json.loads(desk.orchestrator("doctor", "--json").stdout)
    (gtt_row,) = [r for r in doctor["rows"] if r["user"] == "Som" and r["check"] == "gtt"]
    assert gtt_row["status"] != "fail", gtt_row
