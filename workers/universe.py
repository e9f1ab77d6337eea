"""The symbols a user's ``pattern_daily`` scans: the ``UNIVERSE`` setting of their env file.

``UNIVERSE`` is either

* ``NIFTY50`` (the default, case-insensitive): the 50 NIFTY 50 constituents as of late 2026. The
  list lives once, in ``kitefleet/nifty50.py``, which the paper broker's market uses too, so the
  two cannot drift apart; or
* a path to a CSV file, relative to the home (``KITEFLEET_HOME``) unless absolute. The file has a
  header row with a column named ``ticker``, ``symbol`` or ``tradingsymbol`` (case-insensitive; the
  legacy ``Ticker.xlsx`` sheet exported as CSV works as is); other columns are ignored. Values are
  NSE trading symbols; an ``NSE:`` prefix is dropped, blanks are skipped, duplicates are kept once
  (first place wins), case is upper-cased.

Anything else is a ConfigError naming the setting and the file.
"""

from __future__ import annotations

import csv
from pathlib import Path

from kitefleet.errors import ConfigError
from kitefleet.home import Home
from kitefleet.nifty50 import SYMBOLS

NIFTY50 = "NIFTY50"
SYMBOL_COLUMNS = ("ticker", "symbol", "tradingsymbol")


def nifty50_symbols() -> tuple[str, ...]:
    """The 50 constituents, alphabetical (the index itself is not tradable and is left out)."""
    return SYMBOLS


def _normalise(value: str) -> str:
    symbol = value.strip()
    if ":" in symbol:
        exchange, _, rest = symbol.partition(":")
        if exchange.strip().upper() == "NSE":
            symbol = rest.strip()
    return symbol.upper()


def read_symbols_csv(path: Path) -> list[str]:
    """Symbols of a universe CSV, in file order, each once. ConfigError on any problem."""
    try:
        with path.open(encoding="utf-8-sig", newline="") as fh:
            reader = csv.DictReader(fh)
            columns = {(name or "").strip().lower(): name for name in reader.fieldnames or []}
            column = next((columns[c] for c in SYMBOL_COLUMNS if c in columns), None)
            if column is None:
                raise ConfigError(
                    f"{path}: universe CSV needs a header with a column named one of "
                    f"{', '.join(SYMBOL_COLUMNS)} (found: {', '.join(columns) or 'no header'})"
                )
            seen: dict[str, None] = {}
            for row in reader:
                symbol = _normalise(row.get(column) or "")
                if symbol:
                    seen.setdefault(symbol, None)
    except FileNotFoundError:
        raise ConfigError(f"UNIVERSE: no such file {path}") from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ConfigError(f"UNIVERSE: cannot read {path}: {exc}") from None
    if not seen:
        raise ConfigError(f"{path}: universe CSV lists no symbols")
    return list(seen)


def resolve_universe(home: Home, value: object) -> tuple[str, list[str]]:
    """``(description, symbols)`` for a ``UNIVERSE`` setting (see the module docstring); the
    description is ``NIFTY50`` or the setting's path as written."""
    text = str(value or NIFTY50).strip()
    if text.upper().replace(" ", "") == NIFTY50:
        return NIFTY50, list(nifty50_symbols())
    path = Path(text).expanduser()
    if not path.is_absolute():
        path = home.root / path
    return text, read_symbols_csv(path)
