"""The backtest's summary figures and the terminal table (issue 21).

Pure: plain rows in, a JSON-able dict out. Money is rounded to paise, ratios to 4 places, so
that the same result always serialises to the same bytes.
"""

from __future__ import annotations

import math
from statistics import mean, stdev
from typing import Any

from workers.backtest.model import BacktestSpec, RuleResult

TRADING_DAYS = 252
# A CAGR over a few weeks annualises noise into absurd numbers: only a year or more gets one.
CAGR_MIN_DAYS = 365


def _money(x: float) -> float:
    return round(x + 0.0, 2)


def _ratio(x: float | None) -> float | None:
    return None if x is None else round(x + 0.0, 4)


def _start_equity(result: RuleResult, spec: BacktestSpec) -> float:
    if spec.initial_cash > 0:
        return spec.initial_cash
    return result.equity[0].equity if result.equity else 0.0


def _drawdown(start: float, equities: list[float]) -> tuple[float, float]:
    """Largest fall from a running peak: (rupees, fraction of that peak)."""
    peak = start
    worst_abs = 0.0
    worst_pct = 0.0
    for e in equities:
        peak = max(peak, e)
        dd = peak - e
        if dd > worst_abs:
            worst_abs = dd
        if peak > 0 and dd / peak > worst_pct:
            worst_pct = dd / peak
    return worst_abs, worst_pct


def _sharpe(start: float, equities: list[float]) -> float | None:
    prev = start
    rets: list[float] = []
    for e in equities:
        if prev > 0:
            rets.append(e / prev - 1.0)
        prev = e
    if len(rets) < 2:
        return None
    sd = stdev(rets)
    if sd == 0:
        return None
    return mean(rets) / sd * math.sqrt(TRADING_DAYS)


def summarize(result: RuleResult, spec: BacktestSpec) -> dict[str, Any]:
    """Every figure issue 21 lists for one rule's result."""
    trades = result.trades
    equities = [row.equity for row in result.equity]
    start_eq = _start_equity(result, spec)
    end_eq = equities[-1] if equities else start_eq

    wins = [t.pnl for t in trades if t.pnl > 0]
    losses = [t.pnl for t in trades if t.pnl < 0]
    gross_win = sum(wins)
    gross_loss = -sum(losses)

    charges = sum(row.charges for row in result.equity)
    if not result.equity:
        charges = sum(t.charges for t in trades)

    days = (spec.end - spec.start).days + 1
    cagr: float | None = None
    cagr_note: str | None = None
    if days < CAGR_MIN_DAYS:
        cagr_note = f"range of {days} days is under a year: no annualised figure"
    elif start_eq <= 0 or end_eq <= 0:
        cagr_note = "no positive starting or ending equity"
    else:
        cagr = (end_eq / start_eq) ** (365.25 / days) - 1.0

    dd_abs, dd_pct = _drawdown(start_eq, equities)
    turnover = sum(
        o.filled * o.average_price for o in result.orders if o.filled and o.average_price is not None
    )

    return {
        "rule": result.rule,
        "start": spec.start.isoformat(),
        "end": spec.end.isoformat(),
        "sessions": len(result.equity),
        "first_session": result.equity[0].session.isoformat() if result.equity else None,
        "last_session": result.equity[-1].session.isoformat() if result.equity else None,
        "start_equity": _money(start_eq),
        "end_equity": _money(end_eq),
        "net_pnl": _money(end_eq - start_eq if result.equity else sum(t.pnl for t in trades)),
        "trades_pnl": _money(sum(t.pnl for t in trades)),
        "charges": _money(charges),
        "cagr": _ratio(cagr),
        "cagr_note": cagr_note,
        "max_drawdown": _money(dd_abs),
        "max_drawdown_pct": _ratio(dd_pct * 100.0),
        "sharpe": _ratio(_sharpe(start_eq, equities)),
        "trades": len(trades),
        "win_rate": _ratio(len(wins) / len(trades)) if trades else None,
        "avg_win": _money(gross_win / len(wins)) if wins else None,
        "avg_loss": _money(-gross_loss / len(losses)) if losses else None,
        "profit_factor": _ratio(gross_win / gross_loss) if gross_loss > 0 else None,
        "avg_holding_days": _ratio(mean(t.holding_days for t in trades)) if trades else None,
        "same_day_share": (
            _ratio(sum(1 for t in trades if t.holding_days == 0) / len(trades)) if trades else None
        ),
        "turnover": _money(turnover),
        "turnover_x": _ratio(turnover / start_eq) if start_eq > 0 else None,
        "exposure": _ratio(mean(row.exposure for row in result.equity)) if result.equity else None,
        "open_at_end": len(result.open_positions),
        # net_pnl = trades_pnl + open_pnl: what is still held is marked at the last close, not dropped
        "open_pnl": _money(sum(p.unrealised_pnl for p in result.open_positions)),
        "open_positions": [
            {"symbol": p.symbol, "entry_time": p.entry_time.isoformat(), "entry_price": p.entry_price,
             "quantity": p.quantity, "mark_price": p.mark_price, "entry_charges": _money(p.entry_charges),
             "unrealised_pnl": _money(p.unrealised_pnl), "holding_days": p.holding_days}
            for p in result.open_positions],
        "loss_limit_trips": list(result.halts),
        "missing": list(result.missing),
        "assumptions": list(result.assumptions),
    }


