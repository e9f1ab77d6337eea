"""workers/jobs/place_orders_daily.py on plain data: input files, manual selection, the pause flag, cash."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.homes import make_home
from workers.strategy.patterns import ScanResult


# --- pure parts: --from files, manual selection, the pause flag -----------------------------------
def test_from_files_accept_csv_and_json_shapes(tmp_path: Path) -> None:
    from workers.entry_input import InputError, read_manual

    csv_file = tmp_path / "a.csv"
    csv_file.write_text("Ticker,Stop_Loss,Target1,Score\nnse:infy,1400,1700,6\nTCS,,,\n", encoding="utf-8")
    rows, has_score = read_manual(csv_file)
    assert has_score and [(r.symbol, r.stop_loss, r.target_1, r.score) for r in rows] == \
        [("INFY", 1400.0, 1700.0, 6), ("TCS", None, None, 0)]
    json_file = tmp_path / "b.json"
    json_file.write_text(json.dumps({"stocks": [{"symbol": "SBIN", "target": 990}, "ITC"]}), encoding="utf-8")
    rows, has_score = read_manual(json_file)
    assert not has_score and [(r.symbol, r.target_1) for r in rows] == [("SBIN", 990.0), ("ITC", None)]
    bad = tmp_path / "c.csv"
    bad.write_text("name\nINFY\n", encoding="utf-8")
    with pytest.raises(InputError, match="no ticker"):
        read_manual(bad)


def test_manual_selection_keeps_file_order_and_skips_held_pending_and_beyond_the_cap() -> None:
    from workers.strategy.sizing import select_candidates

    rows = [ScanResult(s, 0) for s in ("TCS", "INFY", "TCS", "SBIN", "ITC", "WIPRO")]
    blocked = {"INFY": "already held", "SBIN": "open BUY order pending"}
    selected, skipped = select_candidates(rows, blocked, min_score=None, max_positions=3, held_count=1, manual=True)
    assert [r.symbol for r in selected] == ["TCS", "ITC"]
    assert {s.symbol: s.reason.split(" ")[0] for s in skipped} == \
        {"INFY": "already", "TCS": "duplicate", "SBIN": "open", "WIPRO": "MAX_CNC_POSITIONS"}


def test_pause_flag_records_who_when_why_and_a_damaged_flag_still_pauses(tmp_path: Path) -> None:
    from kitefleet import pause

    home = make_home(tmp_path / "home")
    assert not pause.is_paused(home, "Som") and pause.pause_info(home, "Som") is None
    info = pause.pause(home, "Som", reason="results day", by="tester@host")
    assert pause.is_paused(home, "Som") and pause.pause_info(home, "Som") == info
    assert "results day" in pause.describe(info) and "tester@host" in pause.describe(info)
    pause.pause_file(home, "Som").write_text("{not json", encoding="utf-8")
    assert pause.is_paused(home, "Som") and "unreadable" in pause.describe(pause.pause_info(home, "Som"))
    assert pause.resume(home, "Som") and not pause.resume(home, "Som")
    assert not pause.is_paused(home, "Som")


def test_cash_for_cnc_buys_is_the_live_balance_never_collateral() -> None:
    from workers.portfolio import available_cash

    # Live Kite with pledged holdings: net = live_balance + collateral; collateral cannot fund CNC.
    live = {"net": 350_000.0, "available": {"cash": 120_000.0, "live_balance": 100_000.0, "collateral": 250_000.0,
                                            "intraday_payin": 0.0}, "utilised": {"debits": 20_000.0}}
    assert available_cash(live) == 100_000.0
    # No live_balance: cash + intraday payin - debits (still no collateral).
    no_live = {"net": 350_000.0, "available": {"cash": 120_000.0, "collateral": 250_000.0,
                                               "intraday_payin": 5_000.0}, "utilised": {"debits": 20_000.0}}
    assert available_cash(no_live) == 105_000.0
    assert available_cash({"net": 50_000.0}) == 0.0  # nothing but net: no cash figure to trust


def test_paper_margins_give_the_same_cash_as_before() -> None:
    from paper_broker.portfolio import segment_wire
    from workers.portfolio import available_cash

    equity = segment_wire(opening_balance=1_000_000.0, sales=12_500.0, spent=300_000.0, blocked=40_000.0)
    assert available_cash(equity) == pytest.approx(equity["net"]) == pytest.approx(672_500.0)
