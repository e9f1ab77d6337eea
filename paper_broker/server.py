"""The paper broker's HTTP server: Kite Connect v3 routes, the Kite envelope, auth, rate limits, audit.

Over 400 lines because the whole request pipeline (route table, envelope, auth, rate limits, audit)
lives on one ``BrokerService`` so that tests drive it without a socket; the route table alone is
long.

Wire rules (reference/kite-api.md section 7): every route at the host root; every answer has a
Content-Type and a Content-Length; JSON answers are ``{"status":"success","data":...}`` or the
error envelope ``{"status":"error","message":...,"data":null,"error_type":...}`` - unknown routes
(404), wrong methods (405), bad parameters (400 InputException), rate limits (429
NetworkException), bad tokens (403 TokenException) and unexpected failures (500, logged with a
traceback) included. Instruments are CSV.

``BrokerService.dispatch`` is the whole request pipeline (route, parse, authorise, rate-limit,
advance the order engine, handle, audit, log) on plain values, so it can be driven without a
socket; ``KiteRequestHandler`` only moves bytes. HTTP/1.1 keep-alive: the client reuses one
``requests.Session``; a ThreadingHTTPServer thread serves each connection.

Who is counted: a request is rate-limited and audited under an API key only once it has proved
that account (a valid access token, or for ``/session/token`` a valid request token and checksum;
a genuine access token that has only expired still names its account, with its 403).
Requests that fail authentication, and ``/connect/login``, are audited with no key and rate-limited
per client address (the "other" class), so no local process can use up another account's limits
or write to its audit by naming its key.

Limits on the wire: a body over MAX_BODY_BYTES (1 MiB) is refused with 413 before it is read (the
Content-Length is checked first); ``Transfer-Encoding`` bodies (chunked) are refused with 411
(send a Content-Length); at most 100 header lines of at most 64 KiB each (http.server's limits,
431). JSON nested deeper than Python can parse, ids and limits outside their ranges, and GTT leg
quantities over MAX_QUANTITY are 400 InputException. Every one of these answers and closes in the
Kite error envelope.

Admin API (not Kite's; under ``/paper/``, same envelope, not audited). No auth on loopback; when
the broker was started with an admin token (``--allow-remote``, see paper_broker.__main__) every
``/paper/`` route needs the header ``X-Paper-Admin-Token: <token>`` (403 otherwise):
  GET  /paper/health                       {"status":"ok","now":ISO,"clock":...,"accounts":N,...}
  GET  /paper/accounts                     [{user_name,user_id,api_key_fingerprint,cash,holdings,...}]
  GET  /paper/audit[?since=ISO&api_key=K&limit=N]   [{time,api_key,method,path,status[,order_id]}]
  POST /paper/reload-accounts              {"added":[...],"updated":[...],"skipped":[...],"active":N}
  GET  /paper/logged-in?request_token=...  where /connect/login redirects (echoes the token)
"""

from __future__ import annotations

import hmac
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlencode

from kitefleet.clock import IST, Clock
from kitefleet.settings import api_key_fingerprint
from kitefleet.sim import charges
from paper_broker import marketdata
from paper_broker.audit import AuditLog
from paper_broker.auth import Accounts, profile_payload, session_payload
from paper_broker.db import Account
from paper_broker.errors import KiteError, input_error, not_found, token_error
from paper_broker.ratelimit import HISTORICAL, ORDERS, OTHER, QUOTE, RateLimiter

log = logging.getLogger("paper_broker.server")
request_log = logging.getLogger("paper_broker.requests")

VARIETIES = frozenset({"regular", "amo", "co", "iceberg", "auction"})
EXCHANGES = frozenset({"NSE", "BSE", "NFO", "CDS", "BCD", "BFO", "MCX"})
JSON_TYPE = "application/json"
CSV_TYPE = "text/csv"
MAX_BODY_BYTES = 1024 * 1024
#: No real holding comes near it; beyond it quantity x price stops being an exact float.
MAX_QUANTITY = 10**9
MAX_INT64 = 2**63 - 1
MAX_AUDIT_LIMIT = 1_000_000
ADMIN_HEADER = "X-Paper-Admin-Token"


def method_not_allowed() -> KiteError:
    return KiteError("GeneralException", "Request method not allowed", 405)


@dataclass
class Response:
    status: int
    body: bytes
    content_type: str = JSON_TYPE
    headers: list[tuple[str, str]] = field(default_factory=list)
    order_id: str | None = None


