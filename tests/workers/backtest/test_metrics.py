"""The summary figures against hand computations on plain rows."""

from __future__ import annotations

import json
import math
from datetime import date, datetime, timedelta, timezone

from workers.backtest.metrics import side_by_side, summarize
from workers.backtest.model import BacktestSpec, EquityRow, OrderRow, RuleResult, TradeRow

IST = timezone(timedelta(hours=5, minutes=30))


def spec(start: date = date(2026, 1, 1), end: date = date(2026, 1, 31)) -> BacktestSpec:
    return BacktestSpec(user="Asha", start=start, end=end, rules=("hourly_low",), initial_cash=100_000.0)


def eq(day: int, equity: float, charges: float = 0.0, exposure: float = 0.5) -> EquityRow:
    return EquityRow("hourly_low", date(2026, 1, day), equity, 0.0, equity, charges, exposure)


def trade(pnl: float, days: int, charges: float = 10.0) -> TradeRow:
    t = datetime(2026, 1, 2, 9, 20, tzinfo=IST)
    return TradeRow("hourly_low", "INFY", t, 100.0, t + timedelta(days=days), 101.0, 10, charges, pnl, "stop", days)


def order(qty: int, price: float) -> OrderRow:
    t = datetime(2026, 1, 2, 9, 20, tzinfo=IST)
    return OrderRow("hourly_low", t, "INFY", "BUY", "entry", qty, price, qty, price, "COMPLETE", 1.0)


def test_figures_match_hand_computation() -> None:
    equity = [eq(2, 101_000, 5.0, 0.2), eq(5, 99_000, 7.0, 0.4), eq(6, 102_000, 3.0, 0.6)]
    trades = [trade(3000.0, 0), trade(-1000.0, 2), trade(1000.0, 4)]
    r = RuleResult("hourly_low", trades=trades, orders=[order(10, 100.0), order(5, 200.0)], equity=equity)
    s = summarize(r, spec())
    assert s["net_pnl"] == 2000.0
    assert s["charges"] == 15.0
    assert s["trades"] == 3
    assert s["win_rate"] == round(2 / 3, 4)
    assert s["avg_win"] == 2000.0
    assert s["avg_loss"] == -1000.0
    assert s["profit_factor"] == 4.0
    assert s["avg_holding_days"] == 2.0
    assert s["same_day_share"] == round(1 / 3, 4)
    assert s["turnover"] == 2000.0
    assert s["exposure"] == 0.4
    # peak 101,000 -> 99,000
    assert s["max_drawdown"] == 2000.0
    assert s["max_drawdown_pct"] == round(2000 / 101_000 * 100, 4)
    rets = [0.01, 99_000 / 101_000 - 1, 102_000 / 99_000 - 1]
    m = sum(rets) / 3
    sd = math.sqrt(sum((x - m) ** 2 for x in rets) / 2)
    assert s["sharpe"] == round(m / sd * math.sqrt(252), 4)
    assert s["cagr"] is None and "under a year" in s["cagr_note"]
    assert s["sessions"] == 3 and s["start"] == "2026-01-01"
    json.dumps(s)


def test_cagr_over_a_year() -> None:
    r = RuleResult("hourly_low", equity=[eq(2, 110_000)])
    s = summarize(r, spec(date(2025, 1, 1), date(2025, 12, 31)))
    assert s["cagr"] == round(1.1 ** (365.25 / 365) - 1, 4)
    assert s["cagr_note"] is None


def test_no_trades() -> None:
    r = RuleResult("hourly_low", equity=[eq(2, 100_000), eq(5, 100_000)])
    s = summarize(r, spec())
    assert s["trades"] == 0 and s["net_pnl"] == 0.0
    assert s["win_rate"] is None and s["profit_factor"] is None and s["avg_win"] is None
    assert s["sharpe"] is None  # flat equity: no deviation
    assert s["max_drawdown"] == 0.0
    json.dumps(s)


def test_all_losses() -> None:
    r = RuleResult("hourly_low", trades=[trade(-500.0, 1), trade(-1500.0, 1)], equity=[eq(2, 98_000)])
    s = summarize(r, spec())
    assert s["win_rate"] == 0.0 and s["avg_win"] is None
    assert s["avg_loss"] == -1000.0
    assert s["profit_factor"] == 0.0
    assert s["max_drawdown"] == 2000.0 and s["max_drawdown_pct"] == 2.0


def test_one_session() -> None:
    r = RuleResult(
        "hourly_low", equity=[eq(2, 100_500)], missing=["INFY 2026-01-02 minutes"], assumptions=["half spread"]
    )
    s = summarize(r, spec())
    assert s["sessions"] == 1 and s["sharpe"] is None
    assert s["missing"] == ["INFY 2026-01-02 minutes"] and s["assumptions"] == ["half spread"]


def test_side_by_side_one_column_per_rule() -> None:
    a = summarize(RuleResult("hourly_low", trades=[trade(100.0, 0)], equity=[eq(2, 100_100)]), spec())
    b = summarize(RuleResult("atr_trailing", equity=[eq(2, 99_900)]), spec())
    text = side_by_side({"hourly_low": a, "atr_trailing": b})
    header = text.splitlines()[0]
    assert "hourly_low" in header and "atr_trailing" in header
    net = next(line for line in text.splitlines() if line.startswith("net P&L"))
    assert "100.00" in net and "-100.00" in net
    assert "CAGR: range of 31 days" in text
