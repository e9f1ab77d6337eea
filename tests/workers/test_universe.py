"""workers/universe.py: the NIFTY 50 universe and universe CSV files."""

from __future__ import annotations

from pathlib import Path

import pytest

from kitefleet.errors import ConfigError
from kitefleet.home import Home
from kitefleet.sim.universe import nifty50_universe
from workers.universe import nifty50_symbols, read_symbols_csv, resolve_universe


# --- fast units --------------------------------------------------------------------------------
def test_nifty50_universe_is_the_brokers_fifty() -> None:
    symbols = nifty50_symbols()
    assert len(symbols) == 50 == len(set(symbols))
    assert set(symbols) == {i.tradingsymbol for i in nifty50_universe() if i.tradable}
    home = Home(Path("/nonexistent"))
    assert resolve_universe(home, "NIFTY50") == ("NIFTY50", list(symbols))
    assert resolve_universe(home, "nifty 50")[1] == list(symbols)


def test_universe_csv_columns_prefixes_and_duplicates(tmp_path: Path) -> None:
    path = tmp_path / "u.csv"
    path.write_text("\ufeffName,Symbol\nInfosys,nse:infy\nTCS,TCS\n,\nInfosys again,INFY\nM and M, M&M \n",
                    encoding="utf-8")
    assert read_symbols_csv(path) == ["INFY", "TCS", "M&M"]
    home = Home(tmp_path)
    assert resolve_universe(home, "u.csv") == ("u.csv", ["INFY", "TCS", "M&M"])
    assert resolve_universe(Home(Path("/elsewhere")), str(path))[1] == ["INFY", "TCS", "M&M"]
    (tmp_path / "bad.csv").write_text("Name\nInfosys\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="ticker, symbol, tradingsymbol"):
        read_symbols_csv(tmp_path / "bad.csv")
    (tmp_path / "empty.csv").write_text("ticker\n\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="no symbols"):
        read_symbols_csv(tmp_path / "empty.csv")
    with pytest.raises(ConfigError, match="no such file"):
        resolve_universe(home, "missing.csv")