def _dumps(payload: object) -> bytes:
    return json.dumps(payload, separators=(",", ":"), default=str).encode()


def success(data: object, status: int = 200) -> Response:
    return Response(status, _dumps({"status": "success", "data": data}))


def failure(error: KiteError) -> Response:
    return Response(error.status, _dumps(error.envelope()))


@dataclass
class Request:
    method: str
    path: str
    args: dict[str, str]  # path parameters
    query: dict[str, str]  # last value of each key
    query_lists: dict[str, list[str]]
    form: dict[str, str]
    json_body: Any
    headers: Mapping[str, str]
    now: datetime
    account: Account | None = None
    principal: str | None = None  # the API key this request has proved (audit, rate limits)

    def params(self) -> dict[str, str]:
        """Form fields over query parameters: what the engine receives as ``params``."""
        return {**self.query, **self.form}


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    handler: str
    rate_class: str | None  # None: no rate limit (login redirect, admin)
    auth: bool
    places_order: bool = False


def _routes() -> list[Route]:
    table: list[tuple[str, str, str, str | None, bool]] = [
        ("GET", "/connect/login", "connect_login", None, False),
        # The session calls rate-limit themselves, once the request has proved the account.
        ("POST", "/session/token", "session_token", None, False),
        ("DELETE", "/session/token", "session_delete", None, False),
        ("GET", "/user/profile", "profile", OTHER, True),
        ("GET", "/user/margins", "margins", OTHER, True),
        ("GET", "/user/margins/{segment}", "margins", OTHER, True),
        ("GET", "/portfolio/holdings", "holdings", OTHER, True),
        ("GET", "/portfolio/positions", "positions", OTHER, True),
        ("PUT", "/portfolio/positions", "convert_position", OTHER, True),
        ("GET", "/instruments", "instruments", OTHER, True),
        ("GET", "/instruments/{exchange}", "instruments", OTHER, True),
        ("GET", "/instruments/historical/{token}/{interval}", "historical", HISTORICAL, True),
        ("GET", "/quote", "quote", QUOTE, True),
        ("GET", "/quote/ohlc", "ohlc", QUOTE, True),
        ("GET", "/quote/ltp", "ltp", QUOTE, True),
        ("GET", "/orders", "orders", OTHER, True),
        ("POST", "/orders/{variety}", "place_order", ORDERS, True),
        ("PUT", "/orders/{variety}/{order_id}", "modify_order", ORDERS, True),
        ("DELETE", "/orders/{variety}/{order_id}", "cancel_order", ORDERS, True),
        ("GET", "/orders/{order_id}", "order_history", OTHER, True),
        ("GET", "/orders/{order_id}/trades", "order_trades", OTHER, True),
        ("GET", "/trades", "trades", OTHER, True),
        ("GET", "/gtt/triggers", "gtts", OTHER, True),
        ("POST", "/gtt/triggers", "place_gtt", OTHER, True),
        ("GET", "/gtt/triggers/{trigger_id}", "get_gtt", OTHER, True),
        ("PUT", "/gtt/triggers/{trigger_id}", "modify_gtt", OTHER, True),
        ("DELETE", "/gtt/triggers/{trigger_id}", "delete_gtt", OTHER, True),
        ("POST", "/margins/orders", "order_margins", OTHER, True),
        ("POST", "/charges/orders", "virtual_contract_note", OTHER, True),
        ("GET", "/paper/health", "admin_health", None, False),
        ("GET", "/paper/accounts", "admin_accounts", None, False),
        ("GET", "/paper/audit", "admin_audit", None, False),
        ("POST", "/paper/reload-accounts", "admin_reload", None, False),
        ("POST", "/paper/authorise", "admin_authorise", None, False),
        ("GET", "/paper/logged-in", "admin_logged_in", None, False),
    ]
    routes = []
    for method, template, handler, rate_class, auth in table:
        regex = "^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", template) + "$"
        routes.append(Route(method, re.compile(regex), handler, rate_class, auth,
                            places_order=handler == "place_order"))
    return routes


