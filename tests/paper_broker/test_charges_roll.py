"""Charges debited at the settlement roll: each day's contract note, computed by hand here, leaves
the account's cash exactly once, in the roll's own SQLite transaction (a restart at the roll, or a
roll that fails half-way, cannot debit twice or lose the debit)."""

from __future__ import annotations

from pathlib import Path

import pytest

from paper_broker.portfolio import CncBook
from tests.paper_broker.test_engine import FRI, INFY, MON, START_CASH, THU, TUE, WED, Rig, at

# MON: BUY 10 INFY at 1500 (value 15000, delivery). STT 0.1 % = 15 (to the rupee); NSE transaction
# charge 15000 x 0.00297 % = 0.4455 -> 0.45; SEBI 15000 / 1e7 x 10 = 0.015 -> 0.02; stamp
# 0.015 % = 2.25; brokerage 0 -> the token 0.01 a delivery note carries; GST 18 % of
# (0.01 + 0.45 + 0.02) = 0.0864 -> 0.09. Total 17.82, no DP charge on a buy.
MON_NOTE = 17.82
# TUE: SELL those 10 (T1 shares) at 1510 (15100). STT 15.1 -> 15; transaction 0.44847 -> 0.45;
# SEBI 0.0151 -> 0.02; no stamp on a sell; brokerage 0.01; GST 0.09. Note 15.57, plus the DP
# charge of a sale from the demat, T1 included: 13 + 18 % = 15.34. Debit 30.91.
TUE_DEBIT = 30.91
# THU (Sai): BUY 10 at 1500 and SELL 10 at 1510 the same day: intraday. Brokerage min(20, 0.03 %)
# per order: 4.50 + 4.53 = 9.03; STT 0.025 % of the netted 10 at the day's average 1505 = 3.7625
# -> 4; transaction 30100 x 0.00297 % = 0.893970 -> 0.89; SEBI 0.0301 -> 0.03; stamp 0.003 % of
# 15000 = 0.45; GST 18 % of (9.03 + 0.89 + 0.03) = 1.791 -> 1.79. Total 16.19, no DP charge.
THU_NOTE = 16.19


def _cash(rig: Rig, account: object = None) -> float:
    return float(rig.engine.account_summary(account or rig.som)["cash"])


def _round_trip(rig: Rig) -> None:
    rig.place(order_type="MARKET", market_protection=-1)
    rig.move(at(MON, "15:45"))
    assert _cash(rig) == pytest.approx(START_CASH - 15000)
    assert rig.engine.account_summary(rig.som)["charges_today"] == pytest.approx(MON_NOTE)


def test_a_delivery_round_trip_over_the_roll_debits_each_note_once(tmp_path: Path) -> None:
    rig = Rig(tmp_path, at(MON, "10:00:30"))
    _round_trip(rig)
    rig.move(at(TUE, "09:00"))
    assert _cash(rig) == pytest.approx(START_CASH - 15000 - MON_NOTE, abs=1e-9)
    rig.market.set_path(INFY, TUE, {"09:15": 1510.0})
    rig.move(at(TUE, "10:00"))
    rig.place(transaction_type="SELL", order_type="MARKET", market_protection=-1)
    rig.move(at(WED, "00:30"))
    summary = rig.engine.account_summary(rig.som)
    assert summary["cash"] == pytest.approx(START_CASH + 100 - MON_NOTE - TUE_DEBIT, abs=1e-9)
    assert summary["charges"] == pytest.approx(MON_NOTE + TUE_DEBIT)
    assert summary["last_contract_note"]["day"] == TUE.isoformat()
    assert summary["last_contract_note"]["dp_scrips"] == ["INFY"]
    # Kite's own figures stay gross.
    assert summary["realised_pnl"] == 100.0
    rig.market.set_path(INFY, THU, {"09:15": 1500.0, "12:05": 1510.0})
    rig.move(at(THU, "12:00"))  # WED is a holiday here: no roll, no second debit
    assert _cash(rig) == pytest.approx(START_CASH + 100 - MON_NOTE - TUE_DEBIT, abs=1e-9)
    # Sai trades in and out on THU: intraday charges.
    rig.place(rig.sai, order_type="MARKET", market_protection=-1)
    rig.move(at(THU, "12:10"))
    rig.place(rig.sai, transaction_type="SELL", order_type="MARKET", market_protection=-1)
    rig.move(at(THU, "23:59"))
    assert _cash(rig, rig.sai) == pytest.approx(START_CASH + 100)
    rig.move(at(FRI, "00:01"))
    assert _cash(rig, rig.sai) == pytest.approx(START_CASH + 100 - THU_NOTE, abs=1e-9)


