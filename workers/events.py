"""The trading jobs' notifications, one call per thing a person should hear (kitefleet.outbox).

Each helper builds the event's text and its stable key (an order or GTT id, so a job that re-runs
or reads the same order book again tells nothing twice) and never raises: ``outbox.emit`` logs
once and goes on. Kept apart so a trading job's hunk is one line.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from kitefleet import clock
from kitefleet import outbox as ob
from kitefleet.home import Home


def entry_placed(home: Home, user: str, symbol: str, quantity: int, price: float, order_id: Any) -> None:
    ob.emit(home, user, "entry_placed", f"BUY {quantity} {symbol} @ {price:.2f} LIMIT CNC placed (order {order_id})",
            key=f"entry|{order_id}")


def fills(home: Home, user: str, orders: Iterable[Mapping[str, Any]]) -> None:
    """Every completed BUY the bot placed (a tagged order) in ``orders``: one ``fill`` each."""
    for o in orders:
        if o.get("status") == "COMPLETE" and o.get("transaction_type") == "BUY" and o.get("tag"):
            ob.emit(home, user, "fill", f"bought {o.get('filled_quantity')} {o.get('tradingsymbol')} @ "
                    f"{float(o.get('average_price') or 0):.2f} (order {o.get('order_id')})",
                    key=f"fill|{o.get('order_id')}")


def exit_filled(home: Home, user: str, symbol: str, record: Mapping[str, Any]) -> None:
    ob.emit(home, user, "exit", f"sold {record.get('filled')} {symbol} @ {record.get('price')} "
            f"(watchdog exit, order {record.get('order_id')}): {record.get('note') or ''}".rstrip(": "),
            key=f"exit|{record.get('order_id')}")


def gtts_triggered(home: Home, user: str, gtts: Iterable[Mapping[str, Any]], owned: Iterable[int]) -> None:
    owned = set(owned)
    for g in gtts:
        if g.get("status") == "triggered" and g.get("id") in owned:
            sym = (g.get("condition") or {}).get("tradingsymbol")
            ob.emit(home, user, "gtt_triggered", f"stop GTT {g.get('id')} of {sym} triggered",
                    key=f"gtt|{g.get('id')}")


def stop(home: Home, user: str, kind: str, symbol: str, text: str, key: str | None = None, *,
         daily: bool = False, dry_run: bool = False) -> None:
    """``stop_placed``, ``stop_moved`` (NOTIFY_LEVEL=all), ``stop_fallback``, ``stop_not_placed``,
    ``stop_not_active`` (warnings). ``daily``: said once a day per symbol (each run finds it again)."""
    if dry_run:
        return
    if daily:
        key = f"{symbol}|{clock.now().date()}"
    act = None if kind in ("stop_placed", "stop_moved") else f"orchestrator.py doctor {user}"
    ob.emit(home, user, kind, f"{symbol}: {text}", act=act, key=key)


def reconcile_failed(home: Home, user: str, job: str, why: str) -> None:
    ob.emit(home, user, "reconcile_failed", f"{job}: {why}",
            act=f"orchestrator.py resolve-intent {user} (lists what is unresolved), then "
                f"orchestrator.py resolve-intent {user} TAG --note TEXT once you know what happened")


def loss_limit(home: Home, user: str, text: str, until: Any, session: Any) -> None:
    """The daily loss limit halted the user until ``until`` (the next session's open)."""
    ob.emit(home, user, "loss_limit", f"HALTED until {until}: daily loss limit reached: {text}",
            act=f"orchestrator.py unhalt {user} lifts it earlier; orchestrator.py status {user}",
            key=f"loss_limit|{session}")
