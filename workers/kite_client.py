"""The worker's Kite client: one per process (a deliberate singleton), for the one user it serves.

``get_kite(ctx)`` builds a ``KiteApi`` around the unmodified ``kiteconnect.KiteConnect`` with
``root=settings.kite_root``. Every HTTP request passes the user's shared rate limiter
(workers.ratelimit) by endpoint class; reads and HTTP 429 are retried with backoff (tenacity);
writes (place/modify/cancel order, place/modify/delete GTT) are never retried once they may have
reached the broker: a timeout or server error raises ``WriteOutcomeUnknown`` and the caller
reconciles (workers.intents). Failures map onto kitefleet.errors (see workers.broker_errors).

Sessions (the file, its expiry and which one is usable: workers.session_file). ``data/<User>/
session.lock`` serialises logins of one user's processes, so a renewal by one is adopted by the
others instead of each logging in again.

* Paper: a session that is missing, expired by the shared clock, or from another broker address
  is renewed by logging in against the paper broker (``GET /connect/login`` -> 302 with a
  ``request_token`` -> ``generate_session``). A TokenException on a call (expired or revoked
  token) renews once and repeats the call (a 403 was refused before it was processed).
* Live: the session file if unexpired, else the ``KITE_ACCESS_TOKEN`` setting, else TokenError
  (exit 5, "log in again"). A live worker never logs in by itself; a token refused on a call is
  replaced once by a newer one in session.json (the morning's ``orchestrator.py login``). A
  session file that does not read as a session is reported as such, never as missing.

Access tokens and request tokens are registered with the log redaction as soon as they are seen.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import date, datetime
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlparse

import requests
from filelock import Timeout
from kiteconnect import KiteConnect
from kiteconnect import exceptions as kex
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from kitefleet import clock
from kitefleet.errors import TokenError
from kitefleet.home import Home
from kitefleet.settings import Settings
from workers.broker_errors import BrokerRejected, BrokerUnavailable, map_error, retryable, token_error
from workers.context import JobContext
from workers.logs import register_secret
from workers.ratelimit import OTHER, RateLimiter, endpoint_class
from workers.session_file import (
    SESSION_LOCK_TIMEOUT_S,
    newer_token,
    no_live_session,
    read_session,
    save_session,
    session_expiry,
    session_lock,
    unreadable_session,
    usable_session,
)

T = TypeVar("T")

#: kiteconnect's default is 7 s; the paper broker's instruments and long candle spans need more.
REQUEST_TIMEOUT_S = 15.0
QUOTE_MAX_INSTRUMENTS = 500
LTP_OHLC_MAX_INSTRUMENTS = 1000


class _LimitedKiteConnect(KiteConnect):
    """KiteConnect whose every HTTP request first takes a slot of the user's shared rate limiter."""

    def __init__(self, api_key: str, root: str, limiter: RateLimiter, timeout: float) -> None:
        super().__init__(api_key, root=root, timeout=timeout)
        self._limiter = limiter
        self.calls: dict[str, int] = {}

    def _request(self, route: str, method: str, url_args: dict | None = None, params: Any = None,
                 is_json: bool = False, query_params: Any = None) -> Any:
        cls = endpoint_class(route)
        with self._limiter.slot(cls, places_order=(route == "order.place")):
            self.calls[route] = self.calls.get(route, 0) + 1
            return super()._request(route, method, url_args=url_args, params=params, is_json=is_json,
                                    query_params=query_params)


