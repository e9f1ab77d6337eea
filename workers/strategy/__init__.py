"""Pure trading logic: the jobs in ``workers/jobs/`` fetch data from Kite and call these.

No module here does I/O, reads the clock or talks to Kite; every input (candles, prices, the
current time, settings values) is an argument, so every rule is unit-tested on hand-made series.

* :mod:`workers.strategy.patterns`: daily candles → :class:`~workers.strategy.patterns.ScanResult`
  (the seven-condition bullish reversal score, its stop and targets, SMA20-slope trend, growth
  pattern). Used by ``pattern_daily``.
* :mod:`workers.strategy.sizing`: candidate selection, entry sizing and pre-trade limits. Used by
  ``place_orders_daily``.
* :mod:`workers.strategy.entries`: the entry run's decisions built on them (selection and equity
  basis, ``MAX_NEW_ENTRIES_PER_DAY``, the fit to ``MAX_CAPITAL``, the checks at the send, completing
  the day's plan). Used by ``place_orders_daily`` and the backtest.
* :mod:`workers.strategy.stops`: the previous-session-low stop and the GTT plan. Used by
  ``update_cnc_stoploss``.
* :mod:`workers.strategy.watchdog_rules`: the hourly-low exit and the ATR trailing stop. Used by
  ``hourly_candle_watchdog``.

Every rule, default and its legacy origin is listed in ``docs/trading-rules.md``.
"""
