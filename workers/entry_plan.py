"""The day's entry plan: the first run of a session fixes what place_orders_daily enters, later runs
of that session only complete it.

Why: a rerun (after a crash, a broker refusal, a pre-trade limit, or simply a second start) must
never select again on a changed account: the cash it sees is lower by the first run's orders, the
symbols are pending or held, so a fresh selection would size differently or pick new symbols and
deploy more than the first run meant to.

State (``data/trading_state_<User>.json`` via kitefleet.state.StateStore; written by
place_orders_daily only, read also by workers.portfolio.record_entry_fills for the stops and
targets of filled entries, pruned after ``workers.portfolio.KEEP_PLAN_DAYS``)::

    "entry_plans": {"<session>|<input file name>": {
        "session": "YYYY-MM-DD", "source": input file name, "created_at": ISO,
        "cash", "equity", "n_selected": what the first run sized with, "percent",
        "entries": {SYMBOL: {"tag", "entry", "stop_loss", "target_price", "risk_reward_ratio",
                             "quantity": the planned shares (sized at the LTP; a fresh price
                             lowers it, never raises it)}}}}

Protocol:

* The first run of a session that gets as far as sending (not ``--dry-run``, not a cancelled
  ``--confirm``, at least one entry) writes the plan for its input before its first order
  (``fix_plan``): the symbols it selected, less those blocked by an unresolved intent, and the
  cash, equity and number selected it sized them with, and each entry's planned quantity: the
  plan fixes the budget and the quantity, the price comes from a fresh quote at the send.
* A later run of the same session and input reads the plan (``read_plan``) instead of selecting:
  symbols whose entry intent was sent (or resolved by a person) are skipped as "already placed
  today", symbols held or with an open BUY meanwhile are skipped as such, and the others are
  sized with the first run's cash, equity and number selected (``plan_basis``) and checked again
  (``remaining``). A second run after a complete first run therefore sends nothing.
* The tag of an entry is ``make_tag(user, "place_orders_daily", session, symbol, "entry")``
  (``entry_tag``); it is what workers.intents uses to send each entry at most once.

The restart rows this protocol answers (second run the same day, a rerun after a crash or a
refusal) and their tests are in docs/restart-behaviour.md.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import Any

from kitefleet.state import StateStore
from workers.intents import RESOLVED, SENT, IntentLog, make_tag
from workers.portfolio import AccountSnapshot, entry_blocked, plan_key
from workers.strategy.entries import ALREADY_PLACED, Basis, complete_plan
from workers.strategy.patterns import ScanResult
from workers.strategy.sizing import Skipped

__all__ = ["JOB", "PURPOSE", "Basis", "entry_tag", "fix_plan", "plan_basis", "read_plan", "remaining"]

JOB = "place_orders_daily"
PURPOSE = "entry"


def entry_tag(user: str, session: date, symbol: str) -> str:
    return make_tag(user, JOB, session, symbol, PURPOSE)


def read_plan(state: dict[str, Any], session: date, source: str) -> dict[str, Any] | None:
    """The plan of ``session`` for the input file named ``source``; None before the first run."""
    plan: dict[str, Any] | None = (state.get("entry_plans") or {}).get(plan_key(session, source))
    return plan


def plan_basis(plan: dict[str, Any]) -> Basis:
    return Basis(cash=float(plan["cash"]), equity=float(plan["equity"]), n_selected=int(plan["n_selected"]))


def fix_plan(store: StateStore, user: str, session: date, source: str, now: datetime, basis: Basis,
             percent: float, rows: Sequence[ScanResult], quantities: Mapping[str, int] | None = None) -> None:
    """Write the plan of the first run: ``rows`` are the entries it is about to send."""
    with store.transaction() as st:
        st.setdefault("entry_plans", {})[plan_key(session, source)] = {
            "session": session.isoformat(), "source": source, "created_at": now.isoformat(),
            "cash": basis.cash, "equity": basis.equity, "n_selected": basis.n_selected, "percent": percent,
            "entries": {r.symbol: {"tag": entry_tag(user, session, r.symbol), "entry": r.entry,
                                   "stop_loss": r.stop_loss, "target_price": r.target_1,
                                   "risk_reward_ratio": r.risk_reward,
                                   "quantity": (quantities or {}).get(r.symbol)} for r in rows},
        }


def remaining(plan: dict[str, Any], rows: list[ScanResult], account: AccountSnapshot, intents: IntentLog,
              today: date, user: str) -> tuple[list[ScanResult], list[Skipped]]:
    """The planned entries still to do: not sent yet, and not held or pending meanwhile
    (workers.strategy.entries.complete_plan, which the backtest's later entry slots call too)."""
    by_symbol = {r.symbol: r for r in rows}
    planned: list[ScanResult] = []
    sent: dict[str, str] = {}
    for sym, meta in (plan.get("entries") or {}).items():
        tag = str(meta.get("tag") or entry_tag(user, today, sym))
        intent = intents.get(tag)
        if intent is not None and intent.get("status") in (SENT, RESOLVED):
            status = intent.get("order_status") or "sent"
            sent[sym] = f"{ALREADY_PLACED}: order {intent.get('broker_id')} ({status})"
        planned.append(by_symbol.get(sym) or ScanResult(sym, 0, entry=meta.get("entry"),
                                                        stop_loss=meta.get("stop_loss"),
                                                        target_1=meta.get("target_price"),
                                                        risk_reward=meta.get("risk_reward_ratio") or 0.0))
    return complete_plan(planned, sent, entry_blocked(account))