def test_a_broker_restart_around_the_roll_debits_once(tmp_path: Path) -> None:
    rig = Rig(tmp_path, at(MON, "10:00:30"))
    _round_trip(rig)
    rig.move(at(MON, "23:59:59"))
    rig.restart()
    rig.move(at(TUE, "00:00:01"))  # the roll, by the restarted broker
    assert _cash(rig) == pytest.approx(START_CASH - 15000 - MON_NOTE, abs=1e-9)
    rig.restart()  # right after the roll: catching up from the high-water mark must not roll again
    rig.move(at(TUE, "09:00"))
    rig.restart()
    assert _cash(rig) == pytest.approx(START_CASH - 15000 - MON_NOTE, abs=1e-9)
    count = rig.db.conn().execute("SELECT COUNT(*) FROM contract_notes").fetchone()[0]
    assert count == 1


def test_a_roll_that_fails_half_way_leaves_no_debit_and_the_restart_debits_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rig = Rig(tmp_path, at(MON, "10:00:30"))
    _round_trip(rig)

    def crash(self: CncBook) -> None:
        raise RuntimeError("killed in the middle of the roll")

    monkeypatch.setattr(CncBook, "roll", crash)
    with pytest.raises(RuntimeError):
        rig.move(at(TUE, "00:05"))
    monkeypatch.undo()
    rig.restart()  # the debit was rolled back with the rest: the restart rolls (and debits) once
    assert _cash(rig) == pytest.approx(START_CASH - 15000 - MON_NOTE, abs=1e-9)
    assert rig.holding()["t1_quantity"] == 10


def test_the_roll_agrees_with_the_virtual_contract_note_of_the_days_orders(tmp_path: Path) -> None:
    """What ``summary`` shows before the roll (get_virtual_contract_note on today's executed
    orders) is what the roll debits."""
    from kitefleet.sim.charges import virtual_contract_note

    rig = Rig(tmp_path, at(MON, "10:00:30"))
    rig.place(order_type="MARKET", market_protection=-1, quantity=7)
    rig.place(order_type="MARKET", market_protection=-1, quantity=5, tradingsymbol="TCS")
    rig.place(transaction_type="SELL", order_type="MARKET", market_protection=-1, quantity=3)
    rig.move(at(MON, "15:40"))
    executed = [o for o in rig.engine.orders(rig.som) if o["status"] == "COMPLETE"]
    shown = sum(o["charges"]["total"] for o in virtual_contract_note(executed))
    rig.move(at(TUE, "00:01"))
    debited = rig.engine.account_summary(rig.som)["charges"]
    # The note rounds STT per scrip and the turnover charges on the day's totals; the per-order
    # figures are unrounded: they agree to within the rounding of a few figures.
    assert debited == pytest.approx(shown, abs=1.5)
    assert debited > 0


def test_no_trades_no_note(tmp_path: Path) -> None:
    rig = Rig(tmp_path, at(MON, "10:00:30"))
    rig.move(at(TUE, "10:00"))
    assert _cash(rig) == START_CASH
    assert rig.engine.account_summary(rig.som)["last_contract_note"] is None
