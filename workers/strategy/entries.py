"""Which entries, and how many shares: the entry run's decisions, shared by place_orders_daily and
the backtest (issue 21: the backtest calls the functions the job calls, so the two cannot drift).

Plain data in and out: no I/O, no clock, no Kite. The job reads the account, the state file and
the quotes and passes what it read; the backtest passes its replayed account and minute path.

The run, in the job's order:

1. :func:`select_entries`: the first run of a session selects from its input (scan rows best
   first, or a person's ``--from`` list in its own order) against the blocked symbols (held, sold
   today, an open BUY; the caller's reasons) and the slots taken (``MAX_CNC_POSITIONS`` minus the
   positions the bot owns and its open BUYs). The run's :class:`Basis` is the cash, the bot's
   equity (:func:`entry_equity`) and the number selected. A later run of the session completes
   that first plan instead (:func:`complete_plan`): what was sent is "already placed today", never
   selected again, the rest is sized with the first run's Basis.
2. :func:`cap_new_entries`: at most ``MAX_NEW_ENTRIES_PER_DAY`` new entries per session, today's
   entries already sent counted.
3. :func:`size_entries`: each entry sized at its LTP (sizing.size_entry), checked
   (sizing.check_pre_trade), then sized down to MAX_ORDER_VALUE, MAX_POSITION_PERCENT and what
   MAX_CAPITAL leaves (sizing.fit_to_limits), the capital room used up entry by entry in order.
4. :func:`check_at_send`: right before each order, on a fresh quote: the setup filter
   (sizing.entry_filter; a gapped-up symbol is skipped before any re-pricing), the re-pricing at
   the ask (sizing.reprice_at_ask) and the pre-trade limits against the LTP the plan was sized on.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from workers.strategy.patterns import ScanResult
from workers.strategy.sizing import (
    EntryPlan,
    Skipped,
    check_pre_trade,
    entry_filter,
    fit_to_limits,
    reprice_at_ask,
    select_candidates,
    size_entry,
)

#: the skip reason of a planned symbol whose entry was already sent this session
ALREADY_PLACED = "already placed today"


@dataclass(frozen=True)
class Basis:
    """What a plan's entries are sized with: fixed by the first run of the session."""

    cash: float
    equity: float
    n_selected: int


@dataclass(frozen=True)
class EntryLimits:
    """The user's entry settings, read once per run."""

    min_score: int
    max_positions: int
    percent: float
    risk_percent: float | None
    max_value: float | None
    band: float | None
    slippage: float
    position_percent: float | None
    max_capital: float | None
    new_per_day: int
    max_gap: float

    @classmethod
    def from_settings(cls, number: Callable[[str], float | None]) -> EntryLimits:
        """From ``number(key)``: a key's numeric value with the schema's default applied, None when
        unset (the job passes ``Settings.optional_number``; the backtest its settings dict read
        with ``kitefleet.settings.KEYS[key].default``)."""

        def required(key: str) -> float:
            value = number(key)
            if value is None:
                raise KeyError(f"setting {key} has no value and no default")
            return float(value)

        def optional(key: str) -> float | None:
            value = number(key)
            return None if value is None else float(value)

        return cls(
            min_score=int(required("MIN_SCORE")),
            max_positions=int(required("MAX_CNC_POSITIONS")),
            percent=required("CAPITAL_DEPLOYMENT_PERCENT"),
            risk_percent=optional("RISK_PER_TRADE_PERCENT"),
            max_value=optional("MAX_ORDER_VALUE"),
            band=optional("PRICE_BAND_PERCENT"),
            slippage=required("ENTRY_SLIPPAGE_PERCENT"),
            position_percent=optional("MAX_POSITION_PERCENT"),
            max_capital=optional("MAX_CAPITAL"),
            new_per_day=int(required("MAX_NEW_ENTRIES_PER_DAY")),
            max_gap=required("ENTRY_MAX_GAP_PERCENT"),
        )