# (label, key, format) for the terminal table
_ROWS: tuple[tuple[str, str, str], ...] = (
    ("sessions", "sessions", "int"),
    ("net P&L (after charges)", "net_pnl", "money"),
    ("charges", "charges", "money"),
    ("CAGR %", "cagr", "pct"),
    ("max drawdown", "max_drawdown", "money"),
    ("max drawdown %", "max_drawdown_pct", "num"),
    ("Sharpe", "sharpe", "num"),
    ("trades", "trades", "int"),
    ("open at the end", "open_at_end", "int"),
    ("open P&L (unrealised)", "open_pnl", "money"),
    ("loss limit trips", "loss_limit_trips", "count"),
    ("win rate %", "win_rate", "pct"),
    ("average win", "avg_win", "money"),
    ("average loss", "avg_loss", "money"),
    ("profit factor", "profit_factor", "num"),
    ("average holding days", "avg_holding_days", "num"),
    ("same-day round trips %", "same_day_share", "pct"),
    ("turnover", "turnover", "money"),
    ("exposure %", "exposure", "pct"),
)


def _cell(value: Any, kind: str) -> str:
    if value is None:
        return "-"
    if kind == "int":
        return str(int(value))
    if kind == "count":
        return str(len(value))
    if kind == "money":
        return f"{value:,.2f}"
    if kind == "pct":
        return f"{value * 100:.2f}"
    return f"{value:.2f}"


def side_by_side(summaries: dict[str, dict[str, Any]]) -> str:
    """One column per rule, one row per figure; notes (CAGR, missing data, assumptions) below."""
    rules = list(summaries)
    label_w = max(len(label) for label, _, _ in _ROWS)
    cells = {r: [_cell(summaries[r].get(key), kind) for _, key, kind in _ROWS] for r in rules}
    widths = {r: max([len(r)] + [len(c) for c in cells[r]]) for r in rules}
    lines = ["  ".join([" " * label_w] + [r.rjust(widths[r]) for r in rules]).rstrip()]
    for i, (label, _, _) in enumerate(_ROWS):
        lines.append("  ".join([label.ljust(label_w)] + [cells[r][i].rjust(widths[r]) for r in rules]))
    notes: list[str] = []
    for r in rules:
        s = summaries[r]
        if s.get("cagr_note"):
            notes.append(f"{r}: CAGR: {s['cagr_note']}")
        notes.extend(f"{r}: open at the end: {p['quantity']} {p['symbol']} bought {p['entry_time']} at "
                     f"{p['entry_price']}, marked {p['mark_price']}: unrealised {p['unrealised_pnl']:,.2f}"
                     for p in s.get("open_positions", []))
        notes.extend(f"{r}: {t}" for t in s.get("loss_limit_trips", []))
        notes.extend(f"{r}: missing: {m}" for m in s.get("missing", []))
        notes.extend(f"{r}: assumption: {a}" for a in s.get("assumptions", []))
    return "\n".join(lines + (["", *notes] if notes else [])) + "\n"
