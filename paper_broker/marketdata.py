"""Kite's market-data payloads (quote, ohlc, ltp, historical candles) built from the simulated Market.

Shapes follow reference/kite-api.md 3.13 and 3.14:

* quote/ohlc/ltp answer a dict keyed by exactly the strings requested (``EXCHANGE:SYMBOL`` or a
  numeric instrument token); keys that name no instrument are left out. At most 500 keys for
  quote and 1,000 for ohlc and ltp (InputException beyond).
* historical: ``from``/``to`` as ``YYYY-MM-DD HH:MM:SS`` or ``YYYY-MM-DD`` (IST, both inclusive; a
  bare ``to`` date means the end of that day). The span ``to.date() - from.date()`` may be at most
  60 days for minute, 100 for 3/5/10minute, 200 for 15/30minute, 400 for 60minute and 2,000 for
  day. Nothing after the broker's now is served. Rows are ``[YYYY-MM-DDTHH:MM:SS+0530, o, h, l, c,
  volume]`` (day candles at ``T00:00:00+0530``), with a 7th ``oi`` (always 0) when ``oi=1``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, time, timedelta
from typing import Any, Protocol

from kitefleet import sim
from kitefleet.clock import IST
from paper_broker.errors import input_error

KITE_TIME = "%Y-%m-%d %H:%M:%S"
CANDLE_TIME = "%Y-%m-%dT%H:%M:%S+0530"
MAX_QUOTE_KEYS = 500
MAX_LTP_KEYS = 1000

#: interval -> max span in days
SPAN_LIMITS: dict[str, int] = {
    "minute": 60,
    "3minute": 100, "5minute": 100, "10minute": 100,
    "15minute": 200, "30minute": 200,
    "60minute": 400,
    "day": 2000,
}


class MarketLike(Protocol):
    """The part of kitefleet.sim.market.Market this module uses."""

    def instrument(self, key: str | int) -> Any: ...
    def ltp(self, token: int, now: datetime) -> float: ...
    def prev_close(self, token: int, day: date) -> float: ...
    def day_ohlcv(self, token: int, now: datetime) -> tuple[float, float, float, float, int]: ...
    def candles(self, token: int, interval: str, start: datetime, end: datetime,
                now: datetime) -> Sequence[tuple[Any, float, float, float, float, int]]: ...
    def circuit_limits(self, token: int, day: date) -> tuple[float, float]: ...
    def volume(self, token: int, now: datetime) -> int: ...
    def book(self, token: int, now: datetime) -> sim.Book: ...


def _p(x: float) -> float:
    return round(float(x), 2)


def resolve(market: MarketLike, key: str) -> Any:
    """The instrument a quote key names, or None. ``EXCHANGE:SYMBOL`` must match both parts."""
    if key.isdigit():
        return market.instrument(int(key))
    exchange, sep, symbol = key.partition(":")
    if not sep or not exchange or not symbol:
        return None
    inst = market.instrument(key)
    if inst is None or inst.exchange != exchange or inst.tradingsymbol != symbol:
        return None
    return inst


def _resolved(market: MarketLike, keys: list[str], limit: int) -> list[tuple[str, Any]]:
    if len(keys) > limit:
        raise input_error(f"Too many instruments: at most {limit} per request.")
    out = []
    for key in keys:
        inst = resolve(market, key)
        if inst is not None:
            out.append((key, inst))
    return out


def ltp_payload(market: MarketLike, keys: list[str], now: datetime) -> dict[str, object]:
    out: dict[str, object] = {}
    for key, inst in _resolved(market, keys, MAX_LTP_KEYS):
        token = inst.instrument_token
        out[key] = {"instrument_token": token, "last_price": _p(market.ltp(token, now))}
    return out


def _ohlc(market: MarketLike, token: int, now: datetime) -> tuple[dict[str, float], float, int]:
    opening, high, low, last, volume = market.day_ohlcv(token, now)
    close = market.prev_close(token, now.date())
    return {"open": _p(opening), "high": _p(high), "low": _p(low), "close": _p(close)}, _p(last), int(volume)


def ohlc_payload(market: MarketLike, keys: list[str], now: datetime) -> dict[str, object]:
    out: dict[str, object] = {}
    for key, inst in _resolved(market, keys, MAX_LTP_KEYS):
        ohlc, last, _ = _ohlc(market, inst.instrument_token, now)
        out[key] = {"instrument_token": inst.instrument_token, "last_price": last, "ohlc": ohlc}
    return out


def quote_payload(market: MarketLike, keys: list[str], now: datetime) -> dict[str, object]:
    out: dict[str, object] = {}
    stamp = now.astimezone(IST).strftime(KITE_TIME)
    for key, inst in _resolved(market, keys, MAX_QUOTE_KEYS):
        token = inst.instrument_token
        ohlc, last, volume = _ohlc(market, token, now)
        # The same book the order engine fills against: depth, and the band in force now.
        book = market.book(token, now)
        depth = book.depth_wire()
        out[key] = {
            "instrument_token": token,
            "timestamp": stamp,
            "last_trade_time": stamp,
            "last_price": last,
            "last_quantity": depth["buy"][0]["quantity"],
            # The whole book is deeper than the five levels shown; Kite's totals are of the whole book.
            "buy_quantity": sum(int(level["quantity"]) for level in depth["buy"]) * 7,
            "sell_quantity": sum(int(level["quantity"]) for level in depth["sell"]) * 7,
            "volume": volume,
            # No trade tape to weigh: the typical price stands in for the VWAP.
            "average_price": _p((ohlc["high"] + ohlc["low"] + last) / 3) if volume else last,
            "oi": 0, "oi_day_high": 0, "oi_day_low": 0,
            # As Kite's REST quote sends it: 0 (the change is last_price - ohlc.close; reference 3.13).
            "net_change": 0,
            "lower_circuit_limit": _p(book.price(book.lower)),
            "upper_circuit_limit": _p(book.price(book.upper)),
            "ohlc": ohlc,
            "depth": depth,
        }
    return out


def parse_kite_time(value: str | None, name: str, *, end_of_day: bool) -> datetime:
    """``YYYY-MM-DD HH:MM:SS`` or ``YYYY-MM-DD`` (IST); a bare date is its start or end of day."""
    if not value:
        raise input_error(f"Missing `{name}`.")
    value = value.strip()
    try:
        if len(value) == 10:
            day = date.fromisoformat(value)
            return datetime.combine(day, time(23, 59, 59) if end_of_day else time(0), IST)
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise input_error(f"Invalid `{name}`: expected YYYY-MM-DD HH:MM:SS or YYYY-MM-DD.") from None
    return moment.replace(tzinfo=IST) if moment.tzinfo is None else moment.astimezone(IST)


def _candle_time(start: datetime | date, interval: str) -> str:
    if not isinstance(start, datetime):
        start = datetime.combine(start, time(0), IST)
    start = start.astimezone(IST)
    if interval == "day":
        start = start.replace(hour=0, minute=0, second=0, microsecond=0)
    return start.strftime(CANDLE_TIME)


def historical_payload(market: MarketLike, token_text: str, interval: str, query: dict[str, str],
                       now: datetime) -> dict[str, object]:
    if interval not in SPAN_LIMITS:
        raise input_error(f"Invalid interval: {interval!r}.")
    if not token_text.isdigit():
        raise input_error("Invalid instrument token.")
    inst = market.instrument(int(token_text))
    if inst is None:
        raise input_error("Invalid instrument token.")
    start = parse_kite_time(query.get("from"), "from", end_of_day=False)
    end = parse_kite_time(query.get("to"), "to", end_of_day=True)
    if start > end:
        raise input_error("Invalid `from` date: it is after the `to` date.")
    limit = SPAN_LIMITS[interval]
    if (end.date() - start.date()).days > limit:
        raise input_error(f"interval exceeds max limit: {limit} days")
    with_oi = query.get("oi") in ("1", "true")
    end = min(end, now)
    rows: list[list[object]] = []
    if start <= end:
        cutoff = now + timedelta(microseconds=1)
        for candle in market.candles(inst.instrument_token, interval, start, end, now):
            begins = candle[0]
            if isinstance(begins, datetime) and begins >= cutoff:
                continue
            row: list[object] = [_candle_time(begins, interval), _p(candle[1]), _p(candle[2]),
                                 _p(candle[3]), _p(candle[4]), int(candle[5])]
            if with_oi:
                row.append(0)
            rows.append(row)
    return {"candles": rows}
