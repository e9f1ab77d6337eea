"""workers/scans.py: the scan CSV round-trips and the latest scan file is found."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from kitefleet.home import Home
from workers.scans import latest_scan_file, read_scan, scan_csv, scan_file
from workers.strategy.patterns import SCAN_COLUMNS, ScanResult


def test_scan_csv_round_trips(tmp_path: Path) -> None:
    results = [
        ScanResult("INFY", 5, ("above_sma20", "momentum_5d"), entry=1500.05, stop_loss=1450.0, target_1=1600.15,
                   target_2=1650.2, risk=50.05, risk_reward=3.0, atr=20.1234, trend="bull",
                   growth_pattern="mixed", last_session="2026-03-04", candles=124),
        ScanResult("NOPE", 0, reason="unknown instrument: NSE lists no NOPE"),
        ScanResult("TCS", 0, last_session="2026-03-04", candles=12, reason="insufficient data: 12 candles, need 60"),
    ]
    home = Home(tmp_path)
    assert latest_scan_file(home, "Som") is None
    for day in (date(2026, 3, 2), date(2026, 3, 4)):
        path = scan_file(home, "Som", day)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(scan_csv(results), encoding="utf-8")
    assert path.read_text(encoding="utf-8").splitlines()[0] == ",".join(SCAN_COLUMNS)
    assert read_scan(path) == results
    assert latest_scan_file(home, "Som") == tmp_path / "data" / "Som" / "scans" / "pattern_daily_20260304.csv"
