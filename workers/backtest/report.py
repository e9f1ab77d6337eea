"""The backtest's output folder: CSVs, summary.json and one offline report.html (issue 21).

Byte-identical for the same inputs: no timestamps, sorted keys, fixed chart div ids, floats
formatted by ``repr`` of a rounded value (shortest round-trip form, the same on every run).
The caller makes ``<out>.partial/``, calls :func:`write_outputs` on it and renames it.
"""

from __future__ import annotations

import csv
import json
from collections import OrderedDict
from datetime import date, datetime
from pathlib import Path
from typing import Any

import jinja2
import plotly.graph_objects as go
import plotly.io as pio
from plotly.subplots import make_subplots

from workers.backtest.model import BacktestSpec, RuleResult

CHART_DIV_ID = "backtest-equity-chart"

TRADE_COLUMNS = (
    "rule", "symbol", "entry_time", "entry_price", "exit_time", "exit_price", "quantity",
    "charges", "pnl", "exit_reason", "holding_days",
)
ORDER_COLUMNS = (
    "rule", "time", "symbol", "side", "purpose", "quantity", "price", "filled", "average_price",
    "status", "charges", "reason",
)
OPEN_COLUMNS = (
    "rule", "symbol", "entry_time", "entry_price", "quantity", "mark_price", "entry_charges", "unrealised_pnl",
    "holding_days",
)
EQUITY_COLUMNS = ("rule", "session", "cash", "holdings_value", "equity", "charges", "exposure")


def _fmt(value: Any) -> str:
    """One text form per value, so that two writes give the same bytes."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(round(value, 6) + 0.0)  # + 0.0: never "-0.0"
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    return str(value)


def _write_csv(path: Path, columns: tuple[str, ...], rows: list[Any]) -> None:
    with path.open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(columns)
        for row in rows:
            w.writerow([_fmt(getattr(row, c)) for c in columns])


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, float):
        return round(value, 6) + 0.0
    if value is None or isinstance(value, (str, int, bool)):
        return value
    return str(value)


def _spec_dict(spec: BacktestSpec) -> dict[str, Any]:
    return {
        "user": spec.user,
        "start": spec.start.isoformat(),
        "end": spec.end.isoformat(),
        "rules": list(spec.rules),
        "source": spec.source,
        "seed": spec.seed,
        "scenario": spec.scenario,
        "initial_cash": spec.initial_cash,
        "settings": _jsonable(spec.settings),
    }


def monthly_returns(result: RuleResult, start_equity: float) -> list[tuple[str, float | None]]:
    """(YYYY-MM, return of that month in %) from the last equity of each month."""
    month_end: OrderedDict[str, float] = OrderedDict()
    for row in result.equity:
        month_end[row.session.strftime("%Y-%m")] = row.equity
    out: list[tuple[str, float | None]] = []
    prev = start_equity
    for month, equity in month_end.items():
        out.append((month, round((equity / prev - 1.0) * 100.0, 2) if prev > 0 else None))
        prev = equity
    return out


def _chart(results: list[RuleResult], spec: BacktestSpec) -> str:
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.7, 0.3], vertical_spacing=0.05,
                        subplot_titles=("Equity (after charges)", "Drawdown %"))
    for r in results:
        xs = [row.session.isoformat() for row in r.equity]
        eqs = [row.equity for row in r.equity]
        peak = spec.initial_cash if spec.initial_cash > 0 else (eqs[0] if eqs else 0.0)
        dds: list[float] = []
        for e in eqs:
            peak = max(peak, e)
            dds.append(round((e / peak - 1.0) * 100.0, 4) if peak > 0 else 0.0)
        fig.add_trace(go.Scatter(x=xs, y=eqs, mode="lines", name=r.rule, legendgroup=r.rule), row=1, col=1)
        fig.add_trace(go.Scatter(x=xs, y=dds, mode="lines", name=f"{r.rule} drawdown", legendgroup=r.rule,
                                 showlegend=False), row=2, col=1)
    fig.update_layout(height=600, margin={"l": 60, "r": 20, "t": 40, "b": 40}, template="plotly_white")
    # Inlined plotly.js (offline), a fixed div id, no logo link out.
    return pio.to_html(fig, include_plotlyjs=True, full_html=False, div_id=CHART_DIV_ID,
                       config={"displaylogo": False, "responsive": True})


_TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Backtest {{ spec.user }} {{ spec.start }} to {{ spec.end }}</title>
<style>
body { font-family: sans-serif; margin: 1.5em; }
table { border-collapse: collapse; margin-bottom: 1.5em; }
td, th { border: 1px solid #ccc; padding: 2px 8px; text-align: right; }
th { background: #f3f3f3; }
td.text { text-align: left; }
</style>
</head>
<body>
<h1>Backtest: {{ spec.user }}, {{ spec.start }} to {{ spec.end }}</h1>
<p>Source: {{ spec.source }}{% if spec.source == "paper" %} (seed {{ spec.seed }}{% if spec.scenario %},
scenario {{ spec.scenario }}{% endif %}; synthetic: shows the mechanics, not an edge){% endif %}.</p>
<pre>{{ table }}</pre>
<h2>Equity and drawdown</h2>
{{ chart | safe }}
<h2>Monthly returns %</h2>
<table>
<tr><th>month</th>{% for rule in rules %}<th>{{ rule }}</th>{% endfor %}</tr>
{% for month in months %}<tr><td class="text">{{ month }}</td>
{%- for rule in rules %}<td>{{ monthly[rule].get(month, "") }}</td>{% endfor %}</tr>
{% endfor %}</table>
{% for s in notes %}<p>{{ s }}</p>
{% endfor %}<h2>Trades</h2>
<table>
<tr>{% for c in trade_columns %}<th>{{ c }}</th>{% endfor %}</tr>
{% for row in trades %}<tr>{% for v in row %}<td class="text">{{ v }}</td>{% endfor %}</tr>
{% endfor %}</table>
<h2>Open at the end (marked at the last close, not sold)</h2>
<table>
<tr>{% for c in open_columns %}<th>{{ c }}</th>{% endfor %}</tr>
{% for row in open_rows %}<tr>{% for v in row %}<td class="text">{{ v }}</td>{% endfor %}</tr>
{% endfor %}</table>
<h2>Settings used</h2>
<pre>{{ settings }}</pre>
</body>
</html>
"""


