"""The paper broker's instrument universe: the NIFTY 50 constituents and the NIFTY 50 index.

Instrument tokens follow Kite's layout (``instrument_token = exchange_token * 256 + segment``,
segment 1 for NSE equities, 9 for NSE indices); where the real Kite token is known it is used
(INFY 408065, RELIANCE 738561, NIFTY 50 256265, ...), the rest are plausible and unique. They
never change, so tokens cached by workers (``data/shared/<source>/``) stay valid across restarts.

``tick_size`` is fixed per instrument, from the NSE price band (``kitefleet.ticks.nse_tick_size``)
of ``base_price``, the plausible late-2026 level the simulated market is anchored to. Real NSE
reviews the band monthly; the simulation does not, so an instrument keeps its tick even where its
simulated history wanders into another band. The index cannot be traded; the simulated market
moves it on a 0.05 grid, but ``GET /instruments`` shows its tick_size as 0, as Kite's dump does for
indices (nothing reads an index's tick from the CSV: workers only size and price tradable symbols).
"""

from __future__ import annotations

import csv
import hashlib
import io
import string
from dataclasses import dataclass

from kitefleet.nifty50 import CONSTITUENTS
from kitefleet.ticks import nse_tick_size

INDEX_SYMBOL = "NIFTY 50"
INDEX_TOKEN = 256265
INDEX_TICK = 0.05

CSV_COLUMNS = (
    "instrument_token", "exchange_token", "tradingsymbol", "name", "last_price", "expiry", "strike",
    "tick_size", "lot_size", "instrument_type", "segment", "exchange",
)


@dataclass(frozen=True)
class Instrument:
    instrument_token: int
    exchange_token: int
    tradingsymbol: str
    name: str
    exchange: str
    segment: str
    instrument_type: str
    lot_size: int
    tick_size: float
    base_price: float
    tradable: bool

    @property
    def key(self) -> str:
        """``EXCHANGE:TRADINGSYMBOL``, as quotes are requested."""
        return f"{self.exchange}:{self.tradingsymbol}"


# The plausible late-2026 price level each constituent's simulated history is anchored to.
_BASE_PRICES: dict[str, float] = {
    "ADANIENT": 2400.0,
    "ADANIPORTS": 1450.0,
    "APOLLOHOSP": 7500.0,
    "ASIANPAINT": 2500.0,
    "AXISBANK": 1250.0,
    "BAJAJ-AUTO": 9000.0,
    "BAJAJFINSV": 2050.0,
    "BAJFINANCE": 1020.0,
    "BEL": 410.0,
    "BHARTIARTL": 2050.0,
    "CIPLA": 1520.0,
    "COALINDIA": 385.0,
    "DRREDDY": 1250.0,
    "EICHERMOT": 7000.0,
    "ETERNAL": 310.0,
    "GRASIM": 2800.0,
    "HCLTECH": 1600.0,
    "HDFCBANK": 990.0,
    "HDFCLIFE": 760.0,
    "HINDALCO": 800.0,
    "HINDUNILVR": 2450.0,
    "ICICIBANK": 1380.0,
    "INDIGO": 5800.0,
    "INFY": 1500.0,
    "ITC": 410.0,
    "JIOFIN": 305.0,
    "JSWSTEEL": 1150.0,
    "KOTAKBANK": 2100.0,
    "LT": 3950.0,
    "M&M": 3600.0,
    "MARUTI": 16000.0,
    "MAXHEALTH": 1150.0,
    "NESTLEIND": 1250.0,
    "NTPC": 330.0,
    "ONGC": 245.0,
    "POWERGRID": 290.0,
    "RELIANCE": 1500.0,
    "SBILIFE": 1950.0,
    "SBIN": 950.0,
    "SHRIRAMFIN": 820.0,
    "SUNPHARMA": 1750.0,
    "TATACONSUM": 1150.0,
    "TATASTEEL": 170.0,
    "TCS": 3100.0,
    "TECHM": 1500.0,
    "TITAN": 3800.0,
    "TMPV": 400.0,
    "TRENT": 4300.0,
    "ULTRACEMCO": 11800.0,
    "WIPRO": 245.0,
}


def isin_for(symbol: str) -> str:
    """A plausible, stable NSE equity ISIN for a simulated symbol: ``INE`` + a 4-character issuer
    code + ``01`` (equity shares) + a 2-digit serial + the ISO 6166 check digit. Not the real one."""
    alphabet = string.digits + string.ascii_uppercase
    digest = hashlib.sha256(symbol.encode()).digest()
    body = "INE" + "".join(alphabet[b % 36] for b in digest[:4]) + "01" + f"{digest[4] % 10}{digest[5] % 10}"
    return body + _isin_check_digit(body)


def _isin_check_digit(body: str) -> str:
    # ISO 6166: letters become two digits (A=10 ... Z=35), then the Luhn check over the digit string.
    digits = "".join(str(int(c, 36)) for c in body)
    total = 0
    for i, d in enumerate(reversed(digits)):
        n = int(d) * (2 if i % 2 == 0 else 1)
        total += n // 10 + n % 10
    return str((10 - total % 10) % 10)


def nifty50_universe() -> list[Instrument]:
    """The 50 constituents (alphabetical), then the index."""
    out = [
        Instrument(
            instrument_token=exchange_token * 256 + 1,
            exchange_token=exchange_token,
            tradingsymbol=symbol,
            name=name,
            exchange="NSE",
            segment="NSE",
            instrument_type="EQ",
            lot_size=1,
            tick_size=nse_tick_size(_BASE_PRICES[symbol]),
            base_price=_BASE_PRICES[symbol],
            tradable=True,
        )
        for symbol, name, exchange_token in CONSTITUENTS
    ]
    out.append(
        Instrument(
            instrument_token=INDEX_TOKEN,
            exchange_token=INDEX_TOKEN // 256,
            tradingsymbol=INDEX_SYMBOL,
            name=INDEX_SYMBOL,
            exchange="NSE",
            segment="INDICES",
            instrument_type="EQ",
            lot_size=0,
            tick_size=INDEX_TICK,
            base_price=26000.0,
            tradable=False,
        )
    )
    return out


def instruments_csv(instruments: list[Instrument]) -> str:
    """The ``GET /instruments`` dump. The kiteconnect client crashes on an empty numeric cell
    (``float("")``), so last_price and strike are always ``0.0`` and expiry is ``""``; an index's
    tick_size is ``0.0`` (Kite's sample row for NIFTY 50), whatever grid the market moves it on."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for ins in instruments:
        writer.writerow([
            ins.instrument_token, ins.exchange_token, ins.tradingsymbol, ins.name, 0.0, "", 0.0,
            ins.tick_size if ins.tradable else 0.0, ins.lot_size, ins.instrument_type, ins.segment,
            ins.exchange,
        ])
    return buf.getvalue()
