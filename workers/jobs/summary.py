"""``summary``: one user's figures for ``orchestrator.py status``, from a short process of its own.

Prints one JSON object on one line (stdout) and exits 0::

    {"user": "Som", "mode": "paper", "kite_root": "http://127.0.0.1:8765" | null,
     "api_key_fingerprint": "abcd:0123456789ab",
     "schedules": {"update_cnc_stoploss": "09:00,14:00", ...}, "entry_cutoff": "11:00",
     "session_expires_at": "2026-11-27T06:00:00+05:30" | null, "session_expired": false,
     "open_positions": 2, "holdings": 3, "day_pnl": 1234.5, "charges": 42.1, "net_pnl": 1192.4,
     "cash": 100000.0,
     "held": {"SBIN": 10}, "unprotected": {"SBIN": "SBIN: 10 held, no active GTT stop"}}

``held``: shares really held per symbol; ``owned``: the shares the bot manages (MANAGE_SCOPE=own:
min(owned, held) from the ledger; all: every NSE holding) and ``owned_value`` at their last price;
``not_managed`` / ``not_managed_value``: the holdings the bot leaves alone (a person's shares,
another exchange's), count and value; ``unprotected``: each managed symbol without an active GTT
stop covering it (doctor's rule), which ``status`` counts as unhealthy during a session.

``session_expires_at`` comes from ``data/<User>/session.json`` (only that key is reported, never
the token); null when there is no session file.

``--detail`` adds the rows the dashboard (fleet/web) shows: ``portfolio`` (each holding and net
position with quantity, average and last price), today's ``orders`` (time, symbol, side, quantity,
price, status, tag) and ``charges`` (today's executed orders priced by Kite's virtual contract note;
null when the broker does not answer it).

``--settings-only`` prints only the keys up to the session's and never contacts the broker (used by
``supervisor-conf`` to learn each user's mode and paper-broker address without the orchestrator
reading any env file). Without it, the figures come from the broker (paper users log in by
themselves; a live user without a valid session exits 5). No secret is printed.

``charges`` = today's charges so far, from Kite's own ``get_virtual_contract_note`` on today's
executed orders (each at its filled quantity and average price; the same call on live Kite and on
the paper broker, which debits the same note from cash at the night's settlement roll);
``net_pnl`` = ``day_pnl - charges``. Both are null when the broker does not answer that call
(``charges_error`` then says why): ``day_pnl`` is still shown, gross, as Kite shows it.

``holdings`` = the NSE symbols held now (workers.portfolio.held_quantities: a symbol sold today
is not counted), plus holdings on another exchange (held, not managed); ``open_positions`` = the
symbols with a net position today. ``day_pnl`` = the P&L of today's positions plus today's change
of the holdings rows (quantity x day_change; a holding sold today still counts here, its sale is
in the position's P&L).
"""

from __future__ import annotations

import argparse
import json
from datetime import datetime
from typing import Any

from kitefleet import clock
from kitefleet.errors import KitefleetError
from kitefleet.jobs import SCHEDULED_JOBS, schedule_key
from workers.context import JobContext
from workers.gtt import coverage_gaps
from workers.portfolio import AccountSnapshot, held_quantities, manage_scope, unmanaged_holdings
from workers.schedule import format_schedule

LOG_TO_CONSOLE = False


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--settings-only", action="store_true",
                        help="print the user's non-secret settings; do not contact the broker")
    parser.add_argument("--detail", action="store_true",
                        help="also the dashboard's rows: portfolio with prices, today's orders and charges")


def _number(value: Any) -> float:
    try:
        return float(value or 0)
    except (TypeError, ValueError):
        return 0.0