def _html(spec: BacktestSpec, results: list[RuleResult], summaries: dict[str, dict[str, Any]]) -> str:
    from workers.backtest.metrics import side_by_side

    env = jinja2.Environment(autoescape=True, keep_trailing_newline=True, undefined=jinja2.StrictUndefined)
    rules = [r.rule for r in results]
    monthly: dict[str, dict[str, str]] = {}
    months: list[str] = []
    for r in results:
        start = spec.initial_cash if spec.initial_cash > 0 else (r.equity[0].equity if r.equity else 0.0)
        monthly[r.rule] = {m: _fmt(v) for m, v in monthly_returns(r, start)}
        for m in monthly[r.rule]:
            if m not in months:
                months.append(m)
    months.sort()
    trades = [[_fmt(getattr(t, c)) for c in TRADE_COLUMNS] for r in results for t in r.trades]
    open_rows = [[_fmt(getattr(p, c)) for c in OPEN_COLUMNS] for r in results for p in r.open_positions]
    notes: list[str] = []
    for rule in rules:
        s = summaries.get(rule, {})
        notes.extend(f"{rule}: {t}" for t in s.get("loss_limit_trips", []))
        notes.extend(f"{rule}: missing: {m}" for m in s.get("missing", []))
        notes.extend(f"{rule}: assumption: {a}" for a in s.get("assumptions", []))
    return env.from_string(_TEMPLATE).render(
        spec=spec,
        table=side_by_side({k: summaries[k] for k in rules if k in summaries}) if summaries else "",
        chart=_chart(results, spec),
        rules=rules,
        months=months,
        monthly=monthly,
        notes=notes,
        trade_columns=TRADE_COLUMNS,
        trades=trades,
        open_columns=OPEN_COLUMNS,
        open_rows=open_rows,
        settings=json.dumps(_spec_dict(spec), sort_keys=True, indent=2, ensure_ascii=False),
    )


def write_outputs(
    out_dir: Path, spec: BacktestSpec, results: list[RuleResult], summaries: dict[str, dict[str, Any]]
) -> None:
    """Write trades.csv, orders.csv, equity.csv, summary.json and report.html into ``out_dir``."""
    out_dir = Path(out_dir)
    _write_csv(out_dir / "trades.csv", TRADE_COLUMNS, [t for r in results for t in r.trades])
    _write_csv(out_dir / "orders.csv", ORDER_COLUMNS, [o for r in results for o in r.orders])
    _write_csv(out_dir / "equity.csv", EQUITY_COLUMNS, [e for r in results for e in r.equity])
    summary = {"spec": _spec_dict(spec), "rules": _jsonable({r.rule: summaries.get(r.rule, {}) for r in results})}
    (out_dir / "summary.json").write_text(
        json.dumps(summary, sort_keys=True, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    (out_dir / "report.html").write_text(_html(spec, results, summaries), encoding="utf-8")
