"""The backtest job's own logic on stand-in parts (the engine and the report are other helpers'):
the output folder's .partial dance, the refusals, the rules. Real files, no broker."""

from __future__ import annotations

import argparse
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from kitefleet.calendar import NseCalendar
from kitefleet.errors import UsageError
from workers.backtest.model import BacktestSpec, RuleResult
from workers.jobs.backtest import Parts, check_arguments, execute, rules_of, sessions_of

SPEC = BacktestSpec(user="Som", start=date(2026, 1, 5), end=date(2026, 1, 9), rules=("hourly_low",))
CAL = NseCalendar(tuple(date(2026, 1, d) for d in (5, 6, 7, 8, 9, 12)), {}, None)


class _Killed(Exception):
    pass


def _parts(calls: list[str], *, die_in_write: bool = False) -> Parts:
    def run(spec: BacktestSpec, source: Any, calendar: NseCalendar, *, progress: Any = None) -> list[RuleResult]:
        calls.append("run")
        if progress is not None:
            progress(5, 5)
        return [RuleResult(rule=r) for r in spec.rules]

    def write_outputs(out: Path, spec: BacktestSpec, results: list[RuleResult], summaries: dict) -> None:
        calls.append(f"write {out.name}")
        (out / "summary.json").write_text("{}")
        if die_in_write:
            raise _Killed

    return Parts(run=run, summarize=lambda r, s: {"rule": r.rule}, side_by_side=lambda s: "table",
                 write_outputs=write_outputs)


def test_outputs_are_written_to_partial_then_renamed(tmp_path: Path) -> None:
    calls: list[str] = []
    out = tmp_path / "bt"
    _, summaries = execute(SPEC, object(), CAL, out, _parts(calls))
    assert calls == ["run", "write bt.partial"]
    assert (out / "summary.json").is_file() and not (tmp_path / "bt.partial").exists()
    assert summaries == {"hourly_low": {"rule": "hourly_low"}}


def test_a_killed_run_leaves_no_out_and_its_rerun_is_not_refused(tmp_path: Path) -> None:
    out = tmp_path / "bt"
    with pytest.raises(_Killed):
        execute(SPEC, object(), CAL, out, _parts([], die_in_write=True))
    assert not out.exists() and (tmp_path / "bt.partial" / "summary.json").exists()
    execute(SPEC, object(), CAL, out, _parts([]))
    assert out.is_dir() and not (tmp_path / "bt.partial").exists()


def test_an_existing_out_is_refused_and_nothing_runs(tmp_path: Path) -> None:
    out = tmp_path / "bt"
    out.mkdir()
    (out / "mine.txt").write_text("keep")
    calls: list[str] = []
    with pytest.raises(UsageError, match="already exists"):
        execute(SPEC, object(), CAL, out, _parts(calls))
    assert calls == [] and (out / "mine.txt").read_text() == "keep"
    assert not (tmp_path / "bt.partial").exists()


def _args(**kw: Any) -> argparse.Namespace:
    base = {"start": date(2026, 1, 5), "end": date(2026, 1, 9), "source": "paper", "seed": None, "scenario": None}
    return argparse.Namespace(**{**base, **kw})


def test_bad_arguments_are_one_line_each(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="is after"):
        check_arguments(_args(start=date(2026, 1, 9), end=date(2026, 1, 5)))
    with pytest.raises(UsageError, match="paper market"):
        check_arguments(_args(source="live", seed=3))
    with pytest.raises(UsageError, match="no such file"):
        check_arguments(_args(scenario=tmp_path / "none.json"))
    check_arguments(_args())


def test_a_range_with_no_session_is_refused() -> None:
    with pytest.raises(UsageError, match="no NSE session"):
        sessions_of(CAL, date(2026, 1, 10), date(2026, 1, 11))  # a weekend
    assert sessions_of(CAL, date(2026, 1, 5), date(2026, 1, 9)) == list(CAL.trading_days[:5])


def test_rules() -> None:
    assert rules_of("all", "hourly_low") == ("hourly_low", "atr_trailing")
    assert rules_of(None, "atr_trailing") == ("atr_trailing",)
    with pytest.raises(UsageError):
        rules_of(None, "nonsense")


def test_every_setting_handed_to_the_engine_is_a_schema_key() -> None:
    from kitefleet.settings import KEYS
    from workers.jobs.backtest import SETTINGS_KEYS

    assert [k for k in SETTINGS_KEYS if k not in KEYS] == []
    assert {"MIN_SCORE", "WATCHDOG_POLL_SECONDS", "MANAGE_SCOPE", "MAX_DAILY_LOSS_PERCENT"} <= set(SETTINGS_KEYS)