def entry_equity(cash: float, managed_value: float) -> float:
    """The bot's equity for sizing: free cash + the market value (at the LTP) of the shares it
    manages. Under MANAGE_SCOPE=own a large personal portfolio in the same account must not
    inflate every percentage of it."""
    return round(cash + managed_value, 2)


def select_entries(rows: Sequence[ScanResult], blocked: Mapping[str, str], taken: int, limits: EntryLimits, *,
                   has_score: bool = True, manual: bool = False) -> tuple[list[ScanResult], list[Skipped]]:
    """The first run's selection: (rows to enter, every other row with its reason).

    ``blocked``: symbol -> why it must not be bought now (held, sold today, an open BUY, ...);
    ``taken``: the position slots already used (the bot's positions and its open BUYs: a symbol
    sold today holds nothing, a person's holding takes no slot of the bot's). A scan (``has_score``
    and not ``manual``) is ranked best first; a person's list keeps its order, and MIN_SCORE
    applies to it only when it has scores. The blocked symbols are reported first."""
    if has_score and not manual:
        selected, skipped = select_candidates(rows, blocked, min_score=limits.min_score,
                                              max_positions=limits.max_positions, held_count=taken)
    else:
        selected, skipped = select_candidates(rows, blocked, min_score=limits.min_score if has_score else None,
                                              max_positions=limits.max_positions, held_count=taken, manual=True)
    reasons = set(blocked.values())
    skipped = [s for s in skipped if s.reason in reasons] + [s for s in skipped if s.reason not in reasons]
    return selected, skipped


def complete_plan(planned: Sequence[ScanResult], sent: Mapping[str, str],
                  blocked: Mapping[str, str]) -> tuple[list[ScanResult], list[Skipped]]:
    """A later run of the session: the first run's planned rows (in its order) still to do.
    ``sent``: symbol -> the "already placed today" reason of an entry already sent (never sent
    again); ``blocked``: the symbols held, sold or pending meanwhile."""
    selected: list[ScanResult] = []
    skipped: list[Skipped] = []
    for row in planned:
        if row.symbol in sent:
            skipped.append(Skipped(row.symbol, sent[row.symbol]))
        elif row.symbol in blocked:
            skipped.append(Skipped(row.symbol, blocked[row.symbol]))
        else:
            selected.append(row)
    return selected, skipped


def cap_new_entries(symbols: Sequence[str], already_sent: Collection[str], earlier: int,
                    limit: int) -> tuple[list[str], list[str]]:
    """(symbols this run may send, the rest): at most ``limit`` new entries per session.
    ``earlier``: the entries today's earlier runs sent that are not among ``symbols``;
    ``already_sent``: those of ``symbols`` whose entry is already at the broker (no new entry)."""
    room = max(0, limit - earlier)
    fresh = [s for s in symbols if s not in already_sent]
    keep = set(fresh[:room]) | {s for s in symbols if s in already_sent}
    return [s for s in symbols if s in keep], [s for s in symbols if s not in keep]


def over_cap_reason(limit: int) -> str:
    return f"MAX_NEW_ENTRIES_PER_DAY {limit} reached today"


@dataclass
class Sized:
    """One entry as the run plans it: its order at the LTP and why it would be refused now."""

    plan: EntryPlan
    refusals: list[str] = field(default_factory=list)
    #: the shares sized at the LTP before the limits sized it down (the run record's planned quantity)
    planned_quantity: int = 0


