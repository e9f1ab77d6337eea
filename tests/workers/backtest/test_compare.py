"""workers.backtest.compare on plain rows: each kind of difference is found, each tolerance holds."""

from __future__ import annotations

from datetime import date, datetime

from kitefleet.clock import IST
from workers.backtest.compare import JobEntry, JobExit, Report, compare_entries, compare_exits
from workers.backtest.model import OrderRow

DAY = date(2026, 12, 4)
OPEN = datetime(2026, 12, 4, 9, 15, tzinfo=IST)
TICKS = {"INFY": 0.1, "WIPRO": 0.01}


def at(hms: str) -> datetime:
    return datetime.combine(DAY, datetime.strptime(hms, "%H:%M:%S").time(), IST)


def buy(symbol: str, qty: int, price: float, when: str = "09:20:00") -> OrderRow:
    return OrderRow("hourly_low", at(when), symbol, "BUY", "entry", qty, price, qty, price, "COMPLETE", 10.0)


def sell(symbol: str, price: float, when: str, reason: str = "hourly_low", purpose: str = "exit") -> OrderRow:
    return OrderRow("hourly_low", at(when), symbol, "SELL", purpose, 10, price, 10, price, "COMPLETE", 10.0, reason)


def job_exit(symbol: str, price: float, prev: str, decided: str, quoted: str, level: float | None = 1518.0,
             rule: str = "hourly_low") -> JobExit:
    return JobExit(DAY, symbol, rule, level, price, at(decided), at(prev), at(quoted))


def exits(job: list[JobExit], replay: list[OrderRow], until: str = "15:30:00",
          levels: dict[tuple[date, str], float | None] | None = None) -> Report:
    report = Report()
    compare_exits(job, replay, TICKS, report, openings={DAY: OPEN}, until=at(until), poll_seconds=30,
                  levels=levels)
    return report


def test_entries_agree_within_one_tick_and_exact_quantity() -> None:
    report = Report()
    compare_entries([JobEntry(DAY, "INFY", 132, 1504.7), JobEntry(DAY, "WIPRO", 188, 266.21)],
                    [buy("INFY", 132, 1504.8), buy("WIPRO", 188, 266.21)], TICKS, report)
    assert report.same and report.entries == 2


def test_entries_differ_by_quantity_price_and_presence() -> None:
    report = Report()
    compare_entries([JobEntry(DAY, "INFY", 132, 1504.7), JobEntry(DAY, "WIPRO", 188, 266.21),
                     JobEntry(DAY, "ITC", 477, 418.85)],
                    [buy("INFY", 131, 1504.7), buy("WIPRO", 188, 266.24), buy("MARUTI", 2, 17483.0)], TICKS, report)
    text = "\n".join(report.differences)
    assert "INFY" in text and "quantity 132 (jobs) vs 131" in text
    assert "WIPRO" in text and "more than one tick" in text
    assert "ITC on 2026-12-04: sent by the jobs, not by the replay" in text
    assert "MARUTI on 2026-12-04: sent by the replay, not by the jobs" in text
    assert len(report.differences) == 4


def test_an_exit_decided_between_the_jobs_polls_on_the_same_minute_agrees() -> None:
    # the jobs: poll at 11:47:40 saw nothing, the 11:48:10 poll's quote at 11:48:12 decided (minute 11:47)
    job = [job_exit("INFY", 1510.4, "11:47:40", "11:48:10", "11:48:12")]
    assert exits(job, [sell("INFY", 1510.4, "11:48:30")], levels={(DAY, "INFY"): 1518.0}).same
    assert exits(job, [sell("INFY", 1510.5, "11:48:00")]).same  # one tick apart


def test_an_exit_outside_the_jobs_polls_is_a_difference() -> None:
    job = [job_exit("INFY", 1510.4, "11:47:40", "11:48:10", "11:48:12")]
    early = exits(job, [sell("INFY", 1510.4, "11:47:30")])
    assert len(early.differences) == 1 and "outside the jobs' polls" in early.differences[0]
    late = exits(job, [sell("INFY", 1510.4, "11:48:43")])  # past the quote + one 30 s poll
    assert len(late.differences) == 1 and "outside the jobs' polls" in late.differences[0]


def test_price_rule_and_level_differences() -> None:
    job = [job_exit("INFY", 1510.4, "11:47:40", "11:48:10", "11:48:12")]
    price = exits(job, [sell("INFY", 1509.0, "11:48:30")])
    assert "more than one tick" in price.differences[0]
    rule = exits(job, [sell("INFY", 1510.4, "11:48:30", reason="atr_trailing")])
    assert "rule hourly_low (jobs) vs atr_trailing (replay)" in rule.differences[0]
    level = exits(job, [sell("INFY", 1510.4, "11:48:30")], levels={(DAY, "INFY"): 1519.0})
    assert "level 1518.0 (jobs) vs 1519.0 (replay)" in level.differences[0]


def test_a_job_that_saw_a_later_minute_is_noted_not_failed() -> None:
    # the jobs' polls lagged: the deciding quote at 11:49:05 saw minute 11:48; the replay decided at 11:48:30
    job = [job_exit("INFY", 1505.0, "11:47:40", "11:49:02", "11:49:05")]
    report = exits(job, [sell("INFY", 1510.4, "11:48:30")])
    assert report.same and len(report.notes) == 1 and "not compared" in report.notes[0]
    same_price = exits([job_exit("INFY", 1510.4, "11:47:40", "11:49:02", "11:49:05")],
                       [sell("INFY", 1510.4, "11:48:30")])
    assert same_price.same and not same_price.notes


