"""Shared market data: instruments, tick sizes and candles, cached across processes and users.

Over 400 lines because the cache's on-disk contract is written out below; the code is one cache
(``MarketData``) whose instrument and candle halves share the same folder, locks and atomic writes.

The cache holds market data only, never anything about an account, so every user's processes
read it. It lives in one folder per data source (``Home.market_data_dir(source)``: ``live`` or
the paper broker's address), so simulated prices can never set a real stop.

On-disk contract (``data/shared/<source>/``; every file written atomically, temp + os.replace):

    instruments_<YYYYMMDD>.json     {"exchange", "day", "fetched_at", "rows": [instrument, ...]}:
                                    ``kite.instruments(exchange)`` fetched at most once per
                                    trading-clock day, by one process under instruments.lock;
                                    the others wait for it and read it. Older days are removed.
    instruments.lock                filelock guarding that fetch
    candles/<interval>/<token>.json {"token", "interval", "covered": [["YYYY-MM-DD", "YYYY-MM-DD"],
                                    ...], "candles": [[ISO time, open, high, low, close, volume],
                                    ...]}: ``covered`` lists the date ranges fully fetched (a day
                                    in a range without a candle had none: a holiday, a suspension)
    candles/<interval>/<token>.lock filelock per (instrument, interval): the process that finds a
                                    range missing fetches it while the others wait, then read it

    candles/checked/<token>.json    {"day", "compared": "YYYY-MM-DD", "cached_close", "fresh_close",
                                    "factor": float|null}: the day's check of the cache (below)

Only completed sessions (up to the last completed session by the shared clock and the NSE
calendar) are cached, for good: they never change, except on a split or bonus ex-date, from which
Kite serves the history back-adjusted. So once a day per symbol the newest cached completed daily
candle is compared with a fresh fetch of that day, recorded in ``candles/checked`` for all users'
processes: for a held symbol explicitly, before the stop run uses it (``adjustment(symbol)``: at
most one extra historical request per held symbol per day); for any symbol at no extra cost when
new sessions are fetched right after the newest cached one anyway (a scan appending the new day:
that fetch starts a day earlier). A close that differs beyond rounding (``ADJUSTMENT_TOLERANCE``)
drops every cached interval of the symbol (refetched) with a WARNING, and ``adjustment(symbol)``
returns the factor (cached / fresh close: 2.0 for a 1:2 split) for the rest of the day, so that
jobs scale what they keep in the user's state (update_cnc_stoploss: the stop floor and the ATR
anchor). The
still-forming session is fetched on every request and never written. So N users scanning the same
universe at the same moment cost the historical calls of one.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any, Protocol

from filelock import FileLock, Timeout

from kitefleet import clock
from kitefleet.atomic import atomic_write_json
from kitefleet.calendar import NseCalendar, load_calendar
from kitefleet.clock import IST
from kitefleet.errors import BrokerTemporaryError, KitefleetError

log = logging.getLogger("workers.marketdata")

DAY, HOUR = "day", "60minute"
#: Kite's longest span per historical request, in days (kite-api.md 3.14), less a safety margin.
MAX_SPAN_DAYS: dict[str, int] = {
    "minute": 55, "3minute": 95, "5minute": 95, "10minute": 95, "15minute": 190, "30minute": 190,
    HOUR: 390, DAY: 1990,
}
LOCK_TIMEOUT_S = 300.0
#: A cached close and a fresh one further apart than this (relative) mean the history was adjusted.
ADJUSTMENT_TOLERANCE = 0.002
_LOCK_POLL_S = 0.01
_INSTRUMENT_FIELDS = ("instrument_token", "exchange_token", "tradingsymbol", "name", "tick_size", "lot_size",
                      "instrument_type", "segment", "exchange", "expiry", "strike")


class UnknownInstrument(KitefleetError):
    pass


class CandleSource(Protocol):
    """What MarketData needs from the Kite client (workers.kite_client.KiteApi has it)."""

    def instruments(self, exchange: str | None = None) -> list[dict[str, Any]]: ...

    def historical_data(self, instrument_token: int, from_date: Any, to_date: Any, interval: str,
                        continuous: bool = False, oi: bool = False) -> list[dict[str, Any]]: ...


def _merge_ranges(ranges: Iterable[tuple[date, date]]) -> list[tuple[date, date]]:
    out: list[tuple[date, date]] = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1] + timedelta(days=1):
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out


def missing_ranges(covered: list[tuple[date, date]], start: date, end: date) -> list[tuple[date, date]]:
    """Parts of [start, end] (inclusive) not inside any covered range."""
    gaps: list[tuple[date, date]] = []
    cursor = start
    for lo, hi in _merge_ranges(covered):
        if hi < cursor:
            continue
        if lo > end:
            break
        if lo > cursor:
            gaps.append((cursor, min(end, lo - timedelta(days=1))))
        cursor = max(cursor, hi + timedelta(days=1))
        if cursor > end:
            break
    if cursor <= end:
        gaps.append((cursor, end))
    return gaps


def _chunks(start: date, end: date, span: int) -> Iterator[tuple[date, date]]:
    lo = start
    while lo <= end:
        hi = min(end, lo + timedelta(days=span - 1))
        yield lo, hi
        lo = hi + timedelta(days=1)


def _candle_row(candle: dict[str, Any]) -> list[Any]:
    stamp = candle["date"]
    if isinstance(stamp, datetime):
        stamp = (stamp if stamp.tzinfo else stamp.replace(tzinfo=IST)).astimezone(IST).isoformat()
    return [str(stamp), candle["open"], candle["high"], candle["low"], candle["close"],
            candle.get("volume", 0)]


def _candle_dict(row: list[Any]) -> dict[str, Any]:
    return {"date": datetime.fromisoformat(row[0]), "open": row[1], "high": row[2], "low": row[3],
            "close": row[4], "volume": row[5]}


def _row_day(row: list[Any]) -> date:
    return datetime.fromisoformat(row[0]).astimezone(IST).date()


class MarketData:
    """Instruments and candles of one data source, through the shared cache.

    ``api_calls`` counts the Kite requests this instance made (``instruments``, ``historical``).
    """

    def __init__(self, home: Any, source: str, kite: CandleSource, *, exchange: str = "NSE",
                 calendar: NseCalendar | None = None) -> None:
        self.folder: Path = home.market_data_dir(source)
        self.home = home
        self.source = source
        self.kite = kite
        self.exchange = exchange
        self._calendar = calendar
        self._instruments: tuple[date, dict[str, dict[str, Any]]] | None = None
        self._memo: dict[tuple[int, str], tuple[tuple[int, int], dict[str, Any]]] = {}
        self._lock = threading.Lock()
        self._checked: dict[int, dict[str, Any]] = {}  # token -> today's check record
        self.api_calls: dict[str, int] = {"instruments": 0, "historical": 0}

    # --- helpers -----------------------------------------------------------------------------
    @property
    def calendar(self) -> NseCalendar:
        if self._calendar is None:
            self._calendar = load_calendar(self.home.calendar_file, clock.today())
        return self._calendar

    @contextmanager
    def _file_lock(self, path: Path) -> Iterator[None]:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        lock = FileLock(path, timeout=LOCK_TIMEOUT_S, poll_interval=_LOCK_POLL_S)
        try:
            lock.acquire()
        except Timeout:
            raise BrokerTemporaryError(f"market data lock {path} not acquired in {LOCK_TIMEOUT_S:g} s") \
                from None
        try:
            yield
        finally:
            lock.release()

    @staticmethod
    def _read_json(path: Path) -> dict[str, Any] | None:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (ValueError, OSError) as exc:
            log.warning("ignoring unreadable cache file %s (%s); it will be fetched again", path, exc)
            return None
        return data if isinstance(data, dict) else None

    # --- instruments -------------------------------------------------------------------------
    def instruments_file(self, day: date | None = None) -> Path:
        return self.folder / f"instruments_{(day or clock.today()):%Y%m%d}.json"

    def _index(self) -> dict[str, dict[str, Any]]:
        day = clock.today()
        with self._lock:
            if self._instruments is not None and self._instruments[0] == day:
                return self._instruments[1]
        path = self.instruments_file(day)
        data = self._read_json(path)
        if data is None:
            with self._file_lock(self.folder / "instruments.lock"):
                data = self._read_json(path)
                if data is None:
                    data = self._fetch_instruments(day, path)
        index = {str(row["tradingsymbol"]).upper(): row for row in data.get("rows", [])
                 if row.get("exchange", self.exchange) == self.exchange}
        with self._lock:
            self._instruments = (day, index)
        return index

    def _fetch_instruments(self, day: date, path: Path) -> dict[str, Any]:
        self.api_calls["instruments"] += 1
        rows = []
        for inst in self.kite.instruments(self.exchange):
            row = {k: inst.get(k) for k in _INSTRUMENT_FIELDS}
            expiry = row.get("expiry")
            if isinstance(expiry, date):
                row["expiry"] = expiry.isoformat()
            rows.append(row)
        data = {"exchange": self.exchange, "day": day.isoformat(), "fetched_at": clock.now().isoformat(),
                "rows": rows}
        atomic_write_json(path, data, mode=0o644, indent=None)
        for old in self.folder.glob("instruments_*.json"):
            if old != path:
                old.unlink(missing_ok=True)
        log.info("instruments of %s fetched for %s: %d rows", self.exchange, day, len(rows))
        return data

    def instruments(self) -> list[dict[str, Any]]:
        return list(self._index().values())

    def instrument(self, symbol: str) -> dict[str, Any]:
        key = symbol.split(":", 1)[1] if ":" in symbol else symbol
        row = self._index().get(key.strip().upper())
        if row is None:
            raise UnknownInstrument(f"{symbol}: no such instrument on {self.exchange} ({self.source})")
        return row

    def token(self, symbol: str) -> int:
        return int(self.instrument(symbol)["instrument_token"])

    def tick_size(self, symbol: str) -> float:
        return float(self.instrument(symbol)["tick_size"])

    # --- candles -----------------------------------------------------------------------------
    def _candle_paths(self, token: int, interval: str) -> tuple[Path, Path]:
        folder = self.folder / "candles" / interval
        return folder / f"{token}.json", folder / f"{token}.lock"

    def _load_candles(self, path: Path, token: int, interval: str) -> dict[str, Any]:
        try:
            st = path.stat()
            key = (st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            return {"token": token, "interval": interval, "covered": [], "candles": []}
        memo = self._memo.get((token, interval))
        if memo is not None and memo[0] == key:
            return memo[1]
        data = self._read_json(path)
        if data is None or not (isinstance(data.get("covered"), list) and isinstance(data.get("candles"), list)):
            return {"token": token, "interval": interval, "covered": [], "candles": []}
        self._memo[(token, interval)] = (key, data)
        return data

    @staticmethod
    def _covered(data: dict[str, Any]) -> list[tuple[date, date]]:
        return [(date.fromisoformat(lo), date.fromisoformat(hi)) for lo, hi in data["covered"]]

    def _fetch(self, token: int, interval: str, start: date, end: date) -> list[list[Any]]:
        rows: list[list[Any]] = []
        for lo, hi in _chunks(start, end, MAX_SPAN_DAYS.get(interval, 55)):
            self.api_calls["historical"] += 1
            if interval == DAY:
                frm: Any = lo
                to: Any = hi
            else:
                frm = datetime.combine(lo, time(0, 0), IST)
                to = datetime.combine(hi, time(23, 59, 59), IST)
            rows.extend(_candle_row(c) for c in self.kite.historical_data(token, frm, to, interval))
        return rows

    def _completed(self, token: int, interval: str, start: date, end: date) -> list[list[Any]]:
        """Rows of [start, end] (all completed sessions) from the cache, fetching what is missing."""
        path, lock_path = self._candle_paths(token, interval)
        data = self._load_candles(path, token, interval)
        if missing_ranges(self._covered(data), start, end):
            with self._file_lock(lock_path):
                data = self._load_candles(path, token, interval)  # another process may have fetched it
                gaps = missing_ranges(self._covered(data), start, end)
                if gaps:
                    data = self._fill(token, interval, path, data, gaps, start, end)
        return [row for row in data["candles"] if start <= _row_day(row) <= end]

    def _fill(self, token: int, interval: str, path: Path, data: dict[str, Any], gaps: list[tuple[date, date]],
              start: date, end: date) -> dict[str, Any]:
        """Fetch ``gaps`` into the cache (under its lock). The day's check comes free when the last
        gap starts right after the newest cached day (a scan appending the new session): that
        fetch starts at the cached day, and a changed close drops the cache and fetches it all."""
        check = self._free_check_day(token, interval, data, gaps)
        if check is not None:
            gaps = [*gaps[:-1], (check, gaps[-1][1])]
        by_time = {row[0]: row for row in data["candles"]}
        cached_close = float(data["candles"][-1][4]) if check is not None else None
        fetched: list[list[Any]] = []
        for lo, hi in gaps:
            fetched.extend(row for row in self._fetch(token, interval, lo, hi) if lo <= _row_day(row) <= hi)
        covered = _merge_ranges(self._covered(data) + gaps)
        if check is not None:
            fresh = [r for r in fetched if _row_day(r) == check]
            record = self._check_record(token, check, cached_close, float(fresh[-1][4]) if fresh else None)
            if record["factor"] is not None:
                # The history changed: nothing cached of it can be trusted; fetch the whole range.
                by_time, covered = {}, [(start, end)]
                fetched = [row for row in self._fetch(token, interval, start, end) if start <= _row_day(row) <= end]
        for row in fetched:
            by_time[row[0]] = row
        data = {"token": token, "interval": interval,
                "covered": [[lo.isoformat(), hi.isoformat()] for lo, hi in covered],
                "candles": [by_time[k] for k in sorted(by_time, key=datetime.fromisoformat)]}
        atomic_write_json(path, data, mode=0o644, indent=None)
        self._memo.pop((token, interval), None)
        return data

    def _free_check_day(self, token: int, interval: str, data: dict[str, Any],
                        gaps: list[tuple[date, date]]) -> date | None:
        if interval != DAY or not data["candles"]:
            return None
        newest = _row_day(data["candles"][-1])
        lo, hi = gaps[-1]
        if not newest < lo or (lo - newest).days > 10 or (hi - newest).days >= MAX_SPAN_DAYS[DAY]:
            return None
        record = self._checked.get(token) or self._read_json(self._check_file(token))
        if record is not None and record.get("day") == clock.today().isoformat():
            return None
        return newest

    def _check_file(self, token: int) -> Path:
        return self.folder / "candles" / "checked" / f"{token}.json"

    def check_cache(self, token: int, today: date | None = None) -> dict[str, Any]:
        """Today's check of the token's cached candles against a fresh fetch (module docstring):
        done once per day for all processes, under the token's daily-candle lock."""
        today = today or clock.today()
        memo = self._checked.get(token)
        if memo is not None and memo.get("day") == today.isoformat():
            return memo
        marker = self._check_file(token)
        record = self._read_json(marker)
        if record is None or record.get("day") != today.isoformat():
            path, lock_path = self._candle_paths(token, DAY)
            with self._file_lock(lock_path):
                record = self._read_json(marker)
                if record is None or record.get("day") != today.isoformat():
                    record = {**self._compare_newest(token, today, path), "day": today.isoformat()}
                    atomic_write_json(marker, record, mode=0o644, indent=None)
        self._checked[token] = record
        return record

    def _compare_newest(self, token: int, today: date, path: Path) -> dict[str, Any]:
        cached = self._load_candles(path, token, DAY)["candles"]
        if not cached:
            return {"day": today.isoformat(), "compared": None, "cached_close": None, "fresh_close": None,
                    "factor": None}
        day = _row_day(cached[-1])
        fresh = [r for r in self._fetch(token, DAY, day, day) if _row_day(r) == day]
        return self._check_record(token, day, float(cached[-1][4]), float(fresh[-1][4]) if fresh else None,
                                  write=False)

    def _check_record(self, token: int, day: date, old: float | None, new: float | None, *,
                      write: bool = True) -> dict[str, Any]:
        """Today's check: the cached and fresh close of ``day``; beyond rounding, the symbol's
        cached candles of every interval are dropped (the daily file is rewritten by the caller)."""
        record: dict[str, Any] = {"day": clock.today().isoformat(), "compared": day.isoformat(),
                                  "cached_close": old, "fresh_close": new, "factor": None}
        if old is not None and new is not None and new > 0 \
                and abs(old - new) > ADJUSTMENT_TOLERANCE * max(old, new):
            record["factor"] = old / new
            for interval_dir in (self.folder / "candles").iterdir():
                if interval_dir.name != "checked":
                    (interval_dir / f"{token}.json").unlink(missing_ok=True)
            for key in [k for k in self._memo if k[0] == token]:
                self._memo.pop(key, None)
            log.warning("cached candles of token %s disagree with Kite's history (close of %s: cached %s, now %s; "
                        "factor %.4f: a split or bonus?): the cache is dropped and fetched again", token, day,
                        old, new, old / new)
        if write:
            atomic_write_json(self._check_file(token), record, mode=0o644, indent=None)
            self._checked[token] = record
        return record

    def adjustment(self, symbol: str, today: date | None = None) -> float | None:
        """The factor (old / new price) by which ``symbol``'s history changed today, or None."""
        factor = self.check_cache(self.token(symbol), today).get("factor")
        return float(factor) if isinstance(factor, int | float) else None

    def candles(self, symbol: str, interval: str, start: date, end: date, *,
                last_completed: date | None = None, now: datetime | None = None) -> list[dict[str, Any]]:
        """Candles of ``symbol`` for the sessions in [start, end], oldest first, shaped like
        ``kite.historical_data`` (``date`` aware in IST). Completed sessions come from the cache;
        today's still-forming session, when asked for, is fetched and never cached."""
        now = now or clock.now()
        token = self.token(symbol)
        if last_completed is None:
            last_completed = self.calendar.last_completed_session(now)
        rows: list[list[Any]] = []
        if start <= min(end, last_completed):
            rows = self._completed(token, interval, start, min(end, last_completed))
        today = now.astimezone(IST).date()
        if start <= today <= end and today > last_completed and self._session_started(today, now):
            live = [r for r in self._fetch(token, interval, today, today) if _row_day(r) == today]
            rows = rows + live
        return [_candle_dict(r) for r in rows]

    def _session_started(self, day: date, now: datetime) -> bool:
        try:
            return self.calendar.is_trading_day(day) and now >= self.calendar.session_bounds(day)[0]
        except KitefleetError:
            return False

    def daily_candles(self, symbol: str, start: date, end: date, **kwargs: Any) -> list[dict[str, Any]]:
        return self.candles(symbol, DAY, start, end, **kwargs)

    def hourly_candles(self, symbol: str, start: date, end: date, **kwargs: Any) -> list[dict[str, Any]]:
        return self.candles(symbol, HOUR, start, end, **kwargs)

    def __repr__(self) -> str:
        return f"MarketData({self.source!r}, {str(self.folder)!r})"


def market_data_for(ctx: Any) -> MarketData:
    """The market data of a job's user: their data source, their Kite client (one per process)."""
    from workers.kite_client import get_kite

    return MarketData(ctx.home, ctx.settings.data_source, get_kite(ctx))
