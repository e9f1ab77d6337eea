"""The output folder: files and columns, byte-identical rewrites, an offline and escaped report."""

from __future__ import annotations

import csv
import json
import re
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

from workers.backtest.metrics import summarize
from workers.backtest.model import BacktestSpec, EquityRow, OpenPosition, OrderRow, RuleResult, TradeRow
from workers.backtest.report import CHART_DIV_ID, write_outputs

IST = timezone(timedelta(hours=5, minutes=30))
HOSTILE = '<script>alert("x")</script>'


def make(symbol: str = "INFY", reason: str = "stop") -> tuple[BacktestSpec, list[RuleResult]]:
    spec = BacktestSpec(user="Asha", start=date(2026, 1, 1), end=date(2026, 2, 28),
                        rules=("hourly_low", "atr_trailing"), initial_cash=100_000.0,
                        settings={"MIN_SCORE": 3, "NOTE": reason})
    results = []
    for k, rule in enumerate(("hourly_low", "atr_trailing")):
        t0 = datetime(2026, 1, 2, 9, 20, tzinfo=IST)
        trade = TradeRow(rule, symbol, t0, 100.05, t0 + timedelta(days=1), 102.1, 10, 12.34, 8.16 + k, reason, 1)
        order = OrderRow(rule, t0, symbol, "BUY", "entry", 10, 100.1, 10, 100.05, "COMPLETE", 1.1, reason)
        equity = [EquityRow(rule, date(2026, 1, 2), 99_000.0, 1_000.5, 100_000.5, 1.1, 0.01),
                  EquityRow(rule, date(2026, 2, 3), 100_008.16 + k, 0.0, 100_008.16 + k, 11.24, 0.0)]
        held = OpenPosition(rule, symbol, t0 + timedelta(days=30), 200.0, 5, 204.5, 1.5, 21.0, 2)
        results.append(RuleResult(rule, [trade], [order], equity, missing=[f"{symbol} minutes"],
                                  open_positions=[held], halts=[f"2026-01-05 10:01:00: daily loss limit ({reason})"]))
    return spec, results


def write(tmp: Path, spec: BacktestSpec, results: list[RuleResult]) -> Path:
    tmp.mkdir()
    write_outputs(tmp, spec, results, {r.rule: summarize(r, spec) for r in results})
    return tmp


def test_files_and_columns(tmp_path: Path) -> None:
    spec, results = make()
    out = write(tmp_path / "out", spec, results)
    assert sorted(p.name for p in out.iterdir()) == [
        "equity.csv", "orders.csv", "report.html", "summary.json", "trades.csv"]
    trades = list(csv.DictReader((out / "trades.csv").open()))
    assert list(trades[0]) == ["rule", "symbol", "entry_time", "entry_price", "exit_time", "exit_price",
                               "quantity", "charges", "pnl", "exit_reason", "holding_days"]
    assert [t["rule"] for t in trades] == ["hourly_low", "atr_trailing"]
    assert trades[0]["entry_time"] == "2026-01-02T09:20:00+05:30" and trades[0]["entry_price"] == "100.05"
    equity = list(csv.DictReader((out / "equity.csv").open()))
    assert len(equity) == 4 and "rule" in equity[0]
    assert "purpose" in next(csv.DictReader((out / "orders.csv").open()))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["spec"]["settings"]["MIN_SCORE"] == 3
    assert set(summary["rules"]) == {"hourly_low", "atr_trailing"}
    html = (out / "report.html").read_text()
    assert f'id="{CHART_DIV_ID}"' in html and "2026-01" in html and "2026-02" in html
    # what is still held at the end is in the summary and the report, not dropped
    held = summary["rules"]["hourly_low"]["open_positions"]
    assert held == [{"symbol": "INFY", "entry_time": "2026-02-01T09:20:00+05:30", "entry_price": 200.0,
                     "quantity": 5, "mark_price": 204.5, "entry_charges": 1.5, "unrealised_pnl": 21.0,
                     "holding_days": 2}]
    assert summary["rules"]["hourly_low"]["open_pnl"] == 21.0
    assert "Open at the end" in html and "204.5" in html and "daily loss limit" in html


def test_byte_identical_on_two_writes(tmp_path: Path) -> None:
    spec, results = make()
    a = write(tmp_path / "a", spec, results)
    b = write(tmp_path / "b", spec, results)
    for name in ("trades.csv", "orders.csv", "equity.csv", "summary.json", "report.html"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


def test_report_fetches_nothing_from_the_network(tmp_path: Path) -> None:
    spec, results = make()
    html = (write(tmp_path / "out", spec, results) / "report.html").read_text()
    assert "plotly" in html.lower() and len(html) > 1_000_000  # the library is inlined
    assert not re.search(r"""<(script|link|img|iframe)[^>]*\b(src|href)\s*=\s*["']?(https?:)?//""", html, re.I)
    assert not re.search(r"""@import\s+url\(\s*["']?(https?:)?//""", html, re.I)


def test_hostile_symbol_and_reason_are_escaped(tmp_path: Path) -> None:
    spec, results = make(symbol=HOSTILE, reason=HOSTILE)
    html = (write(tmp_path / "out", spec, results) / "report.html").read_text()
    assert HOSTILE not in html
    assert "&lt;script&gt;alert(" in html
