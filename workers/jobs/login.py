"""``login``: create the user's Kite session with the user's own API secret, in the user's own process.

The orchestrator never holds a user's secret: ``orchestrator.py login USER`` starts this job through
the launcher and talks to it over pipes. Protocol (one JSON object per stdout line):

    manual flow (live users always; paper users with --manual):
      -> {"event": "login_url", "user", "mode", "url", "api_key_fingerprint"}
      <- one line on stdin: the redirect URL (``...?request_token=...&status=success``) or the bare
         request_token. Never on the command line, where ``ps`` would show it.
    automatic flow (paper users): GET <KITE_ROOT>/connect/login -> 302 with a request_token.
    both:
      -> {"event": "session", "user", "mode", "broker_user_id", "login_time", "expires_at", "session_file"}

The session is ``generate_session(request_token, api_secret)`` (checksum = SHA-256 of key + token +
secret) and is written by workers.session_file.save_session to ``data/<User>/session.json``
(mode 0600, atomic): access_token, login_time, expires_at (the first 06:00 IST after the login),
mode, and root (paper). Neither token is ever printed or logged (both are registered with the log
redaction as soon as they are seen). A running scheduler notices the new file by its mtime.

Exit codes: 0 session written; 2 no usable request token given; 4 bad env file; 5 the broker
refused the request token (wrong, used or expired: they work once, for a few minutes); 7 broker
unreachable.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from typing import Any
from urllib.parse import parse_qs, urlencode, urlparse

import requests
from kiteconnect import KiteConnect
from kiteconnect import exceptions as kex

from kitefleet import clock
from kitefleet.errors import TokenError, UsageError
from kitefleet.settings import Settings
from workers.broker_errors import BrokerUnavailable, describe, map_error
from workers.context import JobContext
from workers.kite_client import REQUEST_TIMEOUT_S
from workers.session_file import save_session, session_expiry

LOG_TO_CONSOLE = False
KITE_LOGIN_URL = "https://kite.zerodha.com/connect/login"
_TOKEN_RE = re.compile(r"^[A-Za-z0-9]{6,128}$")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--manual", action="store_true",
                        help="paper users too: print the login URL and read the request token from stdin")


def _register_secret(value: str) -> None:
    from workers.logs import register_secret

    register_secret(value)


def login_url(settings: Settings) -> str:
    query = urlencode({"api_key": settings.api_key, "v": 3})
    if settings.is_paper:
        return f"{settings.kite_root}/connect/login?{query}"
    return f"{KITE_LOGIN_URL}?{query}"


def extract_request_token(text: str) -> str:
    """The request token from a pasted redirect URL or a bare token. UsageError otherwise; the
    message never repeats the input (it may be a valid token pasted into the wrong place)."""
    text = text.strip()
    if not text:
        raise UsageError("no request token given: paste the redirect URL or its request_token")
    if "request_token=" in text or "://" in text:
        query = parse_qs(urlparse(text).query)
        status = query.get("status", ["success"])[0]
        if status != "success":
            raise UsageError(f"the redirect URL says status={status!r}: the Kite login did not succeed; try again")
        tokens = query.get("request_token", [])
        if not tokens:
            raise UsageError("the pasted URL has no request_token parameter; paste the URL Kite redirected to")
        text = tokens[0].strip()
    if not _TOKEN_RE.match(text):
        raise UsageError("that does not look like a request token (letters and digits only); "
                         "paste the redirect URL or its request_token")
    return text


def _emit(obj: dict[str, Any]) -> None:
    print(json.dumps(obj, separators=(",", ":")), flush=True)


def _paper_request_token(settings: Settings) -> str:
    url = f"{settings.kite_root}/connect/login"
    try:
        params: dict[str, str | int] = {"api_key": settings.api_key, "v": 3}
        resp = requests.get(url, params=params, allow_redirects=False,
                            timeout=REQUEST_TIMEOUT_S)
    except requests.RequestException as exc:
        raise BrokerUnavailable(f"paper broker at {settings.kite_root} unreachable ({describe(exc)}); "
                                "is it running? (orchestrator.py paper-broker)") from None
    location = resp.headers.get("Location", "") if resp.is_redirect else ""
    token = parse_qs(urlparse(location).query).get("request_token", [""])[0]
    if not token:
        if resp.status_code >= 500:
            raise BrokerUnavailable(f"paper broker at {settings.kite_root} answered HTTP {resp.status_code}")
        raise TokenError(f"paper broker at {settings.kite_root} refused the login of {settings.user} "
                         f"(HTTP {resp.status_code}); is env/{settings.user}.env in the broker's home?")
    return token


def create_session(ctx: JobContext, request_token: str) -> dict[str, Any]:
    settings = ctx.settings
    kite = KiteConnect(settings.api_key, root=settings.kite_root, timeout=REQUEST_TIMEOUT_S)
    try:
        session = kite.generate_session(request_token, api_secret=settings.api_secret)
    except kex.TokenException as exc:
        raise TokenError(
            f"the broker refused the request token for {ctx.user} ({exc}); a request token works once and "
            f"only for a few minutes: run 'orchestrator.py login {ctx.user}' again and paste the new one"
        ) from None
    except (kex.KiteException, requests.RequestException) as exc:
        mapped = map_error(exc, operation="generate_session", write=False, user=ctx.user)
        raise mapped from None
    token = str(session["access_token"])
    _register_secret(token)
    login_time = clock.now()
    expires_at = session_expiry(login_time)
    path = save_session(ctx.home, ctx.user, access_token=token, login_time=login_time, expires_at=expires_at,
                        mode=settings.mode, root=settings.kite_root if settings.is_paper else None)
    ctx.log.info("session created for %s (broker user %s), valid until %s", ctx.user, session.get("user_id"),
                 expires_at.isoformat())
    return {"event": "session", "user": ctx.user, "mode": settings.mode,
            "broker_user_id": session.get("user_id"), "login_time": login_time.isoformat(),
            "expires_at": expires_at.isoformat(), "session_file": str(path)}


def run(ctx: JobContext) -> int:
    settings = ctx.settings
    manual = bool(ctx.args.manual) or not settings.is_paper
    if manual:
        _emit({"event": "login_url", "user": ctx.user, "mode": settings.mode, "url": login_url(settings),
               "api_key_fingerprint": settings.fingerprint})
        request_token = extract_request_token(sys.stdin.readline())
    else:
        request_token = _paper_request_token(settings)
    _register_secret(request_token)
    _emit(create_session(ctx, request_token))
    return 0