def test_an_exit_only_one_side_made_is_a_difference_unless_at_the_cut() -> None:
    assert "not by the replay" in exits([job_exit("INFY", 1510.4, "11:47:40", "11:48:10", "11:48:12")],
                                        []).differences[0]
    assert "not by the jobs" in exits([], [sell("WIPRO", 264.0, "11:49:30")], until="12:18:00").differences[0]
    cut = exits([], [sell("WIPRO", 264.0, "12:17:00")], until="12:18:00")
    assert cut.same and "not required of them" in cut.notes[0]
    after = exits([], [sell("WIPRO", 264.0, "12:30:00")], until="12:18:00")
    assert after.same and not after.notes


def test_a_stop_gtt_sale_matches_a_replay_stop() -> None:
    gtt = [JobExit(DAY, "INFY", "gtt", None, 1400.0, None)]
    assert exits(gtt, [sell("INFY", 1400.0, "13:00:00", reason="stop", purpose="stop")]).same
    assert "gtt (jobs) vs hourly_low (replay)" in exits(gtt, [sell("INFY", 1400.0, "13:00:00")]).differences[0]


def test_missing_poll_times_are_a_difference() -> None:
    job = [JobExit(DAY, "INFY", "hourly_low", 1518.0, 1510.4, at("11:48:10"))]
    assert "lacks its poll times" in exits(job, [sell("INFY", 1510.4, "11:48:30")]).differences[0]


def test_one_tick_bound_is_inclusive() -> None:
    report = Report()
    compare_entries([JobEntry(DAY, "WIPRO", 1, 266.21)], [buy("WIPRO", 1, 266.22)], TICKS, report)
    assert report.same


def test_an_exit_the_jobs_could_not_see_for_a_gap_in_their_polls_is_a_note() -> None:
    # the watchdog did not poll from 11:14:50 to 12:01:27 (a starved process); its next polls saw the
    # price back above the level, and it sold at 12:03; the replay sold at the breach at 11:16
    job = [job_exit("INFY", 1505.0, "12:01:27", "12:03:00", "12:03:08")]
    gap = [(at("11:14:50"), at("12:01:27"))]
    without = exits(job, [sell("INFY", 1510.4, "11:16:00")])
    assert "outside the jobs' polls" in without.differences[0]
    report = Report()
    compare_exits(job, [sell("INFY", 1510.4, "11:16:00")], TICKS, report, openings={DAY: OPEN},
                  until=at("15:30:00"), poll_seconds=30, gaps=gap)
    assert report.same and "did not poll (11:14:50 to 12:01:27)" in report.notes[0]
    # a replay exit the jobs never made, inside a gap: a note too; outside one: a difference
    report = Report()
    compare_exits([], [sell("WIPRO", 264.0, "11:30:00")], TICKS, report, openings={DAY: OPEN},
                  until=at("15:30:00"), poll_seconds=30, gaps=gap)
    assert report.same and "did not poll" in report.notes[0]
    report = Report()
    compare_exits([], [sell("WIPRO", 264.0, "12:30:00")], TICKS, report, openings={DAY: OPEN},
                  until=at("15:30:00"), poll_seconds=30, gaps=gap)
    assert "not by the jobs" in report.differences[0]


def test_an_entry_sent_in_a_later_minute_than_planned_is_a_note() -> None:
    late = JobEntry(DAY, "INFY", 131, 1506.0, planned_at=at("09:20:50"), sent_at=at("09:21:02"))
    report = Report()
    compare_entries([late], [buy("INFY", 132, 1504.7)], TICKS, report)
    assert report.same and report.entries == 1 and "a later minute's book" in report.notes[0]
    same_minute = JobEntry(DAY, "INFY", 131, 1506.0, planned_at=at("09:20:02"), sent_at=at("09:20:09"))
    report = Report()
    compare_entries([same_minute], [buy("INFY", 132, 1504.7)], TICKS, report)
    assert len(report.differences) == 2 and not report.notes


def test_an_exit_on_a_close_the_jobs_never_read_with_their_level_is_a_note() -> None:
    # the level took effect at 11:16:56; the replay sold on minute 11:15's close (its 11:16:00 poll);
    # the jobs' poll saw it, but their fresh quote came at 11:17:01 (minute 11:16, back above the
    # level), they sold at 12:03 (another symbol's quote at 11:16:58 says nothing about INFY)
    job = [JobExit(DAY, "INFY", "hourly_low", 1518.0, 1505.0, at("12:03:00"), at("12:01:32"), at("12:03:08"),
                   level_at=at("11:16:56"))]
    replay = [sell("INFY", 1510.4, "11:16:00")]

    def run(reads: list[str]) -> Report:
        report = Report()
        compare_exits(job, replay, TICKS, report, openings={DAY: OPEN}, until=at("15:30:00"), poll_seconds=60,
                      reads={(DAY, "INFY"): [at(t) for t in reads], (DAY, "WIPRO"): [at("11:16:58")]})
        return report

    missed = run(["11:15:58", "11:17:01", "11:18:01", "12:01:33", "12:03:08"])
    assert missed.same and "never read with their level in effect" in missed.notes[0]
    # a fresh quote at 11:16:58 returned minute 11:15's close with the level in effect: the jobs saw
    # the breach and did not sell: a difference
    seen = run(["11:16:58", "11:17:01", "12:01:33", "12:03:08"])
    assert "outside the jobs' polls" in seen.differences[0]
