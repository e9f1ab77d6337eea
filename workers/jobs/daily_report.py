"""``daily_report``: the day's figures for the user, after the close (``SCHEDULE_DAILY_REPORT``).

From the broker: today's trades, realised P&L (each sale against today's buys of the symbol first,
then the holding's average price), the charges of today's executed orders from Kite's virtual
contract note (``POST /charges/orders``; "unknown" when the broker does not answer it), the
shares held with the stop from the state (``stops[S]``) and the risk to it, cash, and equity (cash
plus the held shares at their last price) against the first recorded session.

Writes::

    data/<User>/reports/daily_<YYYY-MM-DD>.html   the report, with the chart inline
    data/<User>/reports/equity_<YYYY-MM-DD>.svg   the equity chart of recent sessions (attached
                                                  where the notification service takes files)
    state["equity_history"][YYYY-MM-DD]           {"equity", "cash", "realised", "charges",
                                                  "trades", "recorded_at"}: each session's close

and emits a ``daily_report`` event (kitefleet.outbox). Prints the figures as one JSON line.
"""

from __future__ import annotations

import html
import json
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from kitefleet import clock
from kitefleet import outbox as ob
from kitefleet.atomic import atomic_write_text
from kitefleet.home import ensure_dir
from kitefleet.state import StateStore
from workers.context import JobContext
from workers.portfolio import AccountSnapshot, available_cash, held_quantities

TAKES_JOB_LOCK = True
LOG_TO_CONSOLE = False
#: sessions on the chart
CHART_SESSIONS = 20


def _num(value: Any) -> float:
    try:
        return float(value or 0)
    except (TypeError, ValueError):
        return 0.0


def realised_pnl(trades: Sequence[Mapping[str, Any]], holdings: Sequence[Mapping[str, Any]]) -> float:
    """Sales of today against today's buys of the symbol first (Kite nets a same-day CNC buy and
    sell as intraday), then against the holding's average price."""
    buys: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    sells: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    for t in trades:
        side = buys if t.get("transaction_type") == "BUY" else sells
        q, p = _num(t.get("quantity")), _num(t.get("average_price"))
        side[str(t.get("tradingsymbol"))][0] += q
        side[str(t.get("tradingsymbol"))][1] += q * p
    avg = {str(h.get("tradingsymbol")): _num(h.get("average_price")) for h in holdings}
    out = 0.0
    for sym, (sq, sv) in sells.items():
        bq, bv = buys.get(sym, [0.0, 0.0])
        intraday = min(sq, bq)
        cost = intraday * (bv / bq if bq else 0.0) + (sq - intraday) * avg.get(sym, 0.0)
        out += sv - cost
    return round(out, 2)


