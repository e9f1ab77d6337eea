"""Builds and runs the paper broker: Database + accounts + Market + OrderEngine + HTTP server.

Files in the data dir (``data/paper`` of the home by default). The dir is private: created 0700
(an existing one is tightened to 0700, a shared sticky one such as /tmp is refused), and the files
below that hold secrets (every paper account's api_secret, every access token) are 0600, their
SQLite ``-wal`` / ``-shm`` companions included (SQLite gives those the database's own mode):

    paper.db           SQLite (WAL): accounts, sessions, request tokens, audit, and the order
                       engine's tables. Survives restarts: accounts and sessions keep working.
    broker.json        {"pid", "port", "url", "host"}: written atomically once the server listens,
                       removed on a clean stop. Tests and the orchestrator read the port from it.
    paper_broker.log   one line per request (method, path without query, status, latency, key
                       fingerprint) plus lifecycle and errors. Never tokens, secrets or full keys.
                       Rotated at LOG_MAX_BYTES (10 MiB; ``--log-max-bytes``), LOG_BACKUPS (3) old
                       files kept as paper_broker.log.1 .. .3, each 0600.

Background threads: the order engine's ``advance`` every ADVANCE_INTERVAL wall seconds (orders
fill at the right simulated minute even when nobody calls) and the audit writer. Both stop on
``stop()``.
"""

from __future__ import annotations

import errno
import ipaddress
import json
import logging
import os
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kitefleet.atomic import atomic_write_json
from kitefleet.calendar import NseCalendar, load_calendar
from kitefleet.clock import Clock, get_clock
from kitefleet.errors import ConfigError
from kitefleet.home import Home
from paper_broker.audit import AuditLog
from paper_broker.auth import Accounts
from paper_broker.db import Database
from paper_broker.ratelimit import RateLimiter
from paper_broker.server import BrokerService, PaperHTTPServer

log = logging.getLogger("paper_broker")

ADVANCE_INTERVAL = 0.2
DB_FILE = "paper.db"
LOG_FILE = "paper_broker.log"
LOG_MAX_BYTES = 10 * 1024 * 1024
LOG_BACKUPS = 3
PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600


@dataclass(frozen=True)
class BrokerConfig:
    home: Home
    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 8765
    scenario: Path | None = None
    symbols: list[str] | None = None
    seed: int = 1
    rate_limits: bool = True
    #: Required by every /paper/ route when set; a host other than loopback needs one.
    admin_token: str | None = None
    #: ``--rms-reject``: what a place_order refused for funds or holdings answers (engine.RMS_MODES).
    rms_reject: str = "row"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name other than localhost may resolve to anything


def _make_engine(db: Database, market: Any, calendar: NseCalendar, clock: Clock, rms_reject: str = "row") -> Any:
    from paper_broker.engine import OrderEngine

    return OrderEngine(db, market, calendar, clock, rms_reject=rms_reject)


def _make_market(config: BrokerConfig, calendar: NseCalendar) -> tuple[Any, Callable[[list[Any]], str]]:
    from kitefleet.sim.market import Market
    from kitefleet.sim.universe import instruments_csv

    scenarios = None
    if config.scenario is not None:
        from kitefleet.sim.scenario import ScenarioSet

        scenarios = ScenarioSet.load(config.scenario)
    market: Any = Market(calendar, seed=config.seed, scenarios=scenarios, symbols=config.symbols)
    if scenarios is not None and scenarios.actions:
        from paper_broker.corporate import AdjustedMarket

        market = AdjustedMarket(market, scenarios.actions, calendar)
    return market, instruments_csv


class BindError(ConfigError):
    """The server could not listen on the configured host and port (exit code CONFIG)."""

    def __init__(self, host: str, port: int, exc: BaseException) -> None:
        if isinstance(exc, OverflowError):
            why = f"port {port} is not allowed (use 0 to 65535)"
        elif isinstance(exc, OSError) and exc.errno == errno.EADDRINUSE:
            why = f"port {port} is in use ({exc.strerror})"
        elif isinstance(exc, OSError) and exc.errno in (errno.EACCES, errno.EPERM):
            why = f"port {port} is not allowed ({exc.strerror})"
        else:
            why = str(exc.strerror if isinstance(exc, OSError) and exc.strerror else exc)
        super().__init__(f"cannot listen on {host}:{port}: {why}")


def private_file(path: Path, *, create: bool = False) -> None:
    """Make ``path`` 0600 (creating it empty first when ``create``); a missing file is left alone."""
    if create:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, PRIVATE_FILE_MODE))
    try:
        st = path.lstat()
    except FileNotFoundError:
        return
    if not stat.S_ISREG(st.st_mode):
        raise ConfigError(f"{path}: not a regular file")
    if stat.S_IMODE(st.st_mode) != PRIVATE_FILE_MODE:
        os.chmod(path, PRIVATE_FILE_MODE)


