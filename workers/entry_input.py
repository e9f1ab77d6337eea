"""What place_orders_daily enters from: the newest scan, or a person's pick (``--from FILE``).

The scan is ``data/<User>/scans/pattern_daily_<YYYYMMDD>.csv`` (format: workers.scans). It must be
the scan of the last completed session by the NSE calendar, so the evening's scan feeds the next
morning's entries; an older one is refused, never entered from.

A ``--from`` file is read, never written: CSV or JSON (a list of objects or of symbols, or an object
holding such a list under ``rows``/``orders``/``stocks``/``tickers``) with at least a ``ticker``
(or ``symbol``, ``tradingsymbol``) column; ``stop_loss``/``stop``/``sl``, ``target_price``/
``target``/``target_1``, ``score``, ``entry`` and ``risk_reward`` are optional, column names are
matched case-insensitively and an ``NSE:`` prefix is dropped. Its rows keep their order.

Both raise ``InputError`` (exit 1) with one line naming the file and what to do.
"""

from __future__ import annotations

import csv
import json
from datetime import date
from pathlib import Path
from typing import Any

from kitefleet.errors import KitefleetError
from kitefleet.exitcodes import ExitCode
from workers.context import JobContext
from workers.scans import latest_scan_file, read_scan, scan_session, scans_dir
from workers.strategy.patterns import ScanResult


class InputError(KitefleetError):
    """No usable input (missing or stale scan, unreadable --from file)."""

    exit_code = ExitCode.JOB_FAILED


_SYMBOL_KEYS = ("ticker", "symbol", "tradingsymbol")
_STOP_KEYS = ("stop_loss", "stop", "sl")
_TARGET_KEYS = ("target_price", "target", "target_1", "target1")


def _pick(row: dict[str, Any], keys: tuple[str, ...]) -> Any:
    lowered = {str(k).strip().lower(): v for k, v in row.items()}
    for key in keys:
        value = lowered.get(key)
        if value not in (None, ""):
            return value
    return None


def _num(value: Any) -> float | None:
    if value in (None, ""):
        return None
    try:
        return float(str(value).replace(",", ""))
    except ValueError:
        return None


def read_manual(path: Path) -> tuple[list[ScanResult], bool]:
    """Rows of a ``--from`` file as ScanResults, and whether it carries scores."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise InputError(f"--from {path}: cannot be read ({exc.strerror})") from None
    raw: list[Any]
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise InputError(f"--from {path}: not valid JSON ({exc})") from None
        if isinstance(data, dict):
            data = next((data[k] for k in ("rows", "orders", "stocks", "tickers") if isinstance(data.get(k), list)),
                        None)
        if not isinstance(data, list):
            raise InputError(f"--from {path}: expected a list of rows (or of symbols)")
        raw = [{"ticker": r} if isinstance(r, str) else r for r in data]
    else:
        raw = list(csv.DictReader(text.splitlines()))
    rows: list[ScanResult] = []
    has_score = False
    for i, row in enumerate(raw):
        if not isinstance(row, dict):
            raise InputError(f"--from {path}: row {i + 1} is not an object")
        symbol = _pick(row, _SYMBOL_KEYS)
        if symbol is None or not str(symbol).strip():
            raise InputError(f"--from {path}: row {i + 1} has no ticker/symbol")
        score = _num(_pick(row, ("score",)))
        has_score = has_score or score is not None
        rows.append(ScanResult(
            symbol=str(symbol).strip().upper().removeprefix("NSE:"),
            score=int(score) if score is not None else 0,
            entry=_num(_pick(row, ("entry", "entry_price"))),
            stop_loss=_num(_pick(row, _STOP_KEYS)),
            target_1=_num(_pick(row, _TARGET_KEYS)),
            risk_reward=_num(_pick(row, ("risk_reward", "risk_reward_ratio"))) or 0.0,
        ))
    return rows, has_score


def load_scan(ctx: JobContext, last_completed: date) -> tuple[Path, list[ScanResult]]:
    path = latest_scan_file(ctx.home, ctx.user)
    if path is None:
        raise InputError(f"no scan in {scans_dir(ctx.home, ctx.user)}; run pattern_daily first (or pass --from FILE)")
    session = scan_session(path)
    if session != last_completed:
        raise InputError(f"the newest scan {path.name} is for session {session}, but the last completed session "
                         f"is {last_completed}; run pattern_daily first (or pass --from FILE)")
    try:
        return path, read_scan(path)
    except (OSError, ValueError, KeyError) as exc:
        raise InputError(f"{path}: unreadable scan ({exc})") from None