def executed(orders: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Orders with a filled quantity, whatever their status: an entry whose unfilled rest was
    cancelled at its timeout is CANCELLED with its filled part charged like any other."""
    return [o for o in orders if _num(o.get("filled_quantity")) > 0]


def charges_of(kite: Any, orders: Sequence[Mapping[str, Any]]) -> float | None:
    executed_orders = executed(orders)
    if not executed_orders:
        return 0.0
    params = [{"order_id": o.get("order_id"), "exchange": o.get("exchange"), "tradingsymbol": o.get("tradingsymbol"),
               "transaction_type": o.get("transaction_type"), "variety": o.get("variety"), "product": o.get("product"),
               "order_type": o.get("order_type"), "quantity": int(_num(o.get("filled_quantity"))),
               "average_price": _num(o.get("average_price"))} for o in executed_orders]
    try:
        note = kite._read("get_virtual_contract_note", params)
        return round(sum(_num((row.get("charges") or {}).get("total")) for row in note), 2)
    except Exception:  # a broker without the contract note: the report says "unknown"
        return None


def figures(kite: Any, state: Mapping[str, Any], today: str) -> dict[str, Any]:
    trades = kite.trades() or []
    orders = kite.orders() or []
    holdings = kite.holdings() or []
    net = (kite.positions() or {}).get("net") or []
    held = held_quantities(AccountSnapshot(holdings, net))
    last = {str(r.get("tradingsymbol")).upper(): _num(r.get("last_price")) for r in [*holdings, *net]}
    stops = state.get("stops") or {}
    positions: list[dict[str, Any]] = []
    for sym, qty in sorted(held.items()):
        if qty <= 0:
            continue
        stop = (stops.get(sym) or {}).get("trigger") or (stops.get(sym) or {}).get("stop")
        price = last.get(sym, 0.0)
        positions.append({"symbol": sym, "quantity": qty, "last_price": price, "stop": stop,
                          "risk": None if stop is None else round(max(0.0, price - float(stop)) * qty, 2)})
    cash = round(available_cash(kite.margins("equity") or {}), 2)
    equity = round(cash + sum(p["quantity"] * p["last_price"] for p in positions), 2)
    realised = realised_pnl(trades, holdings)
    charges = charges_of(kite, orders)
    history = dict(state.get("equity_history") or {})
    start_day = min(history) if history else today
    start = _num(history[start_day]["equity"]) if history else equity
    return {"date": today, "trades": [{k: t.get(k) for k in ("tradingsymbol", "transaction_type", "quantity",
                                                            "average_price", "order_id")} for t in trades],
            "realised": realised, "charges": charges,
            "realised_after_charges": None if charges is None else round(realised - charges, 2),
            "positions": positions, "cash": cash, "equity": equity, "start_equity": start, "start_day": start_day,
            "vs_start": round(equity - start, 2)}


def chart_svg(points: Sequence[tuple[str, float]], width: int = 480, height: int = 160) -> str:
    """A small line chart of equity per session, as SVG text (no plotting library)."""
    pad = 24
    vals = [v for _, v in points] or [0.0]
    lo, hi = min(vals), max(vals)
    span = hi - lo or 1.0
    step = (width - 2 * pad) / max(1, len(points) - 1)
    xy = [(pad + i * step, height - pad - (v - lo) / span * (height - 2 * pad)) for i, (_, v) in enumerate(points)]
    line = " ".join(f"{x:.1f},{y:.1f}" for x, y in xy)
    first = html.escape(points[0][0]) if points else ""
    end = html.escape(points[-1][0]) if points else ""
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}"><rect width="100%" height="100%" fill="#fff"/>'
            f'<polyline fill="none" stroke="#1f6feb" stroke-width="2" points="{line}"/>'
            f'<text x="{pad}" y="14" font-size="11">equity {hi:,.0f} high / {lo:,.0f} low</text>'
            f'<text x="{pad}" y="{height - 6}" font-size="10">{first}</text>'
            f'<text x="{width - pad}" y="{height - 6}" font-size="10" text-anchor="end">{end}</text></svg>')


def text_summary(f: Mapping[str, Any]) -> str:
    charges = "charges unknown" if f["charges"] is None else f"charges {f['charges']:,.2f}"
    net = "" if f["realised_after_charges"] is None else f", after charges {f['realised_after_charges']:,.2f}"
    lines = [f"Daily report {f['date']}: {len(f['trades'])} trade(s); realised P&L {f['realised']:,.2f} "
             f"({charges}{net}); cash {f['cash']:,.2f}; equity {f['equity']:,.2f} "
             f"({f['vs_start']:+,.2f} since {f['start_day']})"]
    for p in f["positions"]:
        stop = "no stop" if p["stop"] is None else f"stop {p['stop']}, risk {p['risk']:,.2f}"
        lines.append(f"  {p['symbol']}: {p['quantity']} @ {p['last_price']} ({stop})")
    return "\n".join(lines)


def render_html(f: Mapping[str, Any], svg: str, user: str) -> str:
    rows = "".join(f"<tr><td>{html.escape(str(t['tradingsymbol']))}</td><td>{t['transaction_type']}</td>"
                   f"<td>{t['quantity']}</td><td>{t['average_price']}</td></tr>" for t in f["trades"])
    pos = "".join(f"<tr><td>{html.escape(p['symbol'])}</td><td>{p['quantity']}</td><td>{p['last_price']}</td>"
                  f"<td>{p['stop'] if p['stop'] is not None else 'none'}</td><td>{p['risk']}</td></tr>"
                  for p in f["positions"])
    return (f"<!doctype html><meta charset=utf-8><title>{html.escape(user)} {f['date']}</title>"
            f"<h1>{html.escape(user)}: daily report {f['date']}</h1><pre>{html.escape(text_summary(f))}</pre>"
            f"<h2>Trades</h2><table><tr><th>symbol<th>side<th>qty<th>price</tr>{rows}</table>"
            f"<h2>Open positions</h2><table><tr><th>symbol<th>qty<th>last<th>stop<th>risk</tr>{pos}</table>"
            f"<h2>Equity</h2>{svg}\n")


def run(ctx: JobContext) -> int:
    from workers.kite_client import get_kite  # heavy: only in this job's process

    kite = get_kite(ctx)
    store = StateStore(ctx.home, ctx.user, ctx.settings.mode)
    now = clock.now()
    today = now.date().isoformat()
    f = figures(kite, store.read(), today)
    with store.transaction() as state:
        history = state.setdefault("equity_history", {})
        history[today] = {"equity": f["equity"], "cash": f["cash"], "realised": f["realised"],
                          "charges": f["charges"], "trades": len(f["trades"]),
                          "recorded_at": now.isoformat(timespec="seconds")}
        points = [(day, _num(rec.get("equity"))) for day, rec in sorted(history.items())][-CHART_SESSIONS:]
    folder = ensure_dir(ctx.home.user_data_dir(ctx.user) / "reports")
    svg = chart_svg(points)
    svg_path: Path = folder / f"equity_{today}.svg"
    atomic_write_text(svg_path, svg)
    atomic_write_text(folder / f"daily_{today}.html", render_html(f, svg, ctx.user))
    ob.emit(ctx.home, ctx.user, "daily_report", text_summary(f), key=f"report|{today}",
            attach=str(svg_path.relative_to(ctx.home.root)),
            act=f"full report: data/{ctx.user}/reports/daily_{today}.html")
    ctx.log.info("daily report %s written: equity %.2f, realised %.2f, charges %s", today, f["equity"],
                 f["realised"], "unknown" if f["charges"] is None else f"{f['charges']:.2f}")
    print(json.dumps(f, separators=(",", ":")), flush=True)
    return 0
