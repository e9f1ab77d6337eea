"""The dashboard's ASGI application (Starlette): routes, guard middleware, the fleet snapshot.

Routes (every path is fixed or made of a user name checked against env/'s names and a key of a
fixed table; nothing serves a file whose path comes from the request):

    GET  /                          the fleet page (polls /api/fleet)
    GET  /api/fleet                 {"html": rows, "users": [...], "updated": ...}
    GET  /user/{user}               one user's page (polls /api/user/{user})
    GET  /api/user/{user}           {"html": body, "positions": [...], "updated": ...}
    GET  /user/{user}/report/{kind} the newest report of kind daily|backtest, as a download;
                                    with ?view=1 for the page's sandboxed iframe (CSP sandbox)
    POST /user/{user}/action/{name} pause|resume|halt|halt-flatten|unhalt (token, CSRF, confirm)
    GET  /login, POST /login, POST /logout
    GET  /static/dashboard.js|.css, /favicon.ico
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
)
from starlette.routing import Route

from fleet import supervisor
from fleet.web import actions as acts
from fleet.web import disk, security, views
from fleet.web.live import INTERVAL_S, LiveCache, summary_fetch
from kitefleet import clock
from kitefleet.home import Home

HERE = Path(__file__).resolve().parent
STATIC = {"dashboard.js": ("application/javascript", HERE / "static" / "dashboard.js"),
          "dashboard.css": ("text/css", HERE / "static" / "dashboard.css")}
#: the pages poll this often (ms); the fleet snapshot is shared by every client for SNAPSHOT_TTL
POLL_MS = 2000
SNAPSHOT_TTL_S = 1.0
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "frame-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
REPORT_CSP = "sandbox; default-src 'none'; img-src data:; style-src 'unsafe-inline'"
PUBLIC = frozenset({"/login", "/static/dashboard.css", "/favicon.ico"})


@dataclass
class Config:
    home: Home
    host: str = "127.0.0.1"
    port: int = 8780
    token: str | None = None
    allow_hosts: list[str] = field(default_factory=list)
    interval: float = INTERVAL_S

    @property
    def allowed(self) -> frozenset[str]:
        return frozenset(security.allowed_hosts(self.host, self.allow_hosts))


class Dashboard:
    """What the routes share: config, templates, the live cache, the fleet snapshot."""

    def __init__(self, config: Config, live: LiveCache | None = None) -> None:
        self.config = config
        self.home = config.home
        self.live = live or LiveCache(summary_fetch(config.home), interval=config.interval)
        self.restarts = views.RestartCounter()
        self.env = Environment(loader=FileSystemLoader(str(HERE / "templates")),
                               autoescape=select_autoescape(default=True, default_for_string=True))
        self.env.filters["money"] = lambda v: "-" if v is None else f"{float(v):,.2f}"
        self.env.filters["hhmm"] = lambda v: (str(v or "")[11:16] or "-")
        self.actions = acts.available_actions() if config.token else {}
        self._snap_lock = threading.Lock()
        self._snap: tuple[float, list[dict[str, Any]]] | None = None
        self.cookie_value = security.derive(config.token, "session") if config.token else None
        self.csrf = security.derive(config.token, "csrf") if config.token else None

    # --- data ----------------------------------------------------------------------------------
    def users(self) -> list[str]:
        return disk.users(self.home)

    def fleet_rows(self, *, fresh: bool = False) -> list[dict[str, Any]]:
        """One row per user; computed at most once per SNAPSHOT_TTL_S for all clients together."""
        with self._snap_lock:
            now_m = time.monotonic()
            if not fresh and self._snap is not None and now_m - self._snap[0] < SNAPSHOT_TTL_S:
                return self._snap[1]
            users = self.users()
            infos = supervisor.process_infos(self.home) or {}
            now, wall = clock.now(), time.time()
            rows = []
            for user in users:
                info = infos.get(supervisor.namespec(user))
                restarts = self.restarts.see(user, None if info is None else info.get("pid"))
                live = views.live_view(self.live.get(user), self.live)
                rows.append(views.fleet_row(self.home, user, info, live, restarts, now, wall))
            self._snap = (now_m, rows)
            return rows

    def render(self, template: str, **ctx: Any) -> str:
        return self.env.get_template(template).render(csrf=self.csrf, token=bool(self.config.token), **ctx)


# --- the guard ---------------------------------------------------------------------------------------
class Guard(BaseHTTPMiddleware):
    """Host check (DNS rebinding), login when a token is set, security headers on every answer."""

    def __init__(self, app: Any, dash: Dashboard) -> None:
        super().__init__(app)
        self.dash = dash

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        if not security.host_allowed(request.headers.get("host"), self.dash.config.allowed):
            return _headers(PlainTextResponse("refused: this Host is not the dashboard's address\n", 421))
        path = request.url.path
        if request.method not in ("GET", "HEAD") and path != "/login" and not self.dash.config.token:
            return _headers(PlainTextResponse("refused: the dashboard is read-only (started without a token)\n",
                                              403))
        if self.dash.cookie_value and path not in PUBLIC and not logged_in(request, self.dash):
            if request.method in ("GET", "HEAD") and not path.startswith("/api/"):
                return _headers(RedirectResponse("/login", 303))
            return _headers(PlainTextResponse("refused: log in first\n", 403))
        return _headers(await call_next(request))


def _headers(response: Response) -> Response:
    response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["X-Frame-Options"] = "SAMEORIGIN"
    response.headers["Cache-Control"] = "no-store"
    return response


def logged_in(request: Request, dash: Dashboard) -> bool:
    return dash.cookie_value is not None and security.same(request.cookies.get(security.COOKIE), dash.cookie_value)


# --- routes ------------------------------------------------------------------------------------------
def _dash(request: Request) -> Dashboard:
    return request.app.state.dash


def _user_or_404(dash: Dashboard, request: Request) -> str | None:
    user = str(request.path_params.get("user", ""))
    return user if disk.valid_user(user) and user in dash.users() else None


async def fleet_page(request: Request) -> Response:
    dash = _dash(request)
    dash.live.want(dash.users())
    rows = await run_in_threadpool(dash.fleet_rows)
    return HTMLResponse(dash.render("fleet.html", rows=rows, poll_ms=POLL_MS, updated=_updated()))


async def fleet_api(request: Request) -> Response:
    dash = _dash(request)
    dash.live.want(dash.users())
    rows = await run_in_threadpool(dash.fleet_rows)
    html = dash.render("fleet_rows.html", rows=rows)
    return JSONResponse({"html": html, "updated": _updated(), "users": _plain(rows)})


def _plain(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if k != "bar"} for r in rows]


def _updated() -> str:
    return clock.now().strftime("%Y-%m-%d %H:%M:%S")


def _user_context(dash: Dashboard, user: str) -> dict[str, Any]:
    dash.live.want([user])
    entry = dash.live.get(user)
    live = views.live_view(entry, dash.live)
    return views.user_view(dash.home, user, live, clock.now(), views.intraday_equity(entry))


async def user_page(request: Request) -> Response:
    dash = _dash(request)
    user = _user_or_404(dash, request)
    if user is None:
        return HTMLResponse(dash.render("error.html", message="no such user"), 404)
    view = await run_in_threadpool(_user_context, dash, user)
    return HTMLResponse(dash.render("user.html", v=view, poll_ms=POLL_MS, updated=_updated(),
                                    actions=list(dash.actions.values())))


async def user_api(request: Request) -> Response:
    dash = _dash(request)
    user = _user_or_404(dash, request)
    if user is None:
        return JSONResponse({"error": "no such user"}, 404)
    view = await run_in_threadpool(_user_context, dash, user)
    html = dash.render("user_body.html", v=view)
    plain = [{k: v for k, v in p.items() if k != "bar"} for p in view["positions"]]
    return JSONResponse({"html": html, "updated": _updated(), "positions": plain, "unmanaged": view["unmanaged"],
                         "paused": view["paused"], "halt": view["halt"]})


async def report(request: Request) -> Response:
    dash = _dash(request)
    user = _user_or_404(dash, request)
    kind = str(request.path_params.get("kind", ""))
    if user is None or kind not in disk.REPORTS:
        return PlainTextResponse("no such report\n", 404)
    path = disk.report_file(dash.home, user, kind)
    if path is None:
        return PlainTextResponse("no report yet\n", 404)
    if request.query_params.get("view") == "1" and path.suffix == ".html":
        response = FileResponse(path, media_type="text/html")
        response.headers["Content-Security-Policy"] = REPORT_CSP
        return response
    return FileResponse(path, media_type="application/octet-stream", filename=path.name)


async def action(request: Request) -> Response:
    dash = _dash(request)
    user = _user_or_404(dash, request)
    name = str(request.path_params.get("name", ""))
    if user is None:
        return PlainTextResponse("no such user\n", 404)
    form = await form_of(request)
    if dash.csrf is None or not security.same(str(form.get("csrf") or "") or None, dash.csrf):
        return PlainTextResponse("refused: missing or wrong CSRF token; reload the page\n", 403)
    if form.get("confirm") != "yes":
        return PlainTextResponse("refused: not confirmed\n", 400)
    chosen = dash.actions.get(name)
    if chosen is None:
        what = "not available in this version" if name in acts.KNOWN else "unknown"
        return HTMLResponse(dash.render("action.html", user=user, name=name, ok=False,
                                        output=f"{name}: {what}"), 404 if name not in acts.KNOWN else 501)
    code, output = await run_in_threadpool(acts.run_action, dash.home, chosen, user)
    dash.fleet_rows(fresh=True)
    return HTMLResponse(dash.render("action.html", user=user, name=chosen.label, ok=code == 0, output=output),
                        200 if code == 0 else 500)


MAX_FORM_BYTES = 4096


async def form_of(request: Request) -> dict[str, str]:
    """A small urlencoded form (every form here is a few short fields); anything else is empty.
    Parsed here rather than with python-multipart: one dependency less for three fields."""
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/x-www-form-urlencoded":
        return {}
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            return {}
    pairs = parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True, max_num_fields=8)
    return dict(pairs)


async def login_page(request: Request) -> Response:
    dash = _dash(request)
    if request.method == "GET":
        return HTMLResponse(dash.render("login.html", failed=False))
    form = await form_of(request)
    given = str(form.get("token") or "")
    if not dash.config.token or not security.same(given, dash.config.token):
        return HTMLResponse(dash.render("login.html", failed=True), 403)
    response = RedirectResponse("/", 303)
    response.set_cookie(security.COOKIE, dash.cookie_value or "", httponly=True, samesite="strict", path="/")
    return response


async def logout(request: Request) -> Response:
    dash = _dash(request)
    form = await form_of(request)
    if dash.csrf is None or not security.same(str(form.get("csrf") or "") or None, dash.csrf):
        return PlainTextResponse("refused: missing or wrong CSRF token\n", 403)
    response = RedirectResponse("/login", 303)
    response.delete_cookie(security.COOKIE, path="/")
    return response


async def static(request: Request) -> Response:
    media, path = STATIC[request.url.path.rsplit("/", 1)[-1]]
    return FileResponse(path, media_type=media)


async def favicon(request: Request) -> Response:
    return Response(status_code=204)


def create_app(config: Config, live: LiveCache | None = None) -> Starlette:
    dash = Dashboard(config, live)
    routes = [
        Route("/", fleet_page),
        Route("/api/fleet", fleet_api),
        Route("/user/{user}", user_page),
        Route("/api/user/{user}", user_api),
        Route("/user/{user}/report/{kind}", report),
        Route("/user/{user}/action/{name}", action, methods=["POST"]),
        Route("/login", login_page, methods=["GET", "POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/static/dashboard.js", static),
        Route("/static/dashboard.css", static),
        Route("/favicon.ico", favicon),
    ]
    app = Starlette(routes=routes, middleware=[Middleware(Guard, dash=dash)])
    app.state.dash = dash
    return app
