"""kitefleet/sim/charges.py: each contract note below is worked out by hand, line by line, from
Zerodha's published rates (the table's docstring) and rounding (STT per scrip to the rupee, the
rest to the paisa, half up)."""

from __future__ import annotations

import dataclasses
from decimal import Decimal

import pytest

from kitefleet.sim.charges import ZERODHA_EQUITY, ContractNote, Fill, contract_note, order_charges


def _lines(note: ContractNote) -> dict[str, Decimal]:
    return {"brokerage": note.brokerage, "stt": note.stt, "exchange": note.exchange_turnover_charge,
            "sebi": note.sebi_turnover_charge, "stamp": note.stamp_duty, "gst": note.gst,
            "total": note.total, "dp": note.dp_charges, "debit": note.debit}


def _d(**lines: str) -> dict[str, Decimal]:
    return {k: Decimal(v) for k, v in lines.items()}


def test_the_table_is_dated_and_carries_the_published_rates() -> None:
    assert ZERODHA_EQUITY.published.isoformat() == "2024-10-01"
    assert ZERODHA_EQUITY.exchange_txn == Decimal("0.0000297")  # NSE 0.00297 %
    assert ZERODHA_EQUITY.sebi * 10**7 == 10  # Rs 10 per crore
    assert ZERODHA_EQUITY.dp_per_scrip_day == 13


def test_delivery_round_trip() -> None:
    # Day 1: buy 10 INFY at 1500.00, held overnight. Turnover 15,000.
    #   STT       15,000 x 0.1 %       = 15.00         -> 15 (rupee)
    #   exchange  15,000 x 0.00297 %   = 0.4455        -> 0.45
    #   SEBI      15,000 x Rs 10/crore = 0.015         -> 0.02 (half up)
    #   stamp     15,000 x 0.015 %     = 2.25
    #   brokerage 0 on delivery, the note's token paisa  = 0.01
    #   GST       18 % x (0.01 + 0.45 + 0.02) = 0.0864 -> 0.09
    #   total     15 + 0.45 + 0.02 + 2.25 + 0.01 + 0.09 = 17.82; no sale, no DP charge
    day1 = contract_note([Fill("B1", "INFY", "BUY", 10, 1500.00)])
    assert _lines(day1) == _d(brokerage="0.01", stt="15", exchange="0.45", sebi="0.02", stamp="2.25",
                              gst="0.09", total="17.82", dp="0", debit="17.82")
    # Day 3: the shares are in the demat; sell 10 at 1550.00. Turnover 15,500.
    #   STT       15,500 x 0.1 %     = 15.50          -> 16 (50 paise round up)
    #   exchange  15,500 x 0.00297 % = 0.460350       -> 0.46
    #   SEBI      0.0155                              -> 0.02
    #   stamp     0 (sell)
    #   brokerage token paisa                         = 0.01
    #   GST       18 % x (0.01 + 0.46 + 0.02) = 0.0882 -> 0.09
    #   total     16 + 0.46 + 0.02 + 0.01 + 0.09 = 16.58
    #   DP        13 + 18 % GST = 15.34 (ledger, not on the note) -> debit 31.92
    day3 = contract_note([Fill("S1", "INFY", "SELL", 10, 1550.00)])
    assert _lines(day3) == _d(brokerage="0.01", stt="16", exchange="0.46", sebi="0.02", stamp="0",
                              gst="0.09", total="16.58", dp="15.34", debit="31.92")
    assert day3.dp_scrips == ("INFY",)
    # Gross 500.00, charges 17.82 + 31.92 = 49.74, net 450.26.
    assert 500 - day1.debit - day3.debit == Decimal("450.26")


def test_t1_sale() -> None:
    # Day 1: buy 20 TCS at 4000.00; day 2 (the shares are T1, not yet in the demat): sell 20 at
    # 4100.00. Turnover 82,000.
    #   STT       82,000 x 0.1 %     = 82.00          -> 82
    #   exchange  82,000 x 0.00297 % = 2.43540        -> 2.44
    #   SEBI      0.082                               -> 0.08
    #   brokerage token paisa                         = 0.01
    #   GST       18 % x (0.01 + 2.44 + 0.08) = 0.4554 -> 0.46
    #   total     82 + 2.44 + 0.08 + 0.01 + 0.46 = 84.99
    sale = [Fill("S1", "TCS", "SELL", 20, 4100.00)]
    note = contract_note(sale, t1_sold={"TCS": 20})
    # Zerodha charges DP on a BTST sale too (T1 shares settle through the client's demat):
    # 15.34, debit 100.33.
    assert _lines(note) == _d(brokerage="0.01", stt="82", exchange="2.44", sebi="0.08", stamp="0",
                              gst="0.46", total="84.99", dp="15.34", debit="100.33")
    # Under the older rule, no DP charge on T1 shares that never reached the demat ...
    older = dataclasses.replace(ZERODHA_EQUITY, dp_on_t1_sale=False)
    assert contract_note(sale, t1_sold={"TCS": 20}, table=older).debit == Decimal("84.99")
    # ... but one as soon as any of the day's sale comes out of the demat.
    mixed = [Fill("S1", "TCS", "SELL", 25, 4100.00)]
    assert contract_note(mixed, t1_sold={"TCS": 20}, table=older).dp_scrips == ("TCS",)


