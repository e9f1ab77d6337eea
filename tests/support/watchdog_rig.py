"""An in-process rig for the hourly-candle watchdog: the real paper broker (engine, market with a
pinned scenario, HTTP server) in threads of this process on 127.0.0.1:0, the real ``kiteconnect``
client inside the real workers.kite_client.KiteApi, a temp home with one paper user, a StateStore,
and one manual clock that the broker, the client and the watchdog all read. The test constructs
the real workers.watchdog.Watchdog and calls ``start()`` and ``poll(now)`` itself: no loop, no
sleeps, no hand-written book.

    rig = watchdog_rig(tmp_path, {"INFY": [["09:15", 1500], ...]}, start=at("09:16"))
    rig.buy("INFY", 10)
    wd = rig.watchdog()              # a new "process": new client, new store, new Watchdog
    rig.start(wd, at("13:20"))       # the clock moves to 13:20, then wd.start()
    rig.poll(wd, at("13:41"))        # the clock moves, wd.poll(now), the level thread waited for
    rig.sells("INFY")                # the order book, as a person sees it

Faults sit on the client's transport (a requests adapter mounted on the KiteConnect session), so
everything above the wire runs as in production; rules match a method and path:

* ``kill_before`` / ``kill_after``: a ``Killed`` (a BaseException no code path catches) is raised
  before the request leaves / after the broker answered: the watchdog dies there as a SIGKILL
  would leave it (what was flushed is on disk, nothing else); ``rig.watchdog()`` is the restart.
* ``lost_answer``: the request reaches the broker, its answer is lost (``requests.ReadTimeout``).
* ``answer``: the rig answers in Kite's error envelope (e.g. 429, 500) and the broker never sees it.
* ``move_to``: before the request leaves, the clock jumps (the market moved while it was in flight).
* ``hold``: the client gets a 500 and the request is kept; ``rig.deliver_held()`` sends it to the
  broker later (a request stuck on the way that arrives after all).
* ``before``: ``run()`` is called, then the request goes on.

Waits of wall time that production needs are shrunk where the Watchdog lets them be set:
``settle_grace_s`` (a constructor parameter), the client's retry back-off (KiteApi options), the
workers' shared rate limiter (generous per-second limits; the broker's limiter is off) and the
intent log's book polling after an unknown outcome (``unknown_poll_seconds``, 0: one look).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import requests
from kiteconnect import KiteConnect
from requests.adapters import HTTPAdapter

from kitefleet import clock as clock_module
from kitefleet.calendar import NseCalendar, load_calendar
from kitefleet.clock import IST, Clock
from kitefleet.home import Home
from kitefleet.settings import load_settings
from kitefleet.state import StateStore
from kitefleet.ticks import round_to_tick
from paper_broker.app import BrokerConfig, PaperBroker
from tests.support.broker import ensure_calendar, login_user
from tests.support.homes import make_home, write_env
from workers.intents import IntentLog
from workers.kite_client import KiteApi
from workers.ledger import ADOPTED, add_lot, ledger_of, lot
from workers.marketdata import MarketData
from workers.ratelimit import CLASSES, RateLimiter
from workers.watchdog import STATE_KEY, Watchdog

USER = "Som"
#: wall seconds the rig waits for the level thread's answer (it only reads local candles)
LEVEL_TIMEOUT_S = 30.0


class Killed(BaseException):
    """The process died here (raised by a ``kill_*`` fault); nothing in production catches it."""


class ManualClock(Clock):
    """Simulated time that moves only when the test moves it (forward only: the broker's engine
    processes the minutes between its high-water mark and now)."""

    simulated = True

    def __init__(self, start: datetime) -> None:
        self._now = start.astimezone(IST)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def set(self, moment: datetime) -> None:
        with self._lock:
            if moment < self._now:
                raise ValueError(f"the manual clock only moves forward: {moment} < {self._now}")
            self._now = moment.astimezone(IST)

    def sleep_until(self, target: datetime, *, max_wall: float | None = None,
                    stop: threading.Event | None = None) -> bool:
        raise AssertionError("nothing the rig drives may sleep on the clock: the test moves it")

    def describe(self) -> str:
        return f"manual {self.now().isoformat()}"


@dataclass
class Fault:
    method: str
    path: str
    action: str  # kill_before | kill_after | lost_answer | answer | move_to | hold | before
    times: int | None = 1
    status: int = 500
    error_type: str = "GeneralException"
    message: str = "Internal server error"
    to: datetime | None = None
    when: Callable[[], bool] | None = None
    run: Callable[[], object] | None = None


class FaultAdapter(HTTPAdapter):
    """The client's transport to the broker, with the rig's fault rules applied."""

    def __init__(self, rig: WatchdogRig) -> None:
        super().__init__()
        self.rig = rig

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        path = urlparse(request.url or "").path
        fault = self.rig.take_fault(str(request.method), path)
        if fault is None:
            return super().send(request, *args, **kwargs)
        self.rig.fired.append((fault.action, str(request.method), path))
        if fault.action == "kill_before":
            raise Killed(f"killed before {request.method} {path}")
        if fault.action == "hold":
            self.rig.held.append(request.copy())
        if fault.action in ("answer", "hold"):
            resp = requests.Response()
            resp.status_code = fault.status
            resp.headers["Content-Type"] = "application/json"
            resp._content = json.dumps({"status": "error", "message": fault.message, "data": None,
                                        "error_type": fault.error_type}).encode()
            resp.url, resp.request = str(request.url), request
            return resp
        if fault.action == "move_to":
            assert fault.to is not None
            self.rig.clock.set(fault.to)
            return super().send(request, *args, **kwargs)
        if fault.action == "before":
            assert fault.run is not None
            fault.run()
            return super().send(request, *args, **kwargs)
        resp = super().send(request, *args, **kwargs)
        if fault.action == "kill_after":
            raise Killed(f"killed after {request.method} {path} was answered {resp.status_code}")
        if fault.action == "lost_answer":
            raise requests.ReadTimeout(f"read timed out (the rig dropped the answer to {request.method} {path})")
        raise AssertionError(f"unknown fault action {fault.action!r}")


@dataclass
class WatchdogRig:
    home: Home
    broker: PaperBroker
    clock: ManualClock
    calendar: NseCalendar
    user: str = USER
    faults: list[Fault] = field(default_factory=list)
    fired: list[tuple[str, str, str]] = field(default_factory=list)
    watchdogs: list[Watchdog] = field(default_factory=list)
    held: list[requests.PreparedRequest] = field(default_factory=list)
    _person: KiteConnect | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # --- faults --------------------------------------------------------------------------------
    def fault(self, method: str, path: str, action: str, **kwargs: Any) -> Fault:
        rule = Fault(method, path, action, **kwargs)
        with self._lock:
            self.faults.append(rule)
        return rule

    def take_fault(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for rule in self.faults:
                if rule.method != method or not path.startswith(rule.path):
                    continue
                if rule.times is not None and rule.times <= 0:
                    continue
                if rule.when is not None and not rule.when():
                    continue
                if rule.times is not None:
                    rule.times -= 1
                return rule
        return None

    def deliver_held(self) -> None:
        """Send the requests a ``hold`` fault kept, straight to the broker (answers dropped)."""
        with requests.Session() as session:
            while self.held:
                session.send(self.held.pop(0), timeout=10).raise_for_status()

    # --- the worker side -----------------------------------------------------------------------
    def kite_api(self) -> KiteApi:
        """The worker's client, as a new process builds it (session.json adopted when usable)."""
        settings = load_settings(self.home, self.user)
        limiter = RateLimiter(self.home.user_data_dir(self.user) / "ratelimit",
                              per_second=dict.fromkeys(CLASSES, 1000))
        api = KiteApi(user=self.user, home=self.home, settings=settings, limiter=limiter,
                      log=logging.getLogger(f"rig.kite.{self.user}"), backoff_initial=0.0, backoff_max=0.0)
        api._kite.reqsession.mount(self.broker.url, FaultAdapter(self))
        api.connect()
        return api

    def store(self) -> StateStore:
        return StateStore(self.home, self.user, "paper")

    def watchdog(self, *, rule: str = "hourly_low", settle_grace_s: float = 0.0, poll_seconds: float = 30.0,
                 dry_run: bool = False) -> Watchdog:
        """A new Watchdog over this home's state, as a freshly started process would build it
        (the previous ones are closed: their process is gone)."""
        self.close_watchdogs()
        kite = self.kite_api()
        settings = load_settings(self.home, self.user)
        store = self.store()
        wd = Watchdog(user=self.user, kite=kite, market=MarketData(self.home, settings.data_source, kite,
                                                                   calendar=self.calendar),
                      store=store, calendar=self.calendar, clock=self.clock, rule=rule, poll_seconds=poll_seconds,
                      dry_run=dry_run, log=logging.getLogger(f"rig.watchdog.{self.user}"),
                      stop=threading.Event(), settle_grace_s=settle_grace_s)
        # One look at the book after an unknown outcome instead of 6 wall seconds of them.
        wd.intents = IntentLog(store, unknown_poll_seconds=0.0, unknown_poll_interval=0.0)
        self.watchdogs.append(wd)
        return wd

    def close_watchdogs(self) -> None:
        for wd in self.watchdogs:
            wd.stop.set()
            wd.refresher.close(2.0)
        self.watchdogs.clear()

    def start(self, wd: Watchdog, moment: datetime) -> None:
        self.clock.set(moment)
        wd.start()

    def poll(self, wd: Watchdog, moment: datetime) -> None:
        """One poll at ``moment``; then wait for the candles it asked the level thread for, so
        that the next poll applies them (production: a poll or two later)."""
        self.clock.set(moment)
        wd.poll(moment)
        self.wait_levels(wd)

    @staticmethod
    def wait_levels(wd: Watchdog) -> None:
        refresher = wd.refresher
        deadline = time.monotonic() + LEVEL_TIMEOUT_S
        # Every request in flight has its answer queued (in flight is cleared only by drain()).
        while refresher._done.qsize() < len(refresher._inflight):
            if time.monotonic() > deadline:
                raise AssertionError(f"level thread did not answer within {LEVEL_TIMEOUT_S:g} s")
            time.sleep(0.005)

    # --- what a person sees --------------------------------------------------------------------
    @property
    def person(self) -> KiteConnect:
        """A separate login of the same user (no faults): the test's view of the account."""
        if self._person is None:
            self._person = login_user(self.broker.url, self.home, self.user)
        return self._person

    def sells(self, symbol: str) -> list[dict[str, Any]]:
        return [o for o in self.person.orders()
                if o["tradingsymbol"] == symbol and o["transaction_type"] == "SELL"]

    def ltp(self, symbol: str) -> float:
        return float(self.person.ltp(f"NSE:{symbol}")[f"NSE:{symbol}"]["last_price"])

    def buy(self, symbol: str, qty: int, *, owned: bool = True) -> str:
        """Buy ``qty`` (a marketable LIMIT); ``owned``: the bot's shares (a lot in the ledger, as
        an entry or adopt leaves), else a person's (MANAGE_SCOPE=own leaves them alone)."""
        ltp = self.ltp(symbol)
        price = round_to_tick(ltp * 1.01, 0.1, "ceil")
        order_id = str(self.person.place_order("regular", exchange="NSE", tradingsymbol=symbol,
                                               transaction_type="BUY", quantity=qty, product="CNC",
                                               order_type="LIMIT", price=price))
        if owned:
            with self.store().transaction() as state:
                add_lot(ledger_of(state), symbol, lot(qty, ltp, self.clock.now().date(), ADOPTED))
        return order_id

    def stop_gtt(self, symbol: str, qty: int, trigger: float, limit: float) -> int:
        """A stop GTT placed by hand (the bot's stop record is not written: see workers.gtt)."""
        answer = self.person.place_gtt("single", symbol, "NSE", [trigger], self.ltp(symbol),
                                       [{"exchange": "NSE", "tradingsymbol": symbol, "transaction_type": "SELL",
                                         "quantity": qty, "order_type": "LIMIT", "product": "CNC",
                                         "price": limit}])
        return int(answer["trigger_id"])

    def audit(self, since: datetime) -> list[dict[str, Any]]:
        """The broker's request log since ``since`` (simulated time), this user's key only."""
        api_key = load_settings(self.home, self.user).api_key
        r = requests.get(f"{self.broker.url}/paper/audit", params={"since": since.isoformat(), "api_key": api_key},
                         timeout=10)
        r.raise_for_status()
        return list(r.json()["data"])

    # --- the watchdog's state ------------------------------------------------------------------
    def day_state(self, day: date) -> dict[str, Any]:
        return dict((self.store().read().get(STATE_KEY) or {}).get(day.isoformat()) or {})

    def exits(self, day: date, symbol: str) -> list[dict[str, Any]]:
        return list(((self.day_state(day).get("symbols") or {}).get(symbol) or {}).get("exits") or [])

    def intent(self, tag: str) -> dict[str, Any]:
        return dict((self.store().read().get("intents") or {}).get(tag) or {})


