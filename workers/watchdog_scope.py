"""Which shares the watchdog manages (``MANAGE_SCOPE``, workers.ledger): pure helpers on plain data.

Under ``own`` (the default) the watchdog watches and sells only what the bot owns: a symbol is
tracked for ``min(owned, held)`` shares, an exit sells
``min(owned - the bot's open SELLs, held - all open CNC SELLs)`` (workers.ledger.sellable), and
after an exit fills the bot's stop GTT is cut to the owned shares still held. A person's shares
in the same demat account are never tracked, sold or given a smaller stop. Under ``all`` (the
legacy behaviour) every NSE CNC holding is the bot's: tracked for what is held, an exit sells
``held - open CNC SELLs``.

``owned`` is the ledger brought up to today's order book (workers.portfolio.reconcile_ledger) on
a copy of the state: the watchdog's own exit fills and fired bot stops are taken off at once,
before the next stop run writes them down. The copy is rebuilt whenever the state file changes
(adopt, release, a stop run, an entry run), so a running watchdog sees a ledger change within
one poll.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from workers import ledger
from workers.exit_records import pending_sell_quantity
from workers.gtt import stop_ownership
from workers.portfolio import ALL, OWN, AccountSnapshot, held_quantities, manage_scope, reconcile_ledger

__all__ = ["ALL", "OWN", "OwnedView", "exit_quantity", "needs_gtts", "owned_view"]


@dataclass(frozen=True)
class OwnedView:
    """What the bot manages of the account at one positions read: ``managed`` symbol -> shares
    tracked (``min(owned, held)`` / held), ``owned`` symbol -> the reconciled ledger's shares,
    ``unmanaged`` symbol -> held shares left alone, ``bot_sell_ids`` the bot's SELL orders."""

    mode: str
    managed: dict[str, int]
    owned: dict[str, int]
    unmanaged: dict[str, int]
    bot_sell_ids: frozenset[str] = field(default_factory=frozenset)


def needs_gtts(orders: Iterable[Mapping[str, Any]], intents: Mapping[str, Mapping[str, Any]]) -> bool:
    """True when the book has a filled NSE CNC SELL that no SELL intent of the bot names: it may
    be a fired bot stop (its order carries no tag), which only the GTT list tells apart from a
    person's sale. Saves a GTT list read on most refreshes."""
    tags = {str(t) for t, i in intents.items() if i.get("kind") == "order"}
    for o in orders:
        if (str(o.get("transaction_type") or "").upper() == "SELL" and int(o.get("filled_quantity") or 0) > 0
                and str(o.get("product") or "").upper() == "CNC" and str(o.get("tag") or "") not in tags):
            return True
    return False


def owned_view(state: Mapping[str, Any], account: AccountSnapshot, gtts: Sequence[Mapping[str, Any]],
               session: date, mode: str) -> OwnedView:
    """The watchdog's scope at this positions read, from a copy of the state (nothing written)."""
    held = held_quantities(account)
    view: dict[str, Any] = {"ledger": copy.deepcopy(state.get("ledger")), "intents": state.get("intents") or {},
                            "stops": state.get("stops") or {}}
    reconcile_ledger(view, account, gtts, session)
    scope = manage_scope(view, held, mode)
    bot_ids = ledger.bot_sell_order_ids(view["intents"], account.orders, gtts, stop_ownership(view).owned_ids)
    return OwnedView(scope.mode, dict(scope.protect), ledger.owned_quantities(view["ledger"]),
                     dict(scope.unmanaged), frozenset(bot_ids))


def exit_quantity(mode: str, symbol: str, owned: int, held: int, orders: Sequence[Mapping[str, Any]],
                  bot_sell_ids: Iterable[str]) -> int:
    """What one exit may sell now. ``own``: ``min(owned - the bot's open SELLs, held - all open
    CNC SELLs)``; ``all``: held minus the open CNC SELLs (every held share is the bot's)."""
    if mode == ALL:
        return max(0, held - pending_sell_quantity(orders, symbol))
    bot_open, every_open = ledger.open_sell_quantities(orders, set(bot_sell_ids))
    return ledger.sellable(owned, held, bot_open.get(symbol, 0), every_open.get(symbol, 0))


def gtt_target(mode: str, owned: int, held: int) -> int:
    """How many shares the bot's stop GTT may sell after an exit filled: the owned shares still
    held (``own``), every held share (``all``)."""
    return held if mode == ALL else max(0, min(owned, held))