def executed_today(orders: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Today's order book as ``get_virtual_contract_note`` takes it: executed orders only, each at
    its filled quantity (a partly filled order that was cancelled pays for what filled)."""
    out = []
    for o in orders:
        filled = int(_number(o.get("filled_quantity")))
        if filled <= 0 or _number(o.get("average_price")) <= 0:
            continue
        out.append({"order_id": o.get("order_id"), "exchange": o.get("exchange"),
                    "tradingsymbol": o.get("tradingsymbol"), "transaction_type": o.get("transaction_type"),
                    "variety": o.get("variety"), "product": o.get("product"), "order_type": o.get("order_type"),
                    "quantity": filled, "average_price": _number(o.get("average_price"))})
    return out


def day_charges(kite: Any) -> dict[str, Any]:
    """``charges`` (rupees, to the paisa) of today's executed orders, or why they are unknown."""
    executed = executed_today(list(kite.orders() or []))
    if not executed:
        return {"charges": 0.0}
    try:
        notes = kite.get_virtual_contract_note(executed) or []
        total = sum(_number((n.get("charges") or {}).get("total")) for n in notes)
    except (KitefleetError, AttributeError, TypeError) as exc:
        return {"charges": None, "charges_error": f"{type(exc).__name__}: {exc}"}
    return {"charges": round(total, 2)}


def figures(kite: Any, state: dict[str, Any] | None = None, scope_mode: str = "own") -> dict[str, Any]:
    positions = kite.positions() or {}
    holdings = kite.holdings() or []
    net = [p for p in positions.get("net", []) if _number(p.get("quantity"))]
    account = AccountSnapshot(holdings, positions.get("net") or [])
    held = [h for h in holdings if _number(h.get("quantity")) + _number(h.get("t1_quantity"))]
    day_pnl = sum(_number(p.get("pnl")) for p in positions.get("day", []))
    day_pnl += sum(_number(h.get("day_change")) * (_number(h.get("quantity")) + _number(h.get("t1_quantity")))
                   for h in held)
    margins = kite.margins("equity") or {}
    cash = margins.get("available", {}).get("cash") if isinstance(margins.get("available"), dict) else None
    shares = held_quantities(account)
    n_held = len(set(shares) | set(unmanaged_holdings(account)))
    charges = day_charges(kite)
    net_pnl = None if charges["charges"] is None else round(day_pnl - charges["charges"], 2)
    # What the bot manages (MANAGE_SCOPE, the ledger as stored) and, apart, what it leaves alone.
    scope = manage_scope(state or {}, shares, scope_mode)
    apart = {**scope.unmanaged, **unmanaged_holdings(account)}
    return {"open_positions": len(net), "holdings": n_held, "day_pnl": round(day_pnl, 2),
            **charges, "net_pnl": net_pnl,
            "cash": None if cash is None else _number(cash),
            "held": {s: q for s, q in sorted(shares.items()) if q > 0},
            "owned": dict(sorted(scope.protect.items())), "owned_value": account.market_value(scope.protect),
            "not_managed": len(apart), "not_managed_value": account.market_value(apart),
            "unprotected": coverage_gaps(scope.protect, list(kite.get_gtts() or []))}


_PORTFOLIO_KEYS = ("exchange", "quantity", "t1_quantity", "average_price", "last_price", "pnl", "day_change")
_ORDER_KEYS = ("order_id", "order_timestamp", "exchange", "tradingsymbol", "transaction_type", "order_type",
               "product", "variety", "quantity", "filled_quantity", "price", "trigger_price", "average_price",
               "status", "tag")


def detail(kite: Any) -> dict[str, Any]:
    """The dashboard's rows; only named, non-secret fields of each broker row are passed on."""
    positions = kite.positions() or {}
    rows = [{"symbol": str(h.get("tradingsymbol", "")).upper(), "kind": "holding",
             **{k: h.get(k) for k in _PORTFOLIO_KEYS}} for h in kite.holdings() or []]
    rows += [{"symbol": str(p.get("tradingsymbol", "")).upper(), "kind": "position",
              **{k: p.get(k) for k in _PORTFOLIO_KEYS}} for p in positions.get("net") or []
             if _number(p.get("quantity"))]
    orders = [{k: (str(o[k]) if k == "order_timestamp" and o.get(k) is not None else o.get(k)) for k in _ORDER_KEYS}
              for o in kite.orders() or []]
    executed = [o for o in orders if o.get("status") == "COMPLETE" and _number(o.get("filled_quantity"))]
    charges: float | None = 0.0
    if executed:
        params = [{"order_id": o["order_id"], "exchange": o["exchange"], "tradingsymbol": o["tradingsymbol"],
                   "transaction_type": o["transaction_type"], "variety": o["variety"], "product": o["product"],
                   "order_type": o["order_type"], "quantity": int(_number(o["filled_quantity"])),
                   "average_price": _number(o["average_price"])} for o in executed]
        try:
            note = kite._read("get_virtual_contract_note", params)
            charges = round(sum(_number((row.get("charges") or {}).get("total")) for row in note), 2)
        except Exception:  # a broker without the contract note: the dashboard says "unknown"
            charges = None
    return {"portfolio": rows, "orders": orders, "charges": charges}


def session_expiry(ctx: JobContext) -> dict[str, Any]:
    """When the user's Kite session dies (read locally; the token itself is not passed on)."""
    try:
        data = json.loads(ctx.home.session_file(ctx.user).read_text(encoding="utf-8"))
        expires = datetime.fromisoformat(str(data["expires_at"]))
    except (OSError, ValueError, KeyError, TypeError):
        return {"session_expires_at": None, "session_expired": None}
    if expires.tzinfo is None:
        expires = expires.replace(tzinfo=clock.IST)
    return {"session_expires_at": expires.isoformat(), "session_expired": expires <= clock.now()}


def run(ctx: JobContext) -> int:
    settings = ctx.settings
    out: dict[str, Any] = {
        "user": ctx.user,
        "mode": settings.mode,
        "kite_root": settings.kite_root if settings.is_paper else None,
        "api_key_fingerprint": settings.fingerprint,
        "schedules": {job: format_schedule(settings.schedule(schedule_key(job))) for job in SCHEDULED_JOBS},
        "entry_cutoff": settings.time_of_day("ENTRY_CUTOFF").strftime("%H:%M"),
        **session_expiry(ctx),
    }
    if not ctx.args.settings_only:
        from kitefleet.state import StateStore
        from workers.kite_client import get_kite  # heavy (kiteconnect): only when figures are wanted

        try:
            state: dict[str, Any] | None = StateStore(ctx.home, ctx.user, settings.mode).read()
        except KitefleetError:  # a bad state file is reported by status's own state column
            state = None
        kite = get_kite(ctx)
        out.update(figures(kite, state, settings.text("MANAGE_SCOPE")))
        if ctx.args.detail:
            out.update(detail(kite))
    print(json.dumps(out, separators=(",", ":")), flush=True)
    return 0
