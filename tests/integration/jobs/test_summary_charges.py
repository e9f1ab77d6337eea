"""``summary`` (what ``status`` shows) reports today's charges from Kite's own
``get_virtual_contract_note`` and net P&L = gross - charges; the paper broker debits the same note
from cash at the night's settlement roll. Real broker process, real worker process, real client."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from kitefleet.sim.charges import virtual_contract_note
from tests.integration.jobs.test_place_orders_daily import DAY_A, Desk, last_json, open_desk
from tests.support.broker import RunningBroker, broker_factory  # noqa: F401 (fixture)


@pytest.fixture
def desk(tmp_path: Path, broker_factory: Callable[..., RunningBroker]) -> Iterator[Desk]:  # noqa: F811
    yield open_desk(tmp_path, broker_factory, {"Som": {}}, DAY_A, ["INFY"])


def _summary(desk: Desk) -> dict[str, object]:
    proc = desk.run("Som", "summary")
    assert proc.returncode == 0, proc.stderr
    return last_json(proc.stdout)


def test_summary_shows_todays_charges_and_net_pnl_and_the_roll_debits_them(desk: Desk) -> None:
    before = _summary(desk)
    assert (before["charges"], before["net_pnl"]) == (0.0, before["day_pnl"])
    kite = desk.kite("Som")
    for side in ("BUY", "SELL"):  # a same-day round trip: intraday charges
        kite.place_order("regular", exchange="NSE", tradingsymbol="INFY", transaction_type=side, quantity=20,
                         product="CNC", order_type="MARKET", market_protection=-1)
    executed = [o for o in kite.orders() if o["status"] == "COMPLETE"]
    assert len(executed) == 2
    expected = round(sum(o["charges"]["total"] for o in virtual_contract_note(executed)), 2)
    out = _summary(desk)
    assert out["charges"] == pytest.approx(expected, abs=0.005) and out["charges"] > 0
    assert out["net_pnl"] == pytest.approx(out["day_pnl"] - out["charges"], abs=0.011)
    (acct,) = desk.broker.accounts()
    assert acct["charges"] == 0 and acct["charges_today"] > 0  # not debited before the roll
    cash = acct["cash"]
    desk.at(DAY_A.replace(hour=0, minute=5) + timedelta(days=1))
    (acct,) = desk.broker.accounts()
    assert acct["cash"] == pytest.approx(cash - acct["charges"])
    assert acct["charges"] == acct["last_contract_note"]["debit"]
    # The contract note rounds per scrip and on the day's totals; the per-order figures do not.
    assert acct["charges"] == pytest.approx(expected, abs=1.0)
