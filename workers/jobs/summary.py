"""``summary``: one user's figures for ``orchestrator.py status``, from a short process of its own.

Prints one JSON object on one line (stdout) and exits 0::

    {"user": "Som", "mode": "paper", "kite_root": "http://127.0.0.1:8765" | null,
     "api_key_fingerprint": "abcd:0123456789ab",
     "schedules": {"update_cnc_stoploss": "09:00,14:00", ...}, "entry_cutoff": "11:00",
     "session_expires_at": "2026-11-27T06:00:00+05:30" | null, "session_expired": false,
     "open_positions": 2, "holdings": 3, "day_pnl": 1234.5, "cash": 100000.0,
     "held": {"SBIN": 10}, "unprotected": {"SBIN": "SBIN: 10 held, no active GTT stop"}}

``held``: shares really held per symbol; ``owned``: the shares the bot manages (MANAGE_SCOPE=own:
min(owned, held) from the ledger; all: every NSE holding) and ``owned_value`` at their last price;
``not_managed`` / ``not_managed_value``: the holdings the bot leaves alone (a person's shares,
another exchange's), count and value; ``unprotected``: each managed symbol without an active GTT
stop covering it (doctor's rule), which ``status`` counts as unhealthy during a session.

``session_expires_at`` comes from ``data/<User>/session.json`` (only that key is reported, never
the token); null when there is no session file.

``--settings-only`` prints only the keys up to the session's and never contacts the broker (used by
``supervisor-conf`` to learn each user's mode and paper-broker address without the orchestrator
reading any env file). Without it, the figures come from the broker (paper users log in by
themselves; a live user without a valid session exits 5). No secret is printed.

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


def _number(value: Any) -> float:
    try:
        return float(value or 0)
    except (TypeError, ValueError):
        return 0.0


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
    # What the bot manages (MANAGE_SCOPE, the ledger as stored) and, apart, what it leaves alone.
    scope = manage_scope(state or {}, shares, scope_mode)
    apart = {**scope.unmanaged, **unmanaged_holdings(account)}
    return {"open_positions": len(net), "holdings": n_held, "day_pnl": round(day_pnl, 2),
            "cash": None if cash is None else _number(cash),
            "held": {s: q for s, q in sorted(shares.items()) if q > 0},
            "owned": dict(sorted(scope.protect.items())), "owned_value": account.market_value(scope.protect),
            "not_managed": len(apart), "not_managed_value": account.market_value(apart),
            "unprotected": coverage_gaps(scope.protect, list(kite.get_gtts() or []))}


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
        "schedules": {job: format_schedule(settings.get(schedule_key(job))) for job in SCHEDULED_JOBS},  # type: ignore[arg-type]
        "entry_cutoff": settings.get("ENTRY_CUTOFF").strftime("%H:%M"),  # type: ignore[union-attr]
        **session_expiry(ctx),
    }
    if not ctx.args.settings_only:
        from kitefleet.state import StateStore
        from workers.kite_client import get_kite  # heavy (kiteconnect): only when figures are wanted

        try:
            state: dict[str, Any] | None = StateStore(ctx.home, ctx.user, settings.mode).read()
        except KitefleetError:  # a bad state file is reported by status's own state column
            state = None
        out.update(figures(get_kite(ctx), state, str(settings.get("MANAGE_SCOPE", "own"))))
    print(json.dumps(out, separators=(",", ":")), flush=True)
    return 0