def test_same_day_round_trip_is_intraday() -> None:
    # Buy 100 SBIN at 800.00, sell 100 at 810.00 the same day, both CNC: intraday.
    #   brokerage min(20, 0.03 % x 80,000 = 24.00) = 20 + min(20, 0.03 % x 81,000 = 24.30) = 20 -> 40
    #   STT       day's average (80,000 + 81,000) / 200 = 805; 100 x 805 x 0.025 % = 20.125 -> 20
    #   exchange  161,000 x 0.00297 % = 4.78170       -> 4.78
    #   SEBI      0.161                               -> 0.16
    #   stamp     80,000 x 0.003 %    = 2.40
    #   GST       18 % x (40 + 4.78 + 0.16) = 8.0892  -> 8.09
    #   total     40 + 20 + 4.78 + 0.16 + 2.40 + 8.09 = 75.43; nothing left the demat: no DP
    note = contract_note([Fill("B1", "SBIN", "BUY", 100, 800.00), Fill("S1", "SBIN", "SELL", 100, 810.00)])
    assert _lines(note) == _d(brokerage="40", stt="20", exchange="4.78", sebi="0.16", stamp="2.40",
                              gst="8.09", total="75.43", dp="0", debit="75.43")
    assert [o.intraday_quantity for o in note.orders] == [100, 100]


def test_same_day_partial_netting_leaves_the_rest_delivery() -> None:
    # Buy 100 SBIN at 800.00, sell 60 at 810.00: 60 intraday, 40 delivery (bought, held).
    #   brokerage buy: min(20, 0.03 % x 60 x 800 = 14.40) = 14.40; sell: min(20, 14.58) = 14.58 -> 28.98
    #   STT       average (80,000 + 48,600) / 160 = 803.75
    #             intraday 60 x 803.75 x 0.025 % = 12.05625 -> 12; delivery 40 x 803.75 x 0.1 % = 32.15 -> 32
    #   exchange  128,600 x 0.00297 % = 3.819420      -> 3.82
    #   SEBI      0.1286                              -> 0.13
    #   stamp     40 x 800 x 0.015 % = 4.80 + 60 x 800 x 0.003 % = 1.44 -> 6.24
    #   GST       18 % x (28.98 + 3.82 + 0.13) = 5.9274 -> 5.93
    #   total     28.98 + 44 + 3.82 + 0.13 + 6.24 + 5.93 = 89.10
    note = contract_note([Fill("B1", "SBIN", "BUY", 100, 800.00), Fill("S1", "SBIN", "SELL", 60, 810.00)])
    assert _lines(note) == _d(brokerage="28.98", stt="44", exchange="3.82", sebi="0.13", stamp="6.24",
                              gst="5.93", total="89.10", dp="0", debit="89.10")


def test_zerodhas_own_stt_example() -> None:
    # support.zerodha.com, "How is the STT calculated?": 500 bought at 100, 500 sold at 105,
    # 200 bought at 110; average 103.75; intraday 12.969 -> 13, delivery 20.75 -> 21.
    note = contract_note([Fill("1", "X", "BUY", 500, 100), Fill("2", "X", "SELL", 500, 105),
                          Fill("3", "X", "BUY", 200, 110)])
    assert note.stt == 13 + 21
    assert [o.intraday_quantity for o in note.orders] == [500, 500, 0]


def test_selling_holdings_and_buying_back_the_same_day_nets() -> None:
    # Quantity nets whatever the order: nothing leaves the demat, so no DP charge.
    note = contract_note([Fill("S1", "ITC", "SELL", 50, 400), Fill("B1", "ITC", "BUY", 50, 398)])
    assert note.dp_scrips == () and all(o.intraday_quantity == 50 for o in note.orders)


def test_order_charges_in_kites_shape() -> None:
    # One delivery BUY of 1 INFY at 1498 (the price of Kite's order_margins sample):
    # STT 1.498, exchange 1498 x 0.00297 % = 0.0444906, SEBI 0.001498, stamp 0.2247 -> 0.22,
    # GST 18 % x (0 + 0.0444906 + 0.001498) = 0.008277948,
    # total 1.498 + 0.0444906 + 0.001498 + 0.22 + 0.008277948 = 1.772266548.
    charges = order_charges(Fill("1", "INFY", "BUY", 1, 1498)).kite()
    assert charges == {
        "transaction_tax": 1.498, "transaction_tax_type": "stt", "exchange_turnover_charge": 0.0444906,
        "sebi_turnover_charge": 0.001498, "brokerage": 0.0, "stamp_duty": 0.22,
        "gst": {"igst": pytest.approx(0.008277948), "cgst": 0, "sgst": 0, "total": pytest.approx(0.008277948)},
        "total": pytest.approx(1.772266548),
    }


@pytest.mark.parametrize(("fill", "message"), [
    (dict(transaction_type="HOLD"), "transaction_type 'HOLD'"),
    (dict(quantity=0), "quantity 0"),
    (dict(quantity=1.5), "quantity 1.5"),
    (dict(average_price=0), "average_price 0"),
])
def test_bad_fills_name_the_order_and_the_value(fill: dict[str, object], message: str) -> None:
    base: dict[str, object] = dict(order_id="42", tradingsymbol="X", transaction_type="BUY", quantity=1,
                                   average_price=10.0)
    with pytest.raises(ValueError, match=rf"order 42: {message}"):
        Fill(**{**base, **fill})  # type: ignore[arg-type]