class Router:
    def __init__(self, routes: list[Route]) -> None:
        self.routes = routes
        # Most requests hit a fixed path: look those up before trying the patterns.
        self._static: dict[str, dict[str, Route]] = {}
        self._dynamic: list[Route] = []
        for route in routes:
            if "(?P<" in route.pattern.pattern:
                self._dynamic.append(route)
            else:
                self._static.setdefault(route.pattern.pattern[1:-1], {})[route.method] = route

    def match(self, method: str, path: str) -> tuple[Route, dict[str, str]]:
        static = self._static.get(path)
        if static is not None:
            route = static.get(method)
            if route is None:
                raise method_not_allowed()
            return route, {}
        path_matched = False
        for route in self._dynamic:
            m = route.pattern.match(path)
            if m is None:
                continue
            if route.method == method:
                return route, {k: unquote(v) for k, v in m.groupdict().items()}
            path_matched = True
        if path_matched:
            raise method_not_allowed()
        raise not_found()


def _last(values: dict[str, list[str]]) -> dict[str, str]:
    return {k: v[-1] for k, v in values.items()}


class Unauthenticated(Exception):
    """A request that failed to prove an account: counted per client address, audited with no key."""

    def __init__(self, error: KiteError) -> None:
        super().__init__(error.message)
        self.error = error


def _loads(text: str, what: str) -> Any:
    """JSON from a client, any failure (deep nesting included) a 400."""
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        raise input_error(f"Invalid {what}: not valid JSON (or nested too deep).") from None


