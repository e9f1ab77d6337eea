"""A Kite client that cannot trade: the backtest's only client (issue 21).

Two walls, both before any HTTP call:

* every public method of ``kiteconnect.KiteConnect`` (and of the worker's ``KiteApi``) that is not
  on :data:`READ_METHODS` is replaced by one that raises :class:`WriteRefused`. The list is an
  allow-list on purpose: a method a newer kiteconnect adds is refused until a person reads it;
* the request path itself refuses any HTTP method but GET, apart from the session exchange
  (``api.token``: the paper login), so a write cannot slip through a private helper either.
"""

from __future__ import annotations

import inspect
import logging
from typing import Any, NoReturn

from kiteconnect import KiteConnect

from kitefleet.errors import KitefleetError
from kitefleet.home import Home
from kitefleet.settings import Settings
from workers.kite_client import REQUEST_TIMEOUT_S, KiteApi, _LimitedKiteConnect
from workers.ratelimit import RateLimiter

#: Methods that only read (or set up the session in this process). Everything else is refused.
READ_METHODS: frozenset[str] = frozenset({
    # session set-up: no order, no position, no GTT
    "set_access_token", "set_session_expiry_hook", "login_url", "generate_session",
    # account and books
    "profile", "margins", "holdings", "positions", "orders", "order_history", "order_trades",
    "trades", "get_gtts", "get_gtt", "mf_holdings", "mf_orders", "mf_sips", "get_auction_instruments",
    # market data
    "ltp", "ohlc", "quote", "instruments", "mf_instruments", "historical_data", "trigger_range",
})

#: Routes that may use a method other than GET: the session exchange (paper login) only.
NON_GET_ROUTES: frozenset[str] = frozenset({"api.token"})


class WriteRefused(KitefleetError):
    """A backtest (or any read-only use) asked the client to write. Never reaches the broker."""


def _public_methods(cls: type) -> set[str]:
    return {name for name, _ in inspect.getmembers(cls, inspect.isfunction) if not name.startswith("_")}


def _refuser(name: str) -> Any:
    def refuse(self: Any, *args: Any, **kwargs: Any) -> NoReturn:
        raise WriteRefused(f"read-only Kite client: {name} refused (a backtest can never trade)")
    refuse.__name__ = name
    return refuse


def _refuse_writes(cls: type, base: type) -> type:
    for name in _public_methods(base) - READ_METHODS:
        setattr(cls, name, _refuser(name))
    return cls


class ReadOnlyKiteConnect(_LimitedKiteConnect):
    """The unmodified client's reads; every other public method raises; only GETs go out."""

    def _request(self, route: str, method: str, url_args: dict | None = None, params: Any = None,
                 is_json: bool = False, query_params: Any = None) -> Any:
        if method.upper() != "GET" and route not in NON_GET_ROUTES:
            raise WriteRefused(f"read-only Kite client: {method} {route} refused (a backtest can never trade)")
        return super()._request(route, method, url_args=url_args, params=params, is_json=is_json,
                                query_params=query_params)


_refuse_writes(ReadOnlyKiteConnect, KiteConnect)


class ReadOnlyKiteApi(KiteApi):
    """``KiteApi`` (sessions, limits, retries, error mapping) around a :class:`ReadOnlyKiteConnect`."""

    def __init__(self, *, user: str, home: Home, settings: Settings, limiter: RateLimiter,
                 log: logging.Logger | None = None, timeout: float = REQUEST_TIMEOUT_S,
                 **options: Any) -> None:
        super().__init__(user=user, home=home, settings=settings, limiter=limiter, log=log,
                         timeout=timeout, **options)
        self._kite = ReadOnlyKiteConnect(settings.api_key, settings.kite_root, limiter, timeout)

    def _write(self, name: str, *args: Any, **kwargs: Any) -> NoReturn:
        raise WriteRefused(f"read-only Kite client: {name} refused (a backtest can never trade)")


_refuse_writes(ReadOnlyKiteApi, KiteApi)
# connect() and calls are the session and the tally, not trading: keep them.
ReadOnlyKiteApi.connect = KiteApi.connect  # type: ignore[method-assign]


def build_readonly_kite(home: Home, settings: Settings, log: logging.Logger | None = None,
                        **options: Any) -> ReadOnlyKiteApi:
    """A connected read-only client for ``settings.user`` (paper: logs in like any job)."""
    limiter = RateLimiter(home.user_data_dir(settings.user) / "ratelimit")
    api = ReadOnlyKiteApi(user=settings.user, home=home, settings=settings, limiter=limiter, log=log,
                          **options)
    api.connect()
    return api
