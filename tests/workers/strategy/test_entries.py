"""The entry run's decisions (workers.strategy.entries), shared by place_orders_daily and the
backtest, on plain data."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from kitefleet.settings import KEYS, Settings
from workers.portfolio import BUY_PENDING, HELD, SOLD_TODAY
from workers.strategy.entries import (
    ALREADY_PLACED,
    Basis,
    EntryLimits,
    cap_new_entries,
    capital_room,
    check_at_send,
    complete_plan,
    entry_equity,
    over_cap_reason,
    select_entries,
    size_entries,
)
from workers.strategy.patterns import ScanResult
from workers.strategy.sizing import EntryPlan

#: the schema's defaults, as the job reads them (Settings) and as the backtest reads its dict
LIMITS = EntryLimits.from_settings(Settings(user="", env_file=Path(), values={}).optional_number)


def row(symbol: str, score: int = 7, rr: float = 2.0, entry: float = 100.0, stop: float = 95.0) -> ScanResult:
    return ScanResult(symbol, score, entry=entry, stop_loss=stop, risk_reward=rr)


def ask(price: float, quantity: int = 10_000) -> dict[str, list[dict[str, float]]]:
    return {"sell": [{"price": price, "quantity": quantity, "orders": 1}]}


def test_limits_from_the_jobs_settings_and_from_a_plain_dict_with_the_schema_defaults_agree() -> None:
    values: dict[str, object] = {"MAX_CAPITAL": 50_000.0, "MAX_NEW_ENTRIES_PER_DAY": 2}
    job = EntryLimits.from_settings(Settings(user="", env_file=Path(), values=values).optional_number)

    def from_dict(key: str) -> float | None:
        value = values.get(key, KEYS[key].default)
        return None if value is None else float(value)  # type: ignore[arg-type]

    assert EntryLimits.from_settings(from_dict) == job
    assert job.max_capital == 50_000.0 and job.new_per_day == 2 and job.risk_percent is None
    assert LIMITS.max_capital is None and LIMITS.new_per_day == KEYS["MAX_NEW_ENTRIES_PER_DAY"].default
    with pytest.raises(KeyError, match="MIN_SCORE"):
        EntryLimits.from_settings(lambda key: None)


def test_entry_equity_is_cash_plus_the_managed_shares_at_their_ltp() -> None:
    assert entry_equity(100_000.0, 2_500.004) == 102_500.0
    assert entry_equity(1_000.0, 0.0) == 1_000.0


def test_selection_skips_held_sold_today_and_pending_and_counts_only_taken_slots() -> None:
    rows = [row("HELD"), row("SOLD", 5, rr=0.5), row("PEND"), row("A", 6), row("B", 5), row("C", 5, rr=1.0),
            row("LOW", 3)]
    blocked = {"HELD": HELD, "SOLD": SOLD_TODAY, "PEND": BUY_PENDING}
    # two slots taken (the held and the pending one; a symbol sold today holds nothing)
    selected, skipped = select_entries(rows, blocked, 2, replace(LIMITS, max_positions=4))
    assert [r.symbol for r in selected] == ["A", "B"]
    reasons = {s.symbol: s.reason for s in skipped}
    assert reasons["SOLD"] == SOLD_TODAY and reasons["PEND"] == BUY_PENDING and reasons["HELD"] == HELD
    assert reasons["C"] == "MAX_CNC_POSITIONS 4 reached (2 held or pending + 2 selected)"
    assert reasons["LOW"].startswith("score 3 below MIN_SCORE")
    # the blocked symbols are reported first (SOLD ranks below C), then the rest in the scan's order
    assert [s.symbol for s in skipped] == ["HELD", "PEND", "SOLD", "C", "LOW"]


def test_a_manual_list_keeps_its_order_and_min_score_only_with_scores() -> None:
    rows = [row("Z", 1), row("Y", 9), row("X", 2)]
    picked, _ = select_entries(rows, {}, 0, LIMITS, has_score=False, manual=True)
    assert [r.symbol for r in picked] == ["Z", "Y", "X"]  # a person's pick: no MIN_SCORE, file order
    scored, skipped = select_entries(rows, {}, 0, LIMITS, has_score=True, manual=True)
    assert [r.symbol for r in scored] == ["Y"] and {s.symbol for s in skipped} == {"Z", "X"}
    ranked, _ = select_entries([row("Z", 5), row("Y", 9)], {}, 0, LIMITS)
    assert [r.symbol for r in ranked] == ["Y", "Z"]  # a scan: best first


def test_completing_a_plan_never_reselects_what_was_sent() -> None:
    planned = [row("A"), row("B"), row("C"), row("D")]
    selected, skipped = complete_plan(planned, {"A": f"{ALREADY_PLACED}: order 1 (COMPLETE)"},
                                      {"A": HELD, "C": SOLD_TODAY})
    assert [r.symbol for r in selected] == ["B", "D"]
    assert [(s.symbol, s.reason) for s in skipped] == [("A", f"{ALREADY_PLACED}: order 1 (COMPLETE)"),
                                                        ("C", SOLD_TODAY)]


def test_per_day_cap_counts_the_entries_already_sent_today() -> None:
    assert cap_new_entries(["A", "B", "C"], (), 0, 2) == (["A", "B"], ["C"])
    assert cap_new_entries(["A", "B", "C"], (), 2, 3) == (["A"], ["B", "C"])
    assert cap_new_entries(["A", "B"], (), 5, 3) == ([], ["A", "B"])
    # an entry of this list already at the broker is no new entry: kept, and it takes no room
    assert cap_new_entries(["A", "B", "C"], {"A"}, 1, 2) == (["A", "B"], ["C"])
    assert over_cap_reason(3) == "MAX_NEW_ENTRIES_PER_DAY 3 reached today"


def test_max_capital_room_is_used_up_entry_by_entry() -> None:
    rows = [row("A"), row("B"), row("C")]
    basis = Basis(cash=300_000.0, equity=300_000.0, n_selected=3)
    limits = replace(LIMITS, percent=100.0, max_capital=100_000.0, position_percent=None, max_value=None)
    ticks = dict.fromkeys("ABC", 0.05)
    # 20,000 already deployed: 80,000 left; each entry's budget is 100,000 (1000 shares at 100)
    sized = size_entries(rows, dict.fromkeys("ABC", 100.0), ticks, basis, limits, deployed=20_000.0)
    assert [z.plan.quantity for z in sized] == [800, 0, 0]
    assert [z.planned_quantity for z in sized] == [1000, 1000, 1000]
    assert sized[0].refusals == [] and "MAX_CAPITAL (₹80,000.00 left to deploy)" in (sized[0].plan.sized_down or "")
    assert sized[1].refusals == ["quantity 0: sized down from 1000 to 0 shares by MAX_CAPITAL (₹0.00 left to deploy)"]
    # room enough for the first and part of the second
    sized = size_entries(rows, dict.fromkeys("ABC", 100.0), ticks, basis, replace(limits, max_capital=150_000.0))
    assert [z.plan.quantity for z in sized] == [1000, 500, 0]


def test_sizing_refusals_as_the_job_shows_them() -> None:
    basis = Basis(cash=1_000_000.0, equity=1_000_000.0, n_selected=1)
    limits = replace(LIMITS, percent=50.0, max_value=100_000.0, position_percent=None)
    (z,) = size_entries([row("A")], {"A": 100.0}, {"A": 0.05}, basis, limits, paused=True)
    # MAX_ORDER_VALUE sizes down (no "order value" refusal); the pause flag refuses
    assert z.plan.quantity == 1000 and z.planned_quantity == 5000
    assert z.refusals == ["trading paused (pause flag set)"]
    (z,) = size_entries([row("A")], {"A": 0.0}, {"A": 0.05}, basis, limits)
    assert z.refusals == ["quantity 0: no valid LTP (0.0)", "no valid LTP (0.0) for the price sanity band"]
    # a later run never exceeds the first run's quantity
    (z,) = size_entries([row("A")], {"A": 100.0}, {"A": 0.05}, basis, limits, planned_qty={"A": 300})
    assert z.plan.quantity == 300 and z.refusals == []


def _planned(ltp: float = 100.0, quantity: int = 400) -> tuple[Basis, EntryLimits, EntryPlan]:
    basis = Basis(cash=100_000.0, equity=100_000.0, n_selected=1)
    limits = replace(LIMITS, percent=50.0, slippage=1.0, band=3.0, max_gap=3.0, position_percent=None)
    (z,) = size_entries([row("A")], {"A": ltp}, {"A": 0.05}, basis, limits, planned_qty={"A": quantity})
    return basis, limits, z.plan


def test_at_send_a_gapped_up_symbol_is_skipped_before_any_repricing() -> None:
    basis, limits, plan = _planned()
    checked = check_at_send(plan, row("A"), 104.0, ask(104.05), None, basis, limits)
    assert checked.gone is not None and checked.gone.startswith("gapped up: LTP 104.00 is 4.00 % above")
    assert checked.plan is plan and checked.best_ask is None and checked.sendable is None
    at_circuit = check_at_send(plan, row("A"), 101.0, ask(101.05), 101.0, basis, limits)
    assert at_circuit.gone is not None and at_circuit.gone.startswith("at the upper circuit")


def test_at_send_reprices_at_the_ask_and_bands_against_the_planned_ltp() -> None:
    basis, limits, plan = _planned()
    ok = check_at_send(plan, row("A"), 100.0, ask(100.1), None, basis, limits)
    assert ok.refusals == [] and ok.sendable is not None and ok.plan.limit_price == 100.1 and ok.best_ask == 100.1
    # the fresh LTP moved 2.9 % up (inside the gap filter), the ask within the slippage cap of it,
    # but 3.05 % from the LTP the plan was sized on: the sanity band refuses it
    basis, limits, plan = _planned(ltp=100.0, quantity=400)
    stale = check_at_send(plan, row("A", entry=101.0), 102.9, ask(103.05), None, basis, limits)
    assert stale.gone is None and stale.plan.limit_price == 103.05
    assert len(stale.refusals) == 1 and "outside the ±3 % sanity band" in stale.refusals[0]
    assert "LTP 100.0" in stale.refusals[0]
    # no sellers: refused, the planned order kept for the record
    none = check_at_send(plan, row("A"), 100.0, {"sell": []}, None, basis, limits)
    assert none.plan is plan and none.refusals[0].startswith("no sellers")
    paused = check_at_send(plan, row("A"), 100.0, ask(100.1), None, basis, limits, paused=True)
    assert paused.refusals == ["trading paused (pause flag set)"]


def test_max_capital_exceeded_by_the_ask_reprice() -> None:
    """A plan fitted to MAX_CAPITAL's room at the LTP (300 shares x 100 = 30,000 of 30,000) was
    re-priced at the ask (100.05) and sent as 30,015: the room is checked again at the send."""
    basis = Basis(cash=1_000_000.0, equity=1_000_000.0, n_selected=1)
    limits = replace(LIMITS, percent=100.0, max_capital=50_000.0, position_percent=None, max_value=None,
                     slippage=1.0)
    (z,) = size_entries([row("A")], {"A": 100.0}, {"A": 0.05}, basis, limits, deployed=20_000.0)
    assert z.plan.quantity == 300 and z.plan.order_value == 30_000.0
    room = capital_room(limits, 20_000.0)
    assert room == 30_000.0
    sent = check_at_send(z.plan, row("A"), 100.0, ask(100.05), None, basis, limits, capital_room=room)
    assert sent.refusals == [] and sent.plan.limit_price == 100.05
    assert sent.plan.quantity == 299 and sent.plan.order_value <= 30_000.0
    assert "MAX_CAPITAL" in (sent.plan.sized_down or "")
    # nothing left: quantity 0, refused
    gone = check_at_send(z.plan, row("A"), 100.0, ask(100.05), None, basis, limits, capital_room=0.0)
    assert gone.sendable is None and any("quantity" in r for r in gone.refusals), gone.refusals
    assert capital_room(replace(limits, max_capital=None), 20_000.0) is None
    assert capital_room(limits, 80_000.0) == 0.0