def secure_data_dir(data_dir: Path) -> None:
    """Create the data dir 0700 or tighten an existing one, and make its secret-holding files 0600.

    Called before the database or the log is opened, so that nothing is ever readable by another
    local user, even for an instant. Raises ConfigError when the dir cannot be made private.
    """
    data_dir.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR_MODE)
    st = data_dir.stat()
    if stat.S_IMODE(st.st_mode) & 0o077:
        if st.st_mode & stat.S_ISVTX:
            raise ConfigError(f"{data_dir}: a shared directory (sticky bit); give the paper broker a "
                              f"private --data-dir")
        try:
            os.chmod(data_dir, PRIVATE_DIR_MODE)
        except PermissionError:
            raise ConfigError(f"{data_dir}: readable by other users and not yours to change; "
                              f"run: chmod 700 {data_dir}") from None
    try:
        private_file(data_dir / DB_FILE, create=True)
        logs = [LOG_FILE] + [f"{LOG_FILE}.{n}" for n in range(1, LOG_BACKUPS + 1)]
        for name in (f"{DB_FILE}-wal", f"{DB_FILE}-shm", f"{DB_FILE}-journal", *logs):
            private_file(data_dir / name)
    except PermissionError as exc:
        raise ConfigError(f"{exc.filename}: cannot make it private (mode 0600): {exc.strerror}") from None


class PaperBroker:
    def __init__(self, config: BrokerConfig, clock: Clock | None = None) -> None:
        self.config = config
        if not is_loopback(config.host) and not config.admin_token:
            raise ConfigError(f"host {config.host} is not loopback: the admin routes then need an admin token")
        self.clock = clock or get_clock()
        secure_data_dir(config.data_dir)
        now = self.clock.now()
        self.calendar = load_calendar(config.home.calendar_file, now.date())
        self.db = Database(config.data_dir / DB_FILE)
        self.accounts = Accounts(self.db, config.home)
        self.market, instruments_csv = _make_market(config, self.calendar)
        self.engine = _make_engine(self.db, self.market, self.calendar, self.clock, config.rms_reject)
        self.audit = AuditLog(self.db)
        self.limiter = RateLimiter(enabled=config.rate_limits, speed=lambda: self.clock.speed)
        self._reload_lock = threading.Lock()
        self.reload_accounts()
        self.engine.consent_of = self._consent_of
        self.service = BrokerService(
            accounts=self.accounts, market=self.market, engine=self.engine, clock=self.clock,
            limiter=self.limiter, audit=self.audit, instruments_csv=instruments_csv,
            on_reload=self.reload_accounts, info=self._info, admin_token=config.admin_token,
        )
        try:
            self.httpd = PaperHTTPServer((config.host, config.port), self.service)
        except (OSError, OverflowError) as exc:  # OverflowError: a port outside 0..65535
            self.db.close()
            raise BindError(config.host, config.port, exc) from None
        self.port: int = self.httpd.server_address[1]
        self.url = f"http://{config.host}:{self.port}"
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._started = time.monotonic()

    def _info(self) -> dict[str, object]:
        return {"pid": os.getpid(), "url": self.url, "engine": type(self.engine).__name__,
                "uptime_seconds": round(time.monotonic() - self._started, 3)}

    def reload_accounts(self) -> dict[str, object]:
        with self._reload_lock:
            result = self.accounts.reload(self.clock.now())
            for account in self.accounts.all():
                self.engine.ensure_account(account)
        log.info("accounts: %d active (%d added, %d updated, %d skipped)", result.active, len(result.added),
                 len(result.updated), len(result.skipped))
        return {"added": result.added, "updated": result.updated, "skipped": result.skipped,
                "active": result.active}

    def _consent_of(self, api_key: str) -> str:
        account = self.accounts.get(api_key)
        return "consent" if account is None else account.demat_consent

    def _advance_loop(self) -> None:
        while not self._stop.wait(ADVANCE_INTERVAL):
            try:
                self.engine.advance(self.clock.now())
            except Exception:
                log.exception("order engine advance failed")

    def start(self) -> None:
        """Start the background threads and serve in a thread; returns once listening."""
        self.audit.start()
        for target, name in ((self._advance_loop, "engine-advance"), (self.httpd.serve_forever, "http")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        # kitefleet.atomic also fsyncs the folder: the rename survives a power cut.
        atomic_write_json(self.config.data_dir / "broker.json",
                          {"pid": os.getpid(), "port": self.port, "url": self.url, "host": self.config.host},
                          indent=None)
        log.info("listening on %s (clock: %s, rate limits %s)", self.url, self.clock.describe(),
                 "on" if self.limiter.enabled else "off")

    def stop(self) -> None:
        self._stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        for thread in self._threads:
            thread.join(timeout=5)
        self.audit.stop()
        try:
            info = json.loads((self.config.data_dir / "broker.json").read_text(encoding="utf-8"))
            if info.get("pid") == os.getpid():
                (self.config.data_dir / "broker.json").unlink()
        except (OSError, ValueError):
            pass
        self.db.close()
        log.info("stopped")