def size_entries(rows: Sequence[ScanResult], ltps: Mapping[str, float], ticks: Mapping[str, float], basis: Basis,
                 limits: EntryLimits, *, paused: bool = False, planned_qty: Mapping[str, int] | None = None,
                 deployed: float = 0.0) -> list[Sized]:
    """The run's plan, entry by entry in order: the budget and quantity at the LTP (a later run
    never exceeds the first run's quantity, ``planned_qty``), the pre-trade limits at that LTP
    (shown in the plan; checked again at the send), then sized DOWN to MAX_ORDER_VALUE,
    MAX_POSITION_PERCENT of the bot's equity and what MAX_CAPITAL leaves after ``deployed`` (the
    owned lots at cost plus the open entry BUYs), each entry using up the room the next one sees
    (issue 18: a slightly larger account must not have its only trade refused)."""
    planned_qty = planned_qty or {}
    out: list[Sized] = []
    for r in rows:
        ltp = ltps.get(r.symbol, 0.0)
        plan = size_entry(basis.cash, limits.percent, basis.n_selected, ltp, ticks[r.symbol], r.stop_loss,
                          basis.equity, limits.risk_percent, symbol=r.symbol, max_quantity=planned_qty.get(r.symbol))
        out.append(Sized(plan, check_pre_trade(plan, ltp, limits.max_value, limits.band, paused), plan.quantity))
    room = capital_room(limits, deployed)
    for s in out:
        s.plan = fit_to_limits(s.plan, equity=basis.equity, max_position_percent=limits.position_percent,
                               max_order_value=limits.max_value, capital_room=room)
        if room is not None:
            room = max(0.0, room - s.plan.order_value)
        # MAX_ORDER_VALUE sized it down: no refusal for it
        s.refusals = [x for x in s.refusals if not x.startswith("order value")]
        if s.plan.quantity <= 0 and s.plan.sized_down:
            s.refusals.append(f"quantity 0: {s.plan.sized_down}")
    return out


def capital_room(limits: EntryLimits, deployed: float) -> float | None:
    """What MAX_CAPITAL leaves to deploy after ``deployed`` (None: no MAX_CAPITAL)."""
    return None if limits.max_capital is None else max(0.0, limits.max_capital - deployed)


@dataclass(frozen=True)
class AtSend:
    """An entry right before its order: the plan to send (re-priced at the ask when it could be),
    why it must not be sent (empty: send it), the best ask seen, and ``gone``, the setup filter's
    reason when the entry is skipped without re-pricing."""

    plan: EntryPlan
    refusals: list[str]
    best_ask: float | None = None
    gone: str | None = None

    @property
    def sendable(self) -> EntryPlan | None:
        return self.plan if not self.refusals else None


def check_at_send(planned: EntryPlan, row: ScanResult, fresh_ltp: float, depth: Mapping[str, Any] | None,
                  upper_circuit: float | None, basis: Basis, limits: EntryLimits, *,
                  paused: bool = False, capital_room: float | None = None) -> AtSend:
    """The checks right before one entry's order, on a fresh quote (LTP, depth, upper circuit):

    1. the setup the scan saw must still be there (sizing.entry_filter: gapped up beyond
       ENTRY_MAX_GAP_PERCENT, below the scan's stop, at the upper circuit): else skipped;
    2. re-priced at the ask level covering the planned quantity (sizing.reprice_at_ask, refused
       beyond ENTRY_SLIPPAGE_PERCENT or with no sellers) and fitted again to the limits at that
       price, MAX_CAPITAL's ``capital_room`` (what is left after the deployed capital and this
       run's earlier sends) included;
    3. the pre-trade limits (sizing.check_pre_trade) with the sanity band around the LTP the plan
       was sized on, ``planned.ltp``: the slippage cap bounds the price against the fresh LTP, the
       band a plan gone stale (e.g. while a person confirmed it)."""
    gone = entry_filter(fresh_ltp, row.entry, row.stop_loss, upper_circuit, limits.max_gap)
    if gone is not None:
        return AtSend(planned, [gone], None, gone)
    fresh, ask = reprice_at_ask(planned, depth, fresh_ltp, cash=basis.cash, deployment_percent=limits.percent,
                                n_selected=basis.n_selected, equity=basis.equity, risk_percent=limits.risk_percent,
                                stop=row.stop_loss, slippage_percent=limits.slippage,
                                max_position_percent=limits.position_percent, max_order_value=limits.max_value,
                                capital_room=capital_room)
    refusals = [] if fresh is not None else [ask.reason or "no usable ask"]
    plan = fresh if fresh is not None else planned
    refusals += check_pre_trade(plan, planned.ltp, limits.max_value, limits.band, paused)
    return AtSend(plan, refusals, ask.best_ask)
