"""What the backtest's parts hand each other: plain, frozen rows (no I/O, no clock).

The engine produces one :class:`RuleResult` per exit rule; metrics and the report read them.
Times are aware datetimes in Asia/Kolkata; prices are rupees on the tick grid; money is rupees.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

RULES: tuple[str, ...] = ("hourly_low", "atr_trailing")
SOURCES: tuple[str, ...] = ("paper", "live")


@dataclass(frozen=True)
class BacktestSpec:
    """One run: whose settings, which sessions, which rules, which data."""

    user: str
    start: date
    end: date
    rules: tuple[str, ...]
    source: str = "paper"
    seed: int = 1
    scenario: str | None = None  # path of a scenario file for the paper market
    initial_cash: float = 0.0
    settings: dict[str, Any] = field(default_factory=dict)  # the settings the run used, by key


@dataclass(frozen=True)
class OrderRow:
    """Every order the replay would have sent (entries, exits, stop GTT children)."""

    rule: str
    time: datetime
    symbol: str
    side: str  # BUY | SELL
    purpose: str  # entry | exit | stop
    quantity: int
    price: float  # the order's limit price
    filled: int
    average_price: float | None
    status: str  # COMPLETE | CANCELLED | REJECTED (Kite order statuses)
    charges: float
    reason: str = ""


@dataclass(frozen=True)
class TradeRow:
    """One round trip: an entry and the exit(s) that closed it (quantity-weighted exit price)."""

    rule: str
    symbol: str
    entry_time: datetime
    entry_price: float
    exit_time: datetime
    exit_price: float
    quantity: int
    charges: float  # both legs
    pnl: float  # after charges
    exit_reason: str  # hourly_low | atr_trailing | stop (GTT) | flatten (daily loss limit)
    holding_days: int  # sessions from entry to exit; 0 = sold on its entry day


@dataclass(frozen=True)
class EquityRow:
    """The account at one session's close."""

    rule: str
    session: date
    cash: float
    holdings_value: float  # owned shares at the session's close
    equity: float
    charges: float  # that session's charges
    exposure: float  # holdings_value / equity


@dataclass(frozen=True)
class OpenPosition:
    """A position still held after the range's last session, marked at that session's close (it is
    in the last equity row's holdings; no trade row: it has not been sold)."""

    rule: str
    symbol: str
    entry_time: datetime
    entry_price: float
    quantity: int
    mark_price: float  # the last session's close (the entry price when that session had no candles)
    entry_charges: float  # the buy's charges still carried by these shares
    unrealised_pnl: float  # (mark - entry) x quantity - entry_charges: sell charges not counted
    holding_days: int  # sessions held so far


@dataclass
class RuleResult:
    rule: str
    trades: list[TradeRow] = field(default_factory=list)
    orders: list[OrderRow] = field(default_factory=list)
    equity: list[EquityRow] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # data that was not there (never invented)
    assumptions: list[str] = field(default_factory=list)  # e.g. the live source's fill price rule
    open_positions: list[OpenPosition] = field(default_factory=list)  # held at the range's end
    halts: list[str] = field(default_factory=list)  # the daily loss limit's trips, one line each
