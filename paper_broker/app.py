"""Builds and runs the paper broker: Database + accounts + Market + OrderEngine + HTTP server.

Files in the data dir (``data/paper`` of the home by default):

    paper.db           SQLite (WAL): accounts, sessions, request tokens, audit, and the order
                       engine's tables. Survives restarts: accounts and sessions keep working.
    broker.json        {"pid", "port", "url", "host"}: written atomically once the server listens,
                       removed on a clean stop. Tests and the orchestrator read the port from it.
    paper_broker.log   one line per request (method, path without query, status, latency, key
                       fingerprint) plus lifecycle and errors. Never tokens, secrets or full keys.

Background threads: the order engine's ``advance`` every ADVANCE_INTERVAL wall seconds (orders
fill at the right simulated minute even when nobody calls) and the audit writer. Both stop on
``stop()``.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from kitefleet.calendar import NseCalendar, load_calendar
from kitefleet.clock import Clock, get_clock
from kitefleet.home import Home
from paper_broker.audit import AuditLog
from paper_broker.auth import Accounts
from paper_broker.db import Account, Database
from paper_broker.errors import order_error
from paper_broker.ratelimit import RateLimiter
from paper_broker.server import BrokerService, PaperHTTPServer

log = logging.getLogger("paper_broker")

ADVANCE_INTERVAL = 0.2


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


class NullEngine:
    """Stands in while paper_broker.engine does not exist: empty books, cash at its start value."""

    def advance(self, now: datetime | None = None) -> None:
        pass

    def ensure_account(self, account: Account) -> None:
        pass

    def _unavailable(self, *args: object) -> Any:
        raise order_error("The order engine is not available in this build.", 500)

    place_order = modify_order = cancel_order = place_gtt = get_gtt = modify_gtt = delete_gtt = _unavailable

    def orders(self, account: Account) -> list[dict[str, object]]:
        return []

    def order_history(self, account: Account, order_id: str) -> list[dict[str, object]]:
        return []

    order_trades = order_history

    def trades(self, account: Account) -> list[dict[str, object]]:
        return []

    def gtts(self, account: Account) -> list[dict[str, object]]:
        return []

    def holdings(self, account: Account) -> list[dict[str, object]]:
        return []

    def positions(self, account: Account) -> dict[str, object]:
        return {"net": [], "day": []}

    def margins(self, account: Account, segment: str | None) -> dict[str, object]:
        def seg(cash: float) -> dict[str, object]:
            return {
                "enabled": True, "net": cash,
                "available": {"adhoc_margin": 0.0, "cash": cash, "opening_balance": cash,
                              "live_balance": cash, "collateral": 0.0, "intraday_payin": 0.0},
                "utilised": {k: 0.0 for k in ("debits", "exposure", "m2m_realised", "m2m_unrealised",
                                              "option_premium", "payout", "span", "holding_sales", "turnover",
                                              "liquid_collateral", "stock_collateral", "delivery")},
            }

        both = {"equity": seg(account.starting_cash), "commodity": seg(0.0)}
        return both if segment is None else both[segment]

    def account_summary(self, account: Account) -> dict[str, object]:
        return {"cash": account.starting_cash, "holdings": [], "realised_pnl": 0.0, "unrealised_pnl": 0.0}


def _make_engine(db: Database, market: Any, calendar: NseCalendar, clock: Clock) -> Any:
    try:
        from paper_broker.engine import OrderEngine
    except ModuleNotFoundError as exc:
        if exc.name != "paper_broker.engine":
            raise
        log.warning("paper_broker.engine not found: orders are unavailable, books are empty")
        return NullEngine()
    return OrderEngine(db, market, calendar, clock)


def _make_market(config: BrokerConfig, calendar: NseCalendar) -> tuple[Any, Callable[[list[Any]], str]]:
    from paper_broker.market import Market
    from paper_broker.universe import instruments_csv

    scenarios = None
    if config.scenario is not None:
        from paper_broker.scenario import ScenarioSet

        scenarios = ScenarioSet.load(config.scenario)
    market = Market(calendar, seed=config.seed, scenarios=scenarios, symbols=config.symbols)
    return market, instruments_csv


def write_json_atomic(path: Path, payload: dict[str, object]) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(payload, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class PaperBroker:
    def __init__(self, config: BrokerConfig, clock: Clock | None = None) -> None:
        self.config = config
        self.clock = clock or get_clock()
        config.data_dir.mkdir(parents=True, exist_ok=True)
        now = self.clock.now()
        self.calendar = load_calendar(config.home.calendar_file, now.date())
        self.db = Database(config.data_dir / "paper.db")
        self.accounts = Accounts(self.db, config.home)
        self.market, instruments_csv = _make_market(config, self.calendar)
        self.engine = _make_engine(self.db, self.market, self.calendar, self.clock)
        self.audit = AuditLog(self.db)
        self.limiter = RateLimiter(enabled=config.rate_limits)
        self._reload_lock = threading.Lock()
        self.reload_accounts()
        self.service = BrokerService(
            accounts=self.accounts, market=self.market, engine=self.engine, clock=self.clock,
            limiter=self.limiter, audit=self.audit, instruments_csv=instruments_csv,
            on_reload=self.reload_accounts, info=self._info,
        )
        self.httpd = PaperHTTPServer((config.host, config.port), self.service)
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
        write_json_atomic(self.config.data_dir / "broker.json",
                          {"pid": os.getpid(), "port": self.port, "url": self.url, "host": self.config.host})
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
