"""Where the paper broker answers as Kite's own samples show (zerodha/kiteconnect-mocks) and
Zerodha's help pages say: profile, holdings' isin and authorised_date, a modification's
timestamps, no auction_number, open orders' exchange_update_timestamp, disabled GTTs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from kitefleet.sim.universe import _isin_check_digit, isin_for
from paper_broker.auth import profile_payload
from tests.paper_broker.test_engine import INFY, MON, TUE, Rig, at, gtt


@pytest.fixture
def rig(tmp_path: Path) -> Rig:
    return Rig(tmp_path, at(MON, "10:00:30"))


def test_profile_lists_only_what_is_accepted(rig: Rig) -> None:
    profile = profile_payload(rig.som)
    assert (profile["products"], profile["exchanges"]) == (["CNC"], ["NSE"])


def test_isin_is_plausible_and_stable() -> None:
    # The check digit of real ISINs (INFY, RELIANCE) comes out right.
    assert (_isin_check_digit("INE009A0102"), _isin_check_digit("INE002A0101")) == ("1", "8")
    isin = isin_for("INFY")
    assert re.fullmatch(r"INE[0-9A-Z]{4}01\d{3}", isin) and isin == isin_for("INFY") != isin_for("TCS")
    assert _isin_check_digit(isin[:-1]) == isin[-1]


def test_holdings_carry_isin_and_authorised_date(rig: Rig) -> None:
    rig.place(order_type="MARKET", market_protection=-1)
    rig.move(at(TUE, "10:00"))
    h = rig.holding()
    assert h["isin"] == isin_for("INFY") and h["authorised_date"] == f"{TUE.isoformat()} 00:00:00"


def test_modify_moves_the_timestamps_and_open_orders_have_an_update_time(rig: Rig) -> None:
    oid = rig.place(price=1400)
    o = rig.engine.orders(rig.som)[0]
    assert o["exchange_update_timestamp"] == o["order_timestamp"] == "2026-11-23 10:00:30"
    assert "auction_number" not in o
    rig.clock.t = at(MON, "11:20:05")
    rig.engine.modify_order(rig.som, "regular", oid, {"price": "1401"})
    o = rig.engine.orders(rig.som)[0]
    assert o["order_timestamp"] == o["exchange_timestamp"] == "2026-11-23 11:20:05"
    assert o["exchange_update_timestamp"] == "2026-11-23 11:20:05"


def test_a_gtt_whose_trigger_is_within_a_quarter_percent_of_the_ltp_is_disabled(rig: Rig) -> None:
    near = rig.engine.place_gtt(rig.som, gtt("single", [1497], 1500, [("SELL", 1490)]))["trigger_id"]
    far = rig.engine.place_gtt(rig.som, gtt("single", [1496], 1500, [("SELL", 1490)]))["trigger_id"]
    assert rig.engine.get_gtt(rig.som, near)["status"] == "disabled"  # 3 / 1500 = 0.2 %
    assert rig.engine.get_gtt(rig.som, far)["status"] == "active"  # 4 / 1500 = 0.27 %
    rig.market.set_path(INFY, MON, {"10:05": 1490.0})
    rig.move(at(MON, "10:10"))
    assert rig.engine.get_gtt(rig.som, near)["status"] == "disabled"  # never fires
    assert rig.engine.get_gtt(rig.som, far)["status"] == "triggered"
