"""The paper broker's instrument universe: the NIFTY 50 constituents and the NIFTY 50 index.

Instrument tokens follow Kite's layout (``instrument_token = exchange_token * 256 + segment``,
segment 1 for NSE equities, 9 for NSE indices); where the real Kite token is known it is used
(INFY 408065, RELIANCE 738561, NIFTY 50 256265, ...), the rest are plausible and unique. They
never change, so tokens cached by workers (``data/shared/<source>/``) stay valid across restarts.

``tick_size`` is fixed per instrument, from the NSE price band (``kitefleet.ticks.nse_tick_size``)
of ``base_price``, the plausible late-2026 level the simulated market is anchored to. Real NSE
reviews the band monthly; the simulation does not, so an instrument keeps its tick even where its
simulated history wanders into another band. The index ticks at 0.05 and cannot be traded.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass

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


# (tradingsymbol, name as in the Kite dump, exchange_token, late-2026 base price)
_NIFTY50: tuple[tuple[str, str, int, float], ...] = (
    ("ADANIENT", "ADANI ENTERPRISES", 25, 2400.0),
    ("ADANIPORTS", "ADANI PORT & SEZ", 15083, 1450.0),
    ("APOLLOHOSP", "APOLLO HOSPITALS", 157, 7500.0),
    ("ASIANPAINT", "ASIAN PAINTS", 236, 2500.0),
    ("AXISBANK", "AXIS BANK", 5900, 1250.0),
    ("BAJAJ-AUTO", "BAJAJ AUTO", 16669, 9000.0),
    ("BAJAJFINSV", "BAJAJ FINSERV", 16675, 2050.0),
    ("BAJFINANCE", "BAJAJ FINANCE", 317, 1020.0),
    ("BEL", "BHARAT ELECTRONICS", 383, 410.0),
    ("BHARTIARTL", "BHARTI AIRTEL", 10604, 2050.0),
    ("CIPLA", "CIPLA", 694, 1520.0),
    ("COALINDIA", "COAL INDIA", 20374, 385.0),
    ("DRREDDY", "DR. REDDY S LABORATORIES", 881, 1250.0),
    ("EICHERMOT", "EICHER MOTORS", 910, 7000.0),
    ("ETERNAL", "ETERNAL", 5097, 310.0),
    ("GRASIM", "GRASIM INDUSTRIES", 1232, 2800.0),
    ("HCLTECH", "HCL TECHNOLOGIES", 7229, 1600.0),
    ("HDFCBANK", "HDFC BANK", 1333, 990.0),
    ("HDFCLIFE", "HDFC LIFE INS CO", 467, 760.0),
    ("HINDALCO", "HINDALCO INDUSTRIES", 1363, 800.0),
    ("HINDUNILVR", "HINDUSTAN UNILEVER", 1394, 2450.0),
    ("ICICIBANK", "ICICI BANK", 4963, 1380.0),
    ("INDIGO", "INTERGLOBE AVIATION", 11195, 5800.0),
    ("INFY", "INFOSYS", 1594, 1500.0),
    ("ITC", "ITC", 1660, 410.0),
    ("JIOFIN", "JIO FIN SERVICES", 18143, 305.0),
    ("JSWSTEEL", "JSW STEEL", 11723, 1150.0),
    ("KOTAKBANK", "KOTAK MAHINDRA BANK", 1922, 2100.0),
    ("LT", "LARSEN & TOUBRO", 11483, 3950.0),
    ("M&M", "MAHINDRA & MAHINDRA", 2031, 3600.0),
    ("MARUTI", "MARUTI SUZUKI INDIA", 10999, 16000.0),
    ("MAXHEALTH", "MAX HEALTHCARE INS", 22377, 1150.0),
    ("NESTLEIND", "NESTLE INDIA", 17963, 1250.0),
    ("NTPC", "NTPC", 11630, 330.0),
    ("ONGC", "OIL AND NATURAL GAS CORP", 2475, 245.0),
    ("POWERGRID", "POWER GRID CORP", 14977, 290.0),
    ("RELIANCE", "RELIANCE INDUSTRIES", 2885, 1500.0),
    ("SBILIFE", "SBI LIFE INSURANCE CO", 21808, 1950.0),
    ("SBIN", "STATE BANK OF INDIA", 3045, 950.0),
    ("SHRIRAMFIN", "SHRIRAM FINANCE", 4306, 820.0),
    ("SUNPHARMA", "SUN PHARMACEUTICAL IND", 3351, 1750.0),
    ("TATACONSUM", "TATA CONSUMER PRODUCT", 3432, 1150.0),
    ("TATASTEEL", "TATA STEEL", 3499, 170.0),
    ("TCS", "TATA CONSULTANCY SERV LT", 11536, 3100.0),
    ("TECHM", "TECH MAHINDRA", 13538, 1500.0),
    ("TITAN", "TITAN COMPANY", 3506, 3800.0),
    ("TMPV", "TATA MOTORS PASS VEH", 3456, 400.0),
    ("TRENT", "TRENT", 1964, 4300.0),
    ("ULTRACEMCO", "ULTRATECH CEMENT", 11532, 11800.0),
    ("WIPRO", "WIPRO", 3787, 245.0),
)


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
            tick_size=nse_tick_size(base),
            base_price=base,
            tradable=True,
        )
        for symbol, name, exchange_token, base in _NIFTY50
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
    (``float("")``), so last_price and strike are always ``0.0`` and expiry is ``""``."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for ins in instruments:
        writer.writerow([
            ins.instrument_token, ins.exchange_token, ins.tradingsymbol, ins.name, 0.0, "", 0.0,
            ins.tick_size, ins.lot_size, ins.instrument_type, ins.segment, ins.exchange,
        ])
    return buf.getvalue()
