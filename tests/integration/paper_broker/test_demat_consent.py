"""Demat consent. Without DDPI/POA (``profile().meta.demat_consent`` empty) a sale of settled
holdings is REJECTED ("holdings not authorised") unless they were authorised that day; a sale of
today's buys is not a sale out of the demat. Doctor fails a live user without consent."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import requests

from paper_broker.engine import NOT_AUTHORISED
from tests.integration.jobs.test_place_orders_daily import DAY_A, open_desk
from tests.paper_broker.test_engine import FRI, MON, THU, Rig, at
from tests.support.broker import RunningBroker, broker_factory  # noqa: F401 (fixture)
from workers.jobs.doctor_checks import demat_consent_problem


def test_doctor_fails_a_live_user_without_demat_consent() -> None:
    assert "no DDPI/POA" in (demat_consent_problem({"meta": {"demat_consent": ""}}, live=True) or "")
    assert demat_consent_problem({"meta": {}}, live=True) is not None
    for value in ("consent", "physical"):
        assert demat_consent_problem({"meta": {"demat_consent": value}}, live=True) is None
    assert demat_consent_problem({"meta": {"demat_consent": ""}}, live=False) is None


def test_without_consent_a_sale_of_settled_holdings_needs_that_days_authorisation(tmp_path: Path) -> None:
    rig = Rig(tmp_path, at(MON, "10:00:30"))
    rig.engine.consent_of = lambda api_key: "" if api_key == rig.som.api_key else "consent"
    rig.place(order_type="MARKET", market_protection=-1, quantity=10)
    # Today's buys are not in the demat: selling some of them back the same day needs nothing.
    intraday = rig.place(transaction_type="SELL", order_type="MARKET", market_protection=-1, quantity=2)
    assert rig.order(intraday)["status"] == "COMPLETE"
    rig.move(at(THU, "10:00"))  # settled (WED is a holiday in this calendar)
    refused = rig.place(transaction_type="SELL", order_type="MARKET", market_protection=-1, quantity=3, tag="exitX")
    o = rig.order(refused)
    assert (o["status"], o["status_message"], o["tag"]) == ("REJECTED", NOT_AUTHORISED, "exitX")
    assert "holdings not authorised" in o["status_message"]
    rig.engine.authorise(rig.som, "INFY")
    sold = rig.place(transaction_type="SELL", order_type="MARKET", market_protection=-1, quantity=3)
    assert rig.order(sold)["status"] == "COMPLETE"
    rig.move(at(FRI, "10:00"))  # an authorisation lasts the day
    again = rig.place(transaction_type="SELL", order_type="MARKET", market_protection=-1, quantity=1)
    assert rig.order(again)["status"] == "REJECTED"


def test_paper_demat_consent_feeds_the_profile_and_the_admin_route_authorises(
        tmp_path: Path, broker_factory: Callable[..., RunningBroker]) -> None:  # noqa: F811
    desk = open_desk(tmp_path, broker_factory, {"Som": {"PAPER_DEMAT_CONSENT": ""}, "Sai": {}}, DAY_A, ["INFY"])
    desk.broker.reload_accounts()  # the env files gained the setting after the broker started
    assert desk.kite("Som").profile()["meta"]["demat_consent"] == ""
    assert desk.kite("Sai").profile()["meta"]["demat_consent"] == "consent"
    answer = desk.broker.admin("POST", "/paper/authorise", params={"user": "Som", "symbol": "INFY"})
    assert answer == {"user": "Som", "symbol": "INFY", "day": DAY_A.date().isoformat()}
    with pytest.raises(requests.HTTPError):
        desk.broker.admin("POST", "/paper/authorise", params={"user": "Nobody", "symbol": "INFY"})
