"""The dashboard's two views as plain data: the fleet (one row per user) and one user's page.

Built from disk (fleet.web.disk), supervisord's XML-RPC answer and the cached broker figures
(fleet.web.live); the templates only lay them out. Pure given those inputs, so the benchmark and
the tests call these directly.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from fleet.web import disk
from fleet.web.live import Live, LiveCache
from fleet.web.svg import distance_bar, equity_curve, percent_above
from kitefleet.home import Home


class RestartCounter:
    """Restarts of each ``trader:<User>`` seen while the dashboard runs: supervisord's pid of the
    program changed (a SIGKILLed scheduler restarted by supervisord). supervisord itself keeps no
    count, and the dashboard never reads its log."""

    def __init__(self) -> None:
        self._pid: dict[str, int] = {}
        self.count: dict[str, int] = {}

    def see(self, user: str, pid: int | None) -> int:
        if pid:
            last = self._pid.get(user)
            if last is not None and last != pid:
                self.count[user] = self.count.get(user, 0) + 1
            self._pid[user] = pid
        return self.count.get(user, 0)


def _number(value: Any) -> float | None:
    return disk._number(value)


def live_view(live: Live, cache: LiveCache) -> dict[str, Any]:
    age = cache.age(live)
    return {"data": live.data, "error": live.error, "age": None if age is None else round(age),
            "pending": live.data is None and live.error is None}


def day_pnl_after_charges(data: dict[str, Any] | None) -> tuple[float | None, float | None]:
    """(day P&L after today's charges, the charges); charges None when the broker did not say."""
    if not data or _number(data.get("day_pnl")) is None:
        return None, None
    charges = _number(data.get("charges"))
    pnl = float(data["day_pnl"]) - (charges or 0.0)
    return round(pnl, 2), charges


def fleet_row(home: Home, user: str, info: dict[str, Any] | None, live: dict[str, Any], restarts: int,
              now: datetime, wall_now: float) -> dict[str, Any]:
    beat = disk.heartbeat_view(home, user, wall_now)
    state = disk.read_state(home, user)
    owned = disk.owned(state)
    data = live["data"] or {}
    pnl, charges = day_pnl_after_charges(live["data"])
    return {
        "user": user,
        "mode": beat["mode"] or data.get("mode"),
        "supervisor": None if info is None else info.get("statename"),
        "supervisor_pid": None if info is None else (info.get("pid") or None),
        "restarts": restarts,
        "pid": beat["pid"],
        "heartbeat_age": beat["age"],
        "stale": beat["stale"],
        "state": beat["state"],
        "paused": disk.pause_state(home, user),
        "halt": disk.halt_state(home, user),
        "session_expires_at": data.get("session_expires_at"),
        "session_expired": data.get("session_expired"),
        "owned": [{"symbol": s, "quantity": o["quantity"]} for s, o in sorted(owned.items())],
        "open_positions": data.get("open_positions"),
        "holdings": data.get("holdings"),
        "day_pnl": pnl,
        "charges": charges,
        "jobs": beat["jobs"],
        "warnings": disk.warnings_of(home, user, now),
        "live_age": live["age"],
        "live_error": live["error"],
        "live_pending": live["pending"],
    }


def positions(state: dict[str, Any], data: dict[str, Any] | None, day: str) -> tuple[list[dict[str, Any]],
                                                                                        list[dict[str, Any]]]:
    """(the bot's owned positions with LTP, stop, level and bars; the holdings it does not manage).
    A symbol held beyond what the bot owns shows its surplus among the unmanaged rows."""
    owned = disk.owned(state)
    broker: dict[str, dict[str, Any]] = {}
    for row in (data or {}).get("portfolio") or []:
        if not isinstance(row, dict):
            continue
        sym = str(row.get("symbol") or "")
        qty = int((_number(row.get("quantity")) or 0) + (_number(row.get("t1_quantity")) or 0))
        rec = broker.setdefault(sym, {"symbol": sym, "quantity": 0, "average_price": None, "last_price": None,
                                      "exchange": row.get("exchange"), "kinds": []})
        rec["quantity"] += qty
        rec["kinds"].append(str(row.get("kind") or ""))
        if rec["average_price"] is None and _number(row.get("average_price")):
            rec["average_price"] = _number(row.get("average_price"))
        if _number(row.get("last_price")):
            rec["last_price"] = _number(row.get("last_price"))
    mine = []
    for sym, own in sorted(owned.items()):
        b = broker.get(sym) or {}
        ltp = b.get("last_price")
        stop = disk.stop_of(state, sym)
        level = disk.watchdog_level(state, day, sym)
        mine.append({"symbol": sym, "quantity": own["quantity"], "held": b.get("quantity"),
                     "average_price": own["price"] if own["price"] else b.get("average_price"),
                     "last_price": ltp, "stop": stop, "level": level,
                     "to_stop": percent_above(ltp, stop), "to_level": percent_above(ltp, level),
                     "bar": distance_bar(ltp, stop, level)})
    others = []
    for sym, b in sorted(broker.items()):
        surplus = b["quantity"] - (owned.get(sym) or {}).get("quantity", 0)
        if surplus > 0:
            others.append({**b, "quantity": surplus, "kinds": ", ".join(sorted(set(b["kinds"])))})
    return mine, others


def timeline(state: dict[str, Any], data: dict[str, Any] | None, day: str) -> list[dict[str, Any]]:
    """Today's orders (the broker's book) and the watchdog's exits, by time."""
    events = []
    for o in (data or {}).get("orders") or []:
        if not isinstance(o, dict):
            continue
        price = _number(o.get("average_price")) or _number(o.get("price"))
        events.append({"time": str(o.get("order_timestamp") or ""), "symbol": str(o.get("tradingsymbol") or ""),
                       "what": "order", "side": str(o.get("transaction_type") or ""),
                       "quantity": o.get("filled_quantity") or o.get("quantity"), "price": price,
                       "status": str(o.get("status") or ""), "note": str(o.get("tag") or "")})
    events += disk.exits_today(state, day)
    return sorted(events, key=lambda e: e["time"])


def user_view(home: Home, user: str, live: dict[str, Any], now: datetime,
              intraday: list[tuple[str, float]] | None = None) -> dict[str, Any]:
    state = disk.read_state(home, user)
    day = disk.trading_day(now)
    mine, others = positions(state, live["data"], day)
    points = disk.equity_points(state)
    source = "each session's close (daily report)"
    if len(points) < 2 and intraday:
        points, source = intraday, "today, as this dashboard's summaries saw it"
    pnl, charges = day_pnl_after_charges(live["data"])
    return {
        "user": user,
        "positions": mine,
        "unmanaged": others,
        "timeline": timeline(state, live["data"], day),
        "scan": disk.newest_scan(home, user),
        "equity": equity_curve(points),
        "equity_source": source if len(points) >= 2 else None,
        "logs": disk.log_tails(home, user),
        "reports": {kind: (p.name if p else None) for kind, p in
                    ((k, disk.report_file(home, user, k)) for k in disk.REPORTS)},
        "day_pnl": pnl,
        "charges": charges,
        "live": live,
        "paused": disk.pause_state(home, user),
        "halt": disk.halt_state(home, user),
        "heartbeat": disk.heartbeat_view(home, user, time.time()),
    }


def intraday_equity(live: Live) -> list[tuple[str, float]]:
    """Today's equity as the dashboard's own summaries saw it (when the daily report has not
    recorded two sessions yet)."""
    return [(time.strftime("%H:%M", time.localtime(t)), v) for t, v in live.equity]
