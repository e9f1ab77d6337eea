"""workers/marketdata.py on plain data: missing ranges, and paper and live never share a cache folder."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from kitefleet.home import Home
from workers.marketdata import missing_ranges

D = date.fromisoformat


def test_missing_ranges() -> None:
    assert missing_ranges([], D("2026-01-01"), D("2026-01-31")) == [(D("2026-01-01"), D("2026-01-31"))]
    covered = [(D("2026-01-05"), D("2026-01-10")), (D("2026-01-11"), D("2026-01-20"))]
    assert missing_ranges(covered, D("2026-01-06"), D("2026-01-19")) == []
    assert missing_ranges(covered, D("2026-01-01"), D("2026-01-25")) == [
        (D("2026-01-01"), D("2026-01-04")), (D("2026-01-21"), D("2026-01-25"))]
    gap = [(D("2026-01-01"), D("2026-01-02")), (D("2026-01-05"), D("2026-01-06"))]
    assert missing_ranges(gap, D("2026-01-01"), D("2026-01-06")) == [(D("2026-01-03"), D("2026-01-04"))]


def test_paper_and_live_sources_never_share_a_folder(tmp_path: Path) -> None:
    home = Home(tmp_path)
    folders = {home.market_data_dir(s) for s in ("live", "http://127.0.0.1:8765", "http://127.0.0.1:8766")}
    assert len(folders) == 3
    assert home.market_data_dir("live").name == "live"