class KiteApi:
    """The methods jobs need, with kiteconnect's names, behind limits, retries and error mapping."""

    def __init__(self, *, user: str, home: Home, settings: Settings, limiter: RateLimiter,
                 log: logging.Logger | None = None, attempts: int = 5, backoff_initial: float = 0.5,
                 backoff_max: float = 8.0, timeout: float = REQUEST_TIMEOUT_S) -> None:
        if settings.user != user:
            raise ValueError(f"settings of {settings.user!r} given for user {user!r}")
        self.user = user
        self.home = home
        self.settings = settings
        self.limiter = limiter
        self.log = log or logging.getLogger(f"workers.kite.{user}")
        self.attempts = attempts
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self._kite = _LimitedKiteConnect(settings.api_key, settings.kite_root, limiter, timeout)
        self._login_lock = threading.Lock()
        #: paper logins this process performed (tests; a renewal shows up here)
        self.logins = 0

    # --- sessions ----------------------------------------------------------------------------
    @property
    def calls(self) -> dict[str, int]:
        """HTTP requests made by this process, by kiteconnect route name."""
        return dict(self._kite.calls)

    def _use(self, token: str) -> None:
        register_secret(token)
        self._kite.set_access_token(token)

    def connect(self) -> None:
        """Load a usable session (paper: log in when there is none). Live: TokenError if none."""
        now = clock.now()
        data = read_session(self.home, self.user)
        token = usable_session(data, self.settings, now)
        if token is not None:
            self._use(token)
            return
        unreadable = unreadable_session(self.home, self.user) if data is None else None
        if not self.settings.is_paper:
            fallback = self.settings.get("KITE_ACCESS_TOKEN")
            if isinstance(fallback, str) and fallback:
                if unreadable:
                    self.log.warning("%s; using KITE_ACCESS_TOKEN (run: orchestrator.py login %s)",
                                     unreadable, self.user)
                self._use(fallback)
                return
            raise token_error(self.user, f"{no_live_session(data, unreadable)} and no KITE_ACCESS_TOKEN")
        if unreadable:
            self.log.warning("%s; logging in to the paper broker again", unreadable)
        self._renew(stale=None)

    def _adopt_newer_live_session(self) -> bool:
        """Live only, never a login: switch to session.json's token if it is usable and new."""
        token = newer_token(self.home, self.user, self.settings, clock.now(), other_than=self._kite.access_token)
        if token is None:
            return False
        self._use(token)
        return True

    def _renew(self, stale: str | None) -> None:
        """Paper only: adopt a session another process just wrote, else log in and write it."""
        with self._login_lock:
            try:
                lock = session_lock(self.home, self.user)
                lock.acquire()
            except Timeout:
                raise BrokerUnavailable(f"{self.user}: session lock busy for {SESSION_LOCK_TIMEOUT_S} s "
                                        "(a login hung?)") from None
            try:
                token = newer_token(self.home, self.user, self.settings, clock.now(), other_than=stale)
                if token is not None:
                    self._use(token)
                    return
                self._paper_login()
            finally:
                lock.release()

    def _paper_login(self) -> None:
        def attempt() -> None:
            url = self.settings.kite_root.rstrip("/") + "/connect/login"
            with self.limiter.slot(OTHER):
                params: dict[str, str | int] = {"api_key": self.settings.api_key, "v": 3}
                resp = requests.get(url, params=params,
                                    allow_redirects=False, timeout=REQUEST_TIMEOUT_S)
            location = resp.headers.get("Location", "") if resp.status_code in (301, 302, 303, 307) else ""
            request_token = parse_qs(urlparse(location).query).get("request_token", [""])[0]
            if not request_token:
                try:
                    message = resp.json().get("message", resp.text[:200])
                except ValueError:
                    message = resp.text[:200]
                if resp.status_code >= 500:
                    raise kex.NetworkException(message, code=resp.status_code)
                raise TokenError(f"paper broker at {self.settings.kite_root} refused the login of "
                                 f"{self.user} (HTTP {resp.status_code}: {message}); is {self.user}'s env "
                                 "file in the broker's home?")
            register_secret(request_token)
            session = self._kite.generate_session(request_token, self.settings.api_secret)
            token = str(session["access_token"])
            self._use(token)
            login_time = clock.now()
            save_session(self.home, self.user, access_token=token, login_time=login_time,
                         expires_at=session_expiry(login_time), mode="paper", root=self.settings.kite_root)

        try:
            self._retrying(attempt, write=False)
        except TokenError:
            raise
        except (kex.KiteException, requests.RequestException) as exc:
            mapped = map_error(exc, operation="paper login", write=False, user=self.user)
            if isinstance(mapped, BrokerRejected) or isinstance(exc, kex.TokenException):
                raise TokenError(f"paper login of {self.user} failed: {exc}") from None
            raise mapped from exc
        self.logins += 1
        self.log.info("logged in to the paper broker at %s", self.settings.kite_root)

    # --- the call path -----------------------------------------------------------------------
    def _retrying(self, fn: Callable[[], T], *, write: bool) -> T:
        def before_sleep(state: Any) -> None:
            exc = state.outcome.exception() if state.outcome else None
            self.log.warning("Kite call failed (%s: %s); retry %d of %d", type(exc).__name__, exc,
                             state.attempt_number, self.attempts - 1)

        retrying = Retrying(
            retry=retry_if_exception(lambda exc: retryable(exc, write=write)),
            stop=stop_after_attempt(self.attempts),
            wait=wait_exponential_jitter(multiplier=self.backoff_initial, max=self.backoff_max,
                                         jitter=self.backoff_initial / 2),
            before_sleep=before_sleep,
            reraise=True,
        )
        return retrying(fn)

    def _call(self, operation: str, fn: Callable[..., T], *args: Any, write: bool = False,
              **kwargs: Any) -> T:
        renewed = False
        while True:
            try:
                return self._retrying(lambda: fn(*args, **kwargs), write=write)
            except kex.TokenException as exc:
                # A 403 TokenException is refused before it is processed: safe to repeat, writes too.
                if self.settings.is_paper and not renewed:
                    renewed = True
                    self.log.info("%s: paper session expired or revoked; logging in again", operation)
                    self._renew(stale=self._kite.access_token)
                    continue
                if not self.settings.is_paper and not renewed and self._adopt_newer_live_session():
                    # 'orchestrator.py login' wrote a new session while this process ran (the
                    # morning login): use it rather than end a long-running job.
                    renewed = True
                    self.log.info("%s: live token refused; using the newer session in session.json", operation)
                    continue
                raise map_error(exc, operation=operation, write=write, user=self.user) from None
            except (kex.KiteException, requests.RequestException) as exc:
                raise map_error(exc, operation=operation, write=write, user=self.user) from exc

    def _read(self, name: str, *args: Any, **kwargs: Any) -> Any:
        return self._call(name, getattr(self._kite, name), *args, **kwargs)

    def _write(self, name: str, *args: Any, **kwargs: Any) -> Any:
        return self._call(name, getattr(self._kite, name), *args, write=True, **kwargs)

    def _batched(self, name: str, instruments: tuple[str | int, ...], size: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        items = list(instruments)
        for i in range(0, len(items), size):
            out.update(self._read(name, *items[i:i + size]))
        return out

    # --- reads -------------------------------------------------------------------------------
    def profile(self) -> dict[str, Any]:
        return self._read("profile")

    def margins(self, segment: str | None = None) -> dict[str, Any]:
        return self._read("margins", segment)

    def holdings(self) -> list[dict[str, Any]]:
        return self._read("holdings")

    def positions(self) -> dict[str, list[dict[str, Any]]]:
        return self._read("positions")

    def orders(self) -> list[dict[str, Any]]:
        return self._read("orders")

    def order_history(self, order_id: str) -> list[dict[str, Any]]:
        return self._read("order_history", order_id)

    def order_trades(self, order_id: str) -> list[dict[str, Any]]:
        return self._read("order_trades", order_id)

    def trades(self) -> list[dict[str, Any]]:
        return self._read("trades")

    def get_virtual_contract_note(self, orders: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Charges of executed orders (a POST that changes nothing at the broker: retried as a read)."""
        return self._read("get_virtual_contract_note", orders)

    def ltp(self, *instruments: str | int) -> dict[str, Any]:
        """Batched by Kite's 1,000-instrument cap; each batch is one request of the quote class."""
        return self._batched("ltp", instruments, LTP_OHLC_MAX_INSTRUMENTS)

    def ohlc(self, *instruments: str | int) -> dict[str, Any]:
        return self._batched("ohlc", instruments, LTP_OHLC_MAX_INSTRUMENTS)

    def quote(self, *instruments: str | int) -> dict[str, Any]:
        return self._batched("quote", instruments, QUOTE_MAX_INSTRUMENTS)

    def instruments(self, exchange: str | None = None) -> list[dict[str, Any]]:
        return self._read("instruments", exchange)

    def historical_data(self, instrument_token: int, from_date: datetime | date | str,
                        to_date: datetime | date | str, interval: str, continuous: bool = False,
                        oi: bool = False) -> list[dict[str, Any]]:
        return self._read("historical_data", instrument_token, from_date, to_date, interval,
                          continuous=continuous, oi=oi)

    def get_gtts(self) -> list[dict[str, Any]]:
        return self._read("get_gtts")

    def get_gtt(self, trigger_id: int) -> dict[str, Any]:
        return self._read("get_gtt", trigger_id)

    # --- writes: never retried once they may have reached the broker -----------------------
    def place_order(self, variety: str, **params: Any) -> str:
        return str(self._write("place_order", variety, **params))

    def modify_order(self, variety: str, order_id: str, **params: Any) -> str:
        return str(self._write("modify_order", variety, order_id, **params))

    def cancel_order(self, variety: str, order_id: str, parent_order_id: str | None = None) -> str:
        return str(self._write("cancel_order", variety, order_id, parent_order_id=parent_order_id))

    def place_gtt(self, trigger_type: str, tradingsymbol: str, exchange: str, trigger_values: list[float],
                  last_price: float, orders: list[dict[str, Any]]) -> dict[str, Any]:
        return self._write("place_gtt", trigger_type, tradingsymbol, exchange, trigger_values, last_price,
                           orders)

    def modify_gtt(self, trigger_id: int, trigger_type: str, tradingsymbol: str, exchange: str,
                   trigger_values: list[float], last_price: float,
                   orders: list[dict[str, Any]]) -> dict[str, Any]:
        return self._write("modify_gtt", trigger_id, trigger_type, tradingsymbol, exchange, trigger_values,
                           last_price, orders)

    def delete_gtt(self, trigger_id: int) -> dict[str, Any]:
        return self._write("delete_gtt", trigger_id)

    def __repr__(self) -> str:
        return f"KiteApi(user={self.user!r}, root={self.settings.kite_root!r})"


def build_kite(home: Home, settings: Settings, log: logging.Logger | None = None, **options: Any) -> KiteApi:
    """A connected client for ``settings.user`` (not the singleton: tests and tools)."""
    limiter = RateLimiter(home.user_data_dir(settings.user) / "ratelimit")
    api = KiteApi(user=settings.user, home=home, settings=settings, limiter=limiter, log=log, **options)
    api.connect()
    return api


_kite: KiteApi | None = None
_kite_lock = threading.Lock()


def get_kite(ctx: JobContext) -> KiteApi:
    """The process's one client, for the one user it serves."""
    global _kite
    with _kite_lock:
        if _kite is None:
            _kite = build_kite(ctx.home, ctx.settings, ctx.log)
        elif _kite.user != ctx.user:
            raise RuntimeError(f"this process serves {_kite.user}; refusing a client for {ctx.user}")
        return _kite

