"""The pure parts of the benchmarks, on plain data: how bench_watchdog splits a reaction, how
bench_memory turns readings into its table and verdicts, and how bench_fleet_day derives lateness
and verdicts from the fleet's own files."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from bench.bench_fleet_day import (
    parse_daemon_log,
    parse_request_log,
    percentile,
    poll_lateness,
    request_stats,
    resource_out,
    run_windows,
    slot_of,
    start_lateness,
    verdict,
)
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
    assert effective_interval(60, 60) == 60  # one quote a market second + 20 wall ms of margin: 2.2 s
    assert effective_interval(1, 60) == pytest.approx(2.2)
    assert effective_interval(0.5, 1) == pytest.approx(1.02)  # real time: one quote a wall second


def test_watchdog_table_has_a_header_and_a_row_per_size() -> None:
    res = {"positions": 1, "order_at": "11:41:05", "reaction_sim_s": 5.0, "reaction_wall_s": 0.25,
           "poll_wait_sim_s": 4.9, "processing_sim_s": 0.1, "processing_wall_s": 0.01, "interval_sim_s": 30.0,
           "worst_case_sim_s": 30.1, "goal_sim_s": 50.0, "window_polls": 6, "ltp_calls_per_poll": 1.0,
           "calls_per_poll": 1.5, "startup_wall_s": 1.9, "levels_wall_s": 18.1, "verdict": "ok"}
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


# --- bench_fleet_day: lateness and verdicts derived from the files the fleet writes ------------------
DAEMON_LOG = """\
2026-11-04 08:55:00 INFO user=U001 job=daemon d: scheduler for U001 (paper) started, pid 9
2026-11-04 09:00:01 INFO user=U001 job=daemon d: update_cnc_stoploss started (pid 11; on time)
2026-11-04 09:00:09 INFO user=U001 job=daemon d: update_cnc_stoploss (pid 11) ended: exit 0 (ok)
2026-11-04 09:15:00 INFO user=U001 job=daemon d: hourly_candle_watchdog started (pid 12; session open)
2026-11-04 09:21:30 INFO user=U001 job=daemon d: place_orders_daily started (pid 13; on time)
2026-11-04 09:24:00 INFO user=U001 job=daemon d: place_orders_daily (pid 13) ended: exit 7 (temporary)
2026-11-04 09:28:00 INFO user=U001 job=daemon d: place_orders_daily started (pid 14; retry after temporary failure)
"""
SCHEDULES = {"update_cnc_stoploss": "09:00,14:00", "hourly_candle_watchdog": "session",
             "place_orders_daily": "09:20", "pattern_daily": "16:00"}


def _ist(hms: str) -> datetime:
    return datetime.fromisoformat(f"2026-11-04T{hms}+05:30")


def test_fleet_start_lateness_per_slot_retries_apart() -> None:
    starts, ends = parse_daemon_log(DAEMON_LOG.splitlines(keepends=True))
    assert [j for _, j, _ in starts] == ["update_cnc_stoploss", "hourly_candle_watchdog", "place_orders_daily",
                                        "place_orders_daily"]
    assert [j for _, j in ends] == ["update_cnc_stoploss", "place_orders_daily"]
    late, retries = start_lateness(starts, SCHEDULES, _ist("09:15:00"), _ist("08:45:00"))
    assert retries == 1
    assert [(x["job"], x["slot"], x["late_s"]) for x in late] == [
        ("update_cnc_stoploss", "09:00", 1.0), ("hourly_candle_watchdog", "09:15", 0.0),
        ("place_orders_daily", "09:20", 90.0)]
    # a slot from before the scheduler was up (a catch-up) is not a scheduled start it was late for
    assert [x["slot"] for x in start_lateness(starts, SCHEDULES, _ist("09:15:00"), _ist("09:10:00"))[0]] == [
        "09:15", "09:20"]
    assert slot_of("09:00,14:00", _ist("14:03:00"), _ist("09:15:00")) == _ist("14:00:00")
    assert slot_of("16:00", _ist("09:03:00"), _ist("09:15:00")) is None


def test_fleet_poll_lateness_leaves_out_gaps_beside_other_jobs_ltp_requests() -> None:
    starts, ends = parse_daemon_log(DAEMON_LOG.splitlines(keepends=True))
    windows = run_windows(starts, ends, "hourly_candle_watchdog", _ist("15:30:00"))
    assert (_ist("09:21:30"), _ist("09:24:00")) in windows
    assert (_ist("09:28:00"), _ist("15:30:00")) in windows  # still running at the end
    polls = [_ist(t) for t in ("09:16:00", "09:17:30", "09:19:45", "09:22:00", "09:23:00", "09:25:00")]
    late, skipped = poll_lateness(polls, windows, 90.0)
    # 09:16:00->09:17:30 on time; ->09:19:45 45 s late; the three gaps touching place_orders_daily's
    # run (its own LTP requests at 09:22 and 09:23 look like polls) are left out
    assert late == [0.0, 45.0]
    assert skipped == 3


def test_fleet_percentile_and_request_stats() -> None:
    assert percentile([], 99) is None
    assert percentile([5.0, 1.0, 3.0], 50) == 3.0
    assert percentile(range(1, 101), 99) == 99.0
    audit = [{"wall_time": 100.1, "status": 200, "path": "/quote/ltp"},
             {"wall_time": 100.9, "status": 429, "path": "/quote/ltp"},
             {"wall_time": 102.0, "status": 502, "path": "/orders/regular"}]
    stats = request_stats(audit, parse_request_log([
        "2026-11-04 22:00:00,000 INFO paper_broker.requests: GET /quote/ltp 200 1.5ms key=abcd",
        "2026-11-04 22:00:00,001 INFO paper_broker.audit: not a request line"]))
    assert (stats["requests"], stats["rate_peak"], stats["rate_mean"]) == (3, 2, 1.0)
    assert (stats["http_429"], stats["http_5xx"], stats["latency_p50_ms"]) == (1, 1, 1.5)


def test_fleet_verdict_names_the_missed_goal_and_the_resource() -> None:
    res: dict[str, Any] = {
        "incomplete": "", "start_late_p99_s": 30.0, "poll_late_p99_s": 20.0, "poll_s": 90,
        "broker": {"http_429": 0, "http_5xx": 0}, "mem_available_min_mb": 20000, "mem_total_mb": 24000,
        "cpu_saturated_share": 0.1, "load_peak": 3.0}
    assert verdict(res) == []
    assert resource_out(res).startswith("none saturated")
    slow = {**res, "poll_late_p99_s": 200.0, "cpu_saturated_share": 0.6}
    assert verdict(slow) == ["poll lateness p99 200 s > 90 s"]
    assert resource_out(slow).startswith("CPU")
    assert verdict({**res, "start_late_p99_s": 900.0})[0].startswith("start lateness p99 900 s")
    tight = {**res, "mem_available_min_mb": 1000}
    assert verdict(tight) == ["MemAvailable down to 1000 MB"] and resource_out(tight).startswith("memory")
    assert verdict({**res, "poll_late_p99_s": None}) == ["no watchdog polls"]