@contextmanager
def watchdog_rig(root: Path, paths: dict[str, list[list[Any]]], day: date, start: datetime,
                 user: str = USER) -> Iterator[WatchdogRig]:
    """A rig whose market pins ``paths`` (symbol -> scenario waypoints) on ``day``; the clock
    starts at ``start``. Everything is stopped on exit."""
    home = make_home(root / "home")
    write_env(home, user)
    ensure_calendar(home, day)
    scenario = root / "scenario.json"
    scenario.write_text(json.dumps({"paths": [{"symbol": s, "date": day.isoformat(), "waypoints": w}
                                              for s, w in paths.items()]}), encoding="utf-8")
    clock = ManualClock(start)
    previous = clock_module.get_clock()
    clock_module.set_clock(clock)  # the client's session expiry and the limiter's day read it
    broker = PaperBroker(BrokerConfig(home=home, data_dir=home.paper_dir, port=0, symbols=sorted(paths),
                                      scenario=scenario, rate_limits=False), clock=clock)
    broker.start()
    rig = WatchdogRig(home, broker, clock, load_calendar(home.calendar_file, day), user)
    try:
        write_env(home, user, KITE_ROOT=broker.url)  # same key, now pointing at this broker
        yield rig
    finally:
        rig.close_watchdogs()
        broker.stop()
        clock_module.set_clock(previous)
