"""The pure parts of two benchmarks, on plain data: how bench_watchdog splits a reaction, and how
bench_memory turns readings into its table and verdicts."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from bench.bench_memory import FLEET_GOAL_MB, JobRun, rows
from bench.bench_watchdog import effective_interval, split_reaction, table
from kitefleet.clock import IST

CROSS = datetime(2026, 3, 4, 11, 41, tzinfo=IST)
CROSS_WALL = 1000.0


def _row(hms: str, wall: float, path: str, method: str = "GET", order_id: str | None = None) -> dict[str, Any]:
    return {"time": f"2026-03-04T{hms}.000000+05:30", "wall_time": wall, "api_key": "k", "method": method,
            "path": path, "status": 200, "order_id": order_id}


def test_split_at_the_ltp_request_that_saw_the_crossing_not_at_the_poll_start() -> None:
    # Speed 60: the poll started at 11:40:14 (the job's decided_at), the limiter held its LTP
    # request back to 11:41:03; the order was in the book at 11:41:05.
    audit = [
        _row("11:40:02", 998.03, "/quote/ltp"),
        _row("11:41:03", 1000.05, "/quote/ltp"),
        _row("11:41:04", 1000.07, "/portfolio/holdings"),
        _row("11:41:05", 1000.09, "/orders/regular", "POST", "ORD1"),
        _row("11:41:30", 1000.5, "/quote/ltp"),
    ]
    split = split_reaction(audit, "ORD1", CROSS, CROSS_WALL)
    assert split["seen_at"] == "11:41:03"
    assert split["order_at"] == "11:41:05"
    assert split["poll_wait_sim_s"] == 3.0
    assert split["processing_sim_s"] == 2.0
    assert split["reaction_sim_s"] == split["poll_wait_sim_s"] + split["processing_sim_s"] == 5.0
    assert split["reaction_wall_s"] == 0.09
    assert split["poll_wait_wall_s"] == 0.05
    assert split["processing_wall_s"] == 0.04


def test_an_exit_on_an_ltp_from_before_the_crossing_is_a_scenario_error() -> None:
    audit = [_row("11:40:50", 999.8, "/quote/ltp"), _row("11:40:51", 999.9, "/orders/regular", "POST", "ORD1")]
    with pytest.raises(SystemExit, match="crossed early"):
        split_reaction(audit, "ORD1", CROSS, CROSS_WALL)


def test_interval_is_the_poll_unless_the_quote_limit_is_longer() -> None:
    assert effective_interval(30, 20) == 30
    assert effective_interval(60, 60) == pytest.approx(61.2)  # one quote a wall second + 20 ms margin


def test_watchdog_table_has_a_header_and_a_row_per_size() -> None:
    res = {"positions": 1, "order_at": "11:41:05", "reaction_sim_s": 5.0, "reaction_wall_s": 0.25,
           "poll_wait_sim_s": 4.9, "processing_sim_s": 0.1, "processing_wall_s": 0.01, "interval_sim_s": 30.0,
           "worst_case_sim_s": 30.1, "goal_sim_s": 50.0, "window_polls": 6, "ltp_calls_per_poll": 1.0,
           "calls_per_poll": 1.5, "startup_wall_s": 1.9, "verdict": "ok"}
    lines = table([res, {**res, "positions": 50}])
    assert len(lines) == 3
    assert lines[0].split()[0] == "positions" and "verdict" in lines[0]
    assert lines[2].split()[0] == "50" and lines[2].endswith("ok")
    assert len({len(line) for line in lines}) == 1  # aligned columns


def test_memory_rows_verdicts_and_fleet_projection() -> None:
    idle = [{"user": "U0", "rss_mb": 22.0, "peak_rss_mb": 22.5, "pss_mb": 14.0, "samples": 5},
            {"user": "U1", "rss_mb": 31.0, "peak_rss_mb": 31.5, "pss_mb": 20.0, "samples": 5}]
    job = JobRun("summary", 0, 57 * 1024, 10, 0.7, "", "")
    body = rows(idle, [job], {"kiteconnect": 54 * 1024})
    by_name = {r[0]: r for r in body}
    assert by_name["scheduler U0 (idle)"][-1] == "ok"
    assert by_name["scheduler U1 (idle)"][-1] == "OVER"
    fleet = by_name["50 idle schedulers (50 x RSS)"]
    assert fleet[1] == "1550" and fleet[3] == f"< {FLEET_GOAL_MB:.0f}" and fleet[-1] == "OVER"
    assert by_name["50 idle schedulers (50 x PSS, 2 up)"][1] == "1000"
    assert by_name["summary"][2] == "57.0"
    assert by_name["floor: import kiteconnect"][2] == "54.0"
