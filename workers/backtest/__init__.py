"""The backtest (issue 21): the jobs' own pure rules replayed over past sessions, read-only.

model.py    the rows and results every part exchanges (plain dataclasses)
data.py     where candles come from: the shared simulated market (paper) or Kite's history (live)
engine.py   the replay: scan, entries, stops, the watchdog's per-poll decision, GTT triggers,
            halt and loss limit, T+1 and cash, with kitefleet/sim's fills and charges
metrics.py  the summary figures from a result (pure)
report.py   the output folder: trades.csv, orders.csv, equity.csv, summary.json, report.html
"""