class BrokerService:
    """Everything a request needs; built by paper_broker.app."""

    def __init__(self, *, accounts: Accounts, market: Any, engine: Any, clock: Clock, limiter: RateLimiter,
                 audit: AuditLog, instruments_csv: Callable[[list[Any]], str],
                 on_reload: Callable[[], dict[str, object]], info: Callable[[], dict[str, object]],
                 admin_token: str | None = None) -> None:
        self.accounts = accounts
        self.admin_token = admin_token
        self.market = market
        self.engine = engine
        self.clock = clock
        self.limiter = limiter
        self.audit = audit
        self.router = Router(_routes())
        self._instruments_csv = instruments_csv
        self._csv_cache: dict[str, bytes] = {}
        self._csv_lock = threading.Lock()
        self._on_reload = on_reload
        self._info = info

    # --- pipeline ----------------------------------------------------------------------------
    def dispatch(self, method: str, raw_path: str, headers: Mapping[str, str], body: bytes,
                 client: str = "-") -> Response:
        started = time.monotonic()
        path, _, query_text = raw_path.partition("?")
        admin = path.startswith("/paper/")
        request: Request | None = None
        now: datetime | None = None
        try:
            # Inside the try: a clock that cannot answer gives a 500 envelope, not a dropped connection.
            now = self.clock.now()
            route, args = self.router.match(method, path)
            if admin:
                self._check_admin(headers)
            query_lists = parse_qs(query_text, keep_blank_values=True) if query_text else {}
            query = _last(query_lists)
            form, json_body = self._parse_body(headers, body)
            request = Request(method, path, args, query, query_lists, form, json_body, headers, now)
            if route.auth:
                try:
                    request.account = self.accounts.authenticate(headers.get("Authorization"), now)
                except KiteError as exc:
                    request.principal = self.accounts.expired_session_owner(headers.get("Authorization"))
                    if request.principal is None:
                        raise Unauthenticated(exc) from None
                    raise
                request.principal = request.account.api_key
                if route.rate_class is not None:
                    self.limiter.check(request.principal, route.rate_class, places_order=route.places_order,
                                       day=now.date())
                self.engine.advance(now)
            result = getattr(self, route.handler)(request)
            response = result if isinstance(result, Response) else success(result)
        except Unauthenticated as exc:
            response = failure(self._stranger(client, exc.error, now))
        except KiteError as exc:
            response = failure(exc)
        except Exception:
            log.exception("unexpected error on %s %s", method, path)
            response = failure(KiteError("GeneralException", "Internal error in the paper broker.", 500))
        principal = request.principal if request is not None else None
        if not admin and now is not None:
            self.audit.record(now, principal, method, path, response.status, response.order_id)
        if request_log.isEnabledFor(logging.INFO):
            who = api_key_fingerprint(principal) if principal else f"- from={client}"
            request_log.info("%s %s %d %.1fms key=%s", method, path, response.status,
                             (time.monotonic() - started) * 1000, who)
        return response

    def _stranger(self, client: str, error: KiteError, now: datetime | None) -> KiteError:
        """Count a failed authentication against its client address (never the key it named)."""
        try:
            self.limiter.check(f"client:{client}", OTHER, day=None if now is None else now.date())
        except KiteError as limited:
            return limited
        return error

    def _admit(self, api_key: str, now: datetime) -> Callable[[], None]:
        return lambda: self.limiter.check(api_key, OTHER, day=now.date())

    def _check_admin(self, headers: Mapping[str, str]) -> None:
        if self.admin_token is None:
            return
        given = headers.get(ADMIN_HEADER) or ""
        if not hmac.compare_digest(given.encode(), self.admin_token.encode()):
            raise token_error(f"The admin routes need the header {ADMIN_HEADER}.")

    @staticmethod
    def _parse_body(headers: Mapping[str, str], body: bytes) -> tuple[dict[str, str], Any]:
        if not body:
            return {}, None
        content_type = (headers.get("Content-Type") or "").lower()
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise input_error("Request body is not UTF-8.") from None
        if "json" in content_type:
            return {}, _loads(text, "request body")
        return _last(parse_qs(text, keep_blank_values=True)), None

    # --- login -------------------------------------------------------------------------------
    def connect_login(self, req: Request) -> Response:
        api_key = req.query.get("api_key", "")
        if not api_key:
            raise input_error("Missing `api_key`.")
        token = self.accounts.new_request_token(api_key, req.now)
        params = [("action", "login"), ("type", "login"), ("status", "success"), ("request_token", token)]
        extra = req.query.get("redirect_params")
        if extra:
            params.extend((k, v) for k, vs in parse_qs(extra, keep_blank_values=True).items() for v in vs)
        location = "/paper/logged-in?" + urlencode(params, quote_via=quote)
        response = success({"request_token": token})
        response.status = 302
        response.headers.append(("Location", location))
        return response

    def session_token(self, req: Request) -> dict[str, object]:
        api_key = req.form.get("api_key", "")
        admit = self._admit(api_key, req.now)
        try:
            session = self.accounts.create_session(api_key, req.form.get("request_token", ""),
                                                   req.form.get("checksum", ""), req.now, admit=admit)
        except KiteError as exc:
            if exc.status == 429:  # proved, but over the account's limit: counted and audited as its own
                req.principal = api_key
                raise
            raise Unauthenticated(exc) from None
        req.principal = api_key
        account = self.accounts.get(api_key)
        assert account is not None
        return session_payload(account, session)

    def session_delete(self, req: Request) -> bool:
        api_key = req.query.get("api_key", "")
        access_token = req.query.get("access_token", "")
        try:
            if not api_key or not access_token:
                raise input_error("Missing `api_key` or `access_token`.")
            self.accounts.revoke(api_key, access_token, admit=self._admit(api_key, req.now))
        except KiteError as exc:
            if exc.status == 429:
                req.principal = api_key
                raise
            raise Unauthenticated(exc) from None
        req.principal = api_key
        return True

    # --- user and portfolio ------------------------------------------------------------------
    def profile(self, req: Request) -> dict[str, object]:
        assert req.account is not None
        return profile_payload(req.account)

    def margins(self, req: Request) -> object:
        segment = req.args.get("segment")
        if segment is not None and segment not in ("equity", "commodity"):
            raise input_error(f"Invalid segment: {segment!r}.")
        return self.engine.margins(req.account, segment)

    def holdings(self, req: Request) -> object:
        return self.engine.holdings(req.account) or []

    def positions(self, req: Request) -> object:
        return self.engine.positions(req.account)

    def convert_position(self, req: Request) -> object:
        convert = getattr(self.engine, "convert_position", None)
        if convert is None:
            raise KiteError("GeneralException", "Position conversion is not supported by the paper broker.",
                            400)
        return convert(req.account, req.params())

    # --- instruments and market data ---------------------------------------------------------
    def instruments(self, req: Request) -> Response:
        exchange = req.args.get("exchange", "")
        if exchange and exchange not in EXCHANGES:
            raise input_error(f"Invalid exchange: {exchange!r}.")
        with self._csv_lock:
            body = self._csv_cache.get(exchange)
            if body is None:
                chosen = [i for i in self.market.instruments if not exchange or i.exchange == exchange]
                body = self._csv_cache[exchange] = self._instruments_csv(chosen).encode()
        return Response(200, body, CSV_TYPE)

    def _keys(self, req: Request) -> list[str]:
        return req.query_lists.get("i", [])

    def quote(self, req: Request) -> object:
        return marketdata.quote_payload(self.market, self._keys(req), req.now)

    def ohlc(self, req: Request) -> object:
        return marketdata.ohlc_payload(self.market, self._keys(req), req.now)

    def ltp(self, req: Request) -> object:
        return marketdata.ltp_payload(self.market, self._keys(req), req.now)

    def historical(self, req: Request) -> object:
        return marketdata.historical_payload(self.market, req.args["token"], req.args["interval"], req.query,
                                             req.now)

    # --- orders (the order engine) -----------------------------------------------------------
    @staticmethod
    def _variety(req: Request) -> str:
        variety = req.args["variety"]
        if variety not in VARIETIES:
            raise method_not_allowed()
        return variety

    def place_order(self, req: Request) -> Response:
        result = self.engine.place_order(req.account, self._variety(req), req.params())
        response = success(result)
        order_id = result.get("order_id") if isinstance(result, dict) else None
        response.order_id = None if order_id is None else str(order_id)
        return response

    def modify_order(self, req: Request) -> object:
        return self.engine.modify_order(req.account, self._variety(req), req.args["order_id"], req.params())

    def cancel_order(self, req: Request) -> object:
        return self.engine.cancel_order(req.account, self._variety(req), req.args["order_id"], req.params())

    def orders(self, req: Request) -> object:
        return self.engine.orders(req.account) or []

    def order_history(self, req: Request) -> object:
        return self.engine.order_history(req.account, req.args["order_id"]) or []

    def order_trades(self, req: Request) -> object:
        return self.engine.order_trades(req.account, req.args["order_id"]) or []

    def trades(self, req: Request) -> object:
        return self.engine.trades(req.account) or []

    @staticmethod
    def _trigger_id(req: Request) -> int:
        text = req.args["trigger_id"]
        # isascii: str.isdigit also accepts digits such as "²" that int() refuses.
        if not (text.isascii() and text.isdigit()) or int(text) > MAX_INT64:
            raise input_error("Invalid trigger id.")
        return int(text)

    @staticmethod
    def _check_gtt_params(req: Request) -> None:
        """What the engine's GTT parser cannot refuse by itself: nesting too deep for json, and leg
        quantities no account could hold (1e30 is a whole number to it)."""
        params = req.params()
        for key in ("condition", "orders"):
            if params.get(key):
                value = _loads(params[key], f"`{key}`")
                if key == "orders" and isinstance(value, list):
                    for order in value:
                        quantity = order.get("quantity") if isinstance(order, dict) else None
                        if isinstance(quantity, (int, float, str)) and not isinstance(quantity, bool):
                            try:
                                number = float(quantity)
                            except ValueError:
                                continue  # the engine names it
                            if number > MAX_QUANTITY:
                                raise input_error(f"Invalid `quantity` in GTT order: at most {MAX_QUANTITY}.")

    def gtts(self, req: Request) -> object:
        return self.engine.gtts(req.account) or []

    def place_gtt(self, req: Request) -> object:
        self._check_gtt_params(req)
        return self.engine.place_gtt(req.account, req.params())

    def get_gtt(self, req: Request) -> object:
        return self.engine.get_gtt(req.account, self._trigger_id(req))

    def modify_gtt(self, req: Request) -> object:
        trigger_id = self._trigger_id(req)
        self._check_gtt_params(req)
        return self.engine.modify_gtt(req.account, trigger_id, req.params())

    def delete_gtt(self, req: Request) -> object:
        return self.engine.delete_gtt(req.account, self._trigger_id(req))

    def order_margins(self, req: Request) -> object:
        compute = getattr(self.engine, "order_margins", None)
        if compute is None:
            raise not_found()
        if not isinstance(req.json_body, list):
            raise input_error("Expected a JSON array of orders.")
        return compute(req.account, req.json_body, req.query)

    def virtual_contract_note(self, req: Request) -> object:
        if not isinstance(req.json_body, list):
            raise input_error("Expected a JSON array of orders.")
        try:
            return charges.virtual_contract_note(req.json_body)
        except ValueError as exc:
            raise input_error(str(exc)) from None

    # --- admin -------------------------------------------------------------------------------
    def admin_health(self, req: Request) -> dict[str, object]:
        return {
            "status": "ok",
            "now": req.now.isoformat(),
            "clock": self.clock.describe(),
            "accounts": len(self.accounts.all()),
            "rate_limits": self.limiter.enabled,
            "instruments": len(self.market.instruments),
            **self._info(),
        }

    def admin_accounts(self, req: Request) -> list[dict[str, object]]:
        advance = getattr(self.engine, "advance", None)
        if advance is not None:  # a roll that fell due since the last tick shows (its charges debited)
            advance(req.now)
        out = []
        for account in self.accounts.all():
            summary = dict(self.engine.account_summary(account) or {})
            summary.pop("api_key", None)  # the engine's summary names the account by its key
            # The fingerprint, as everywhere else: the full key is a credential half.
            out.append({"user_name": account.user_name, "user_id": account.user_id,
                        "api_key_fingerprint": api_key_fingerprint(account.api_key),
                        "starting_cash": account.starting_cash, **summary})
        return out

    def admin_audit(self, req: Request) -> list[dict[str, object]]:
        since = None
        if req.query.get("since"):
            try:
                since = datetime.fromisoformat(req.query["since"])
            except ValueError:
                raise input_error("Invalid `since`: expected an ISO date-time.") from None
            since = since.replace(tzinfo=IST) if since.tzinfo is None else since
        limit = req.query.get("limit")
        if limit is not None and not (limit.isascii() and limit.isdigit() and int(limit) <= MAX_AUDIT_LIMIT):
            raise input_error(f"Invalid `limit`: use a whole number from 0 to {MAX_AUDIT_LIMIT}.")
        return self.audit.query(since=since, api_key=req.query.get("api_key") or None,
                                limit=None if limit is None else int(limit))

    def admin_reload(self, req: Request) -> dict[str, object]:
        return self._on_reload()

    def admin_authorise(self, req: Request) -> dict[str, object]:
        """The CDSL TPIN step of an account without demat consent: ``user`` may sell its settled
        ``symbol`` shares today (``POST /paper/authorise?user=NAME&symbol=SYM``)."""
        user, symbol = req.params().get("user", ""), req.params().get("symbol", "")
        account = next((a for a in self.accounts.all() if a.user_name == user), None)
        if account is None or not symbol:
            raise input_error("Give `user` (a paper account's name) and `symbol`.")
        return self.engine.authorise(account, symbol, req.now)

    def admin_logged_in(self, req: Request) -> dict[str, object]:
        return {"request_token": req.query.get("request_token"), "status": req.query.get("status")}


class KiteRequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "PaperKite/1.0"
    sys_version = ""
    # Idle keep-alive connections are dropped after this long, so their threads end.
    timeout = 120
    # Headers and body leave in one send (buffered; handle_one_request flushes), and without
    # Nagle's delay, which would otherwise add ~40 ms to every keep-alive round trip.
    wbufsize = 256 * 1024
    disable_nagle_algorithm = True

    server: PaperHTTPServer

    def _handle(self) -> None:
        if self.headers.get("Transfer-Encoding") is not None:
            # The body's framing is unknown to us: refuse and close rather than read it as requests.
            self._refuse(KiteError("InputException", "Send the body with a Content-Length; "
                                   "Transfer-Encoding (chunked) is not accepted.", 411))
            return
        lengths = self.headers.get_all("Content-Length") or []
        try:
            length = int(lengths[0]) if lengths else 0
        except ValueError:
            length = -1
        if length < 0 or len(set(lengths)) > 1:
            self._refuse(input_error("Bad Content-Length."))
            return
        if length > MAX_BODY_BYTES:
            # Checked before reading a byte: a large body is never held in memory.
            self._refuse(KiteError("InputException", f"Request body too large: at most {MAX_BODY_BYTES} "
                                   "bytes.", 413))
            return
        body = self.rfile.read(length) if length else b""
        client = str(self.client_address[0]) if self.client_address else "-"
        # the headers' case-insensitive get() is all dispatch uses; Message is not a Mapping by type
        self._send(self.server.service.dispatch(self.command, self.path, self.headers,  # type: ignore[arg-type]
                                                body, client))

    def _refuse(self, error: KiteError) -> None:
        """Answer and close: the unread body must not be taken for the next request."""
        response = failure(error)
        response.headers.append(("Connection", "close"))
        self.close_connection = True
        self._send(response)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _handle

    def _send(self, response: Response) -> None:
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        for name, value in response.headers:
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Protocol-level errors (malformed request line, unsupported method) in the Kite envelope."""
        error_type = "GeneralException"
        if code == 501:
            code, message = 405, "Request method not allowed"
        body = _dumps({"status": "error", "message": message or "Bad request", "data": None,
                       "error_type": error_type})
        self.send_response(code, message)
        self.send_header("Content-Type", JSON_TYPE)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD" and code >= 200 and code not in (204, 304):
            self.wfile.write(body)
        self.close_connection = True

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass  # BrokerService.dispatch logs every request, without query strings

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("http: " + format, *args)


class PaperHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], service: BrokerService) -> None:
        self.service = service
        super().__init__(address, KiteRequestHandler)
