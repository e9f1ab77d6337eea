"""One simulation model, shared by the paper broker and the backtest: the simulated NSE market
(market.py: deterministic minute paths per seed; scenario.py: pinned paths; universe.py), the book at a moment,
the fill decision (book.py, fills.py) and the charges (charges.py). Pure functions on plain data
(no SQLite, no server, no clock of their own)."""

from kitefleet.sim.book import (
    DEPTH_LEVELS,
    FIXED_BANDS,
    Bar,
    Book,
    Level,
    book_at,
    dynamic_band,
    fixed_band,
    spread_path,
    to_price,
    to_ticks,
    touch,
)
from kitefleet.sim.fills import PARTICIPATION, Fill, fill_in_minute, fill_on_arrival, participation_cap

__all__ = [
    "DEPTH_LEVELS", "FIXED_BANDS", "PARTICIPATION", "Bar", "Book", "Fill", "Level", "book_at", "dynamic_band",
    "fill_in_minute", "fill_on_arrival", "fixed_band", "participation_cap", "spread_path", "to_price", "to_ticks",
    "touch",
]
