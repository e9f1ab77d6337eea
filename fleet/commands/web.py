"""``web [--host 127.0.0.1] [--port 8780] [--token] [--allow-host NAME] [--summary-interval S]``: the fleet
dashboard.

Serves fleet.web on Starlette + uvicorn. Binds 127.0.0.1 by default and is then read-only unless
``--token`` is given; any other address always needs the token (fleet.web.security). The socket
is bound here, before uvicorn starts, so a port in use or an address not on this machine is one
line (exit 4) and a malformed ``--host`` is a usage error (exit 2).
"""

from __future__ import annotations

import argparse
import errno
import socket
import sys
from typing import Any

from fleet.web import security
from fleet.web.live import INTERVAL_S
from kitefleet.errors import ConfigError, UsageError
from kitefleet.exitcodes import ExitCode
from kitefleet.home import Home

DEFAULT_PORT = 8780


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r}: give a port number from 1 to 65535")
    return value


def _interval(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 1.0 <= value <= 3600.0:
        raise argparse.ArgumentTypeError(f"{text!r}: give seconds from 1 to 3600")
    return value


def add_parser(sub: Any) -> None:
    p = sub.add_parser("web", help="the fleet dashboard in a browser (read-only unless started with a token)",
                       usage="orchestrator.py web [--host ADDRESS] [--port PORT] [--token] [--allow-host NAME] "
                             "[--summary-interval SECONDS]")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1; any other needs the "
                                                       "token, which is then turned on)")
    p.add_argument("--port", type=_port, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    p.add_argument("--token", action="store_true",
                   help="require the token in run/web.token (created on first use) and allow actions")
    p.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                   help="a name browsers use for this machine, accepted in the Host header (repeatable)")
    p.add_argument("--summary-interval", type=_interval, default=INTERVAL_S, metavar="SECONDS",
                   help=f"at most one broker summary per user per this many seconds, however many pages are "
                        f"open (default {INTERVAL_S:g})")
    p.set_defaults(func=run)


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ConfigError(f"--port {port}: already in use on {host}; stop what uses it or give another "
                              "--port") from None
        if exc.errno == errno.EADDRNOTAVAIL:
            raise ConfigError(f"--host {host}: not an address of this machine; give one of its addresses, "
                              "127.0.0.1 or 0.0.0.0") from None
        raise ConfigError(f"--host {host} --port {port}: cannot bind ({exc.strerror})") from None
    sock.setblocking(False)
    return sock


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from fleet.web.app import Config, create_app

    home = Home.resolve()
    host = security.check_host(args.host)
    for name in args.allow_host:
        if not name or any(c in name for c in "/:@ \t") or name.startswith("["):
            raise UsageError(f"--allow-host {name!r}: give a host name or IPv4 address, without port")
    if security.is_wildcard(host) and not args.allow_host:
        raise UsageError(f"--host {host} binds every interface: name the host browsers use with --allow-host "
                         "(requests for other names are refused)")
    sock = bind(host, args.port)
    use_token = args.token or not security.is_loopback(host)
    token = None
    if use_token:
        token, created = security.load_or_create_token(home)
        path = security.token_path(home)
        if created and sys.stdout.isatty():
            print(f"dashboard token (shown once; kept in {path}, mode 0600): {token}")
        elif created:
            # Not a terminal (supervisord's log, a pipe): a token never goes into a log file.
            print(f"dashboard token created in {path} (mode 0600); read it there to log in")
    shown = f"[{host}]" if ":" in host else host
    mode = "actions with the token" if token else "read-only"
    print(f"dashboard: http://{shown}:{args.port}/ ({mode}); Ctrl-C stops it", flush=True)
    app = create_app(Config(home, host, args.port, token, list(args.allow_host), interval=args.summary_interval))
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off",
                            proxy_headers=False, server_header=False)
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        app.state.dash.live.close()
    return ExitCode.OK
