"""The run record of place_orders_daily: one JSON file per run that planned entries, saying what
each entry became (sent, refused by a limit, rejected by the broker, not reached).

On-disk contract (written only by place_orders_daily, at the end of the run, also when it stops
early on a token, broker or reconciliation error: the record is written before the exit)::

    data/<User>/orders/orders_<User>_<YYYYMMDD_HHMMSS>.json   (the run's start time)
        Not written for --dry-run, a cancelled --confirm, or outside the session. Legacy top-level
        fields (user_profile, timestamp, brooks_file_used, available_capital, usable_capital,
        capital_utilization_percent, total_orders_attempted, successful_orders,
        total_investment, skipped_existing_positions, orders) plus session, mode, scan_file_used,
        equity, n_selected, paused, skipped [{ticker, reason}], stopped (why the run stopped
        early, or null). Each order: ticker, brooks_entry_price, stop_loss, target_price,
        risk_reward_ratio, order_timestamp, order_success, gtt_success (the filled shares have a
        stop GTT, placed at the fill by workers.bot_stop), error_message (a refusal, or ``skipped:
        <why>`` from the entry filter), current_price (the LTP sized on: the fresh quote's
        once the entry was priced for sending), position_size, investment_amount (shares x limit
        price), limit_price (the ask level covering the quantity), best_ask (of that quote),
        planned_quantity (the plan's, sized at the LTP), order_id, tag, order_status, refusals
        [...], sent_now, stop_gtt_id, stop_trigger, stop_source (``scan_stop``,
        ``prev_session_low`` or ``fallback``), stop_error (why no stop yet: the watchdog's next
        poll or the next run places it). Written atomically, mode 0600; a name already taken gets
        ``_2``, ``_3``...
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

from kitefleet import clock
from kitefleet.atomic import atomic_write_json
from kitefleet.home import Home
from workers.portfolio import HELD, HELD_ELSEWHERE, SOLD_TODAY
from workers.strategy.patterns import ScanResult
from workers.strategy.sizing import EntryPlan, Skipped


@dataclass
class Entry:
    """One symbol of the run: its input row, its order as sized, and what became of it."""

    row: ScanResult
    tag: str
    plan: EntryPlan | None = None
    refusals: list[str] = field(default_factory=list)
    fresh_ltp: float | None = None
    best_ask: float | None = None
    planned_quantity: int | None = None
    order_id: str | None = None
    order_status: str | None = None
    sent_now: bool = False
    error: str | None = None
    at: datetime | None = None
    #: the broker stop of the filled shares (workers.bot_stop), or why there is none yet
    stop_gtt_id: int | None = None
    stop_trigger: float | None = None
    stop_source: str | None = None
    stop_error: str | None = None

    @property
    def success(self) -> bool:
        return self.order_id is not None and self.error is None

    def record(self) -> dict[str, Any]:
        plan = self.plan
        qty = plan.quantity if plan else 0
        return {
            "ticker": self.row.symbol,
            "brooks_entry_price": self.row.entry or 0,
            "stop_loss": self.row.stop_loss,
            "target_price": self.row.target_1,
            "risk_reward_ratio": self.row.risk_reward,
            "order_timestamp": (self.at or clock.now()).isoformat(),
            "order_success": self.success,
            "gtt_success": self.stop_gtt_id is not None and self.stop_error is None,
            "error_message": self.error,
            "current_price": plan.ltp if plan else 0,
            "position_size": qty if self.success or plan is not None else 0,
            "investment_amount": plan.order_value if plan else 0,
            "limit_price": plan.limit_price if plan else None,
            "best_ask": self.best_ask,
            "planned_quantity": self.planned_quantity,
            "order_id": self.order_id,
            "tag": self.tag,
            "order_status": self.order_status,
            "refusals": self.refusals,
            "sent_now": self.sent_now,
            # which limit sized it down and from what (MAX_ORDER_VALUE, MAX_POSITION_PERCENT, MAX_CAPITAL)
            "sized_down": plan.sized_down if plan else None,
            "stop_gtt_id": self.stop_gtt_id,
            "stop_trigger": self.stop_trigger,
            "stop_source": self.stop_source,
            "stop_error": self.stop_error,
        }


@dataclass
class EntryRun:
    """One run of place_orders_daily: what it sized with, its entries and skips, why it stopped."""

    user: str
    mode: str
    started: datetime
    session: date
    source: str
    cash: float
    percent: float
    equity: float
    n_selected: int
    paused: bool
    entries: list[Entry]
    skipped: list[Skipped]
    stopped: str | None = None

    @property
    def successes(self) -> list[Entry]:
        return [e for e in self.entries if e.success]

    def note_order_book(self, orders: list[dict[str, Any]]) -> None:
        """Each sent entry's status as the order book shows it; a rejection becomes its error."""
        by_id = {str(o.get("order_id")): o for o in orders}
        for e in self.entries:
            if e.order_id and e.order_id in by_id:
                e.order_status = by_id[e.order_id].get("status")
                if e.order_status == "REJECTED":
                    e.error = f"order rejected: {by_id[e.order_id].get('status_message') or 'no reason given'}"

    def record(self) -> dict[str, Any]:
        successes = self.successes
        return {
            "user_profile": self.user,
            "timestamp": self.started.isoformat(),
            "session": self.session.isoformat(),
            "mode": self.mode,
            "brooks_file_used": self.source,
            "scan_file_used": self.source,
            "available_capital": self.cash,
            "usable_capital": round(self.cash * self.percent / 100, 2),
            "capital_utilization_percent": self.percent,
            "equity": self.equity,
            "n_selected": self.n_selected,
            "paused": self.paused,
            "total_orders_attempted": sum(1 for e in self.entries if e.at is not None),
            "successful_orders": len(successes),
            "total_investment": round(sum(e.plan.order_value for e in successes if e.plan), 2),
            "skipped_existing_positions": [s.symbol for s in self.skipped
                                           if s.reason in (HELD, HELD_ELSEWHERE, SOLD_TODAY)],
            "skipped": [{"ticker": s.symbol, "reason": s.reason} for s in self.skipped],
            "stopped": self.stopped,
            "orders": [e.record() for e in self.entries],
        }


def orders_dir(home: Home, user: str) -> Path:
    return home.user_data_dir(user) / "orders"


def write_record(home: Home, user: str, record: dict[str, Any], started: datetime) -> Path:
    folder = orders_dir(home, user)
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    stem = f"orders_{user}_{started:%Y%m%d_%H%M%S}"
    path = folder / f"{stem}.json"
    n = 2
    while path.exists():
        path = folder / f"{stem}_{n}.json"
        n += 1
    atomic_write_json(path, record, mode=0o600)
    return path
