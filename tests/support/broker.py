"""Run the real paper broker as a subprocess for tests, and log in to it with the real client.

    from tests.support.broker import broker_factory, login_user, start_broker  # noqa: F401 (fixture)

    def test_something(tmp_path, broker_factory):
        home = make_home(tmp_path / "home")
        write_env(home, "Som")
        broker = broker_factory(home, clock=clock_file(tmp_path / "clock", IST_DATETIME), symbols=["INFY"])
        kite = broker.kite("Som")            # a logged-in kiteconnect.KiteConnect (real login flow)
        kite.ltp("NSE:INFY")
        broker.audit(api_key=...)            # GET /paper/audit

``start_broker`` starts ``python -m paper_broker --port 0`` in the given home (data dir
``<home>/data/paper`` unless told otherwise), waits (polling with a deadline) until the
``broker.json`` written by *this* process names its port and ``/paper/health`` answers, and
returns a ``RunningBroker``; ``stop()`` sends SIGTERM and waits. Rate limits are off unless
``rate_limits=True``. The NSE calendar export is copied into the home from a per-test-process
cache, so each broker start does not rebuild it.
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
import requests
from kiteconnect import KiteConnect

from kitefleet.clock import clock_from_value, write_clock_file
from kitefleet.home import Home
from kitefleet.settings import load_settings
from tests.support.homes import PROJECT_ROOT, VENV_PYTHON, child_env

STARTUP_TIMEOUT = 60.0
_calendar_cache: dict[date, str] = {}


def clock_file(path: Path, start: datetime, speed: float = 1.0) -> str:
    """Write a clock file and return the ``TRADER_CLOCK`` value naming it (``file:PATH``)."""
    write_clock_file(path, start, speed)
    return f"file:{path}"


def ensure_calendar(home: Home, around: date) -> None:
    """Put an NSE calendar export covering ``around`` into the home (built once per test process)."""
    path = home.calendar_file
    if path.exists():
        return
    text = _calendar_cache.get(around)
    if text is None:
        from kitefleet.calendar import export_calendar

        path.parent.mkdir(parents=True, exist_ok=True)
        export_calendar(path, around)
        _calendar_cache[around] = path.read_text(encoding="utf-8")
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def login(url: str, api_key: str, api_secret: str, *, timeout: float = 7.0) -> KiteConnect:
    """The real Kite login flow against a paper broker: /connect/login → request_token →
    generate_session (checksum) → a KiteConnect holding the access token."""
    r = requests.get(f"{url}/connect/login", params={"api_key": api_key, "v": "3"}, allow_redirects=False,
                     timeout=timeout)
    if r.status_code != 302:
        raise RuntimeError(f"login redirect failed: HTTP {r.status_code}: {r.text[:200]}")
    request_token = parse_qs(urlparse(r.headers["Location"]).query)["request_token"][0]
    kite = KiteConnect(api_key=api_key, root=url, timeout=timeout)
    session = kite.generate_session(request_token, api_secret=api_secret)
    kite.set_access_token(session["access_token"])
    return kite


def login_user(url: str, home: Home, user: str) -> KiteConnect:
    settings = load_settings(home, user)
    return login(url, settings.api_key, settings.api_secret)


@dataclass
class RunningBroker:
    proc: subprocess.Popen[bytes]
    home: Home
    data_dir: Path
    port: int
    url: str
    argv: list[str]
    env: dict[str, str]
    session: requests.Session = field(default_factory=requests.Session)

    def __post_init__(self) -> None:
        # A broker started with --allow-remote wants its admin token on every /paper/ route.
        if self.env.get("PAPER_ADMIN_TOKEN"):
            self.session.headers["X-Paper-Admin-Token"] = self.env["PAPER_ADMIN_TOKEN"]

    # --- plain HTTP ----------------------------------------------------------------------------
    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", 10)
        return self.session.request(method, self.url + path, **kwargs)

    def admin(self, method: str, path: str, **kwargs: Any) -> Any:
        r = self.request(method, path, **kwargs)
        r.raise_for_status()
        return r.json()["data"]

    def health(self) -> dict[str, Any]:
        return self.admin("GET", "/paper/health")  # type: ignore[no-any-return]

    def now(self) -> datetime:
        return datetime.fromisoformat(self.health()["now"])

    def audit(self, *, since: datetime | str | None = None,
              api_key: str | None = None) -> list[dict[str, Any]]:
        params = {}
        if since is not None:
            params["since"] = since.isoformat() if isinstance(since, datetime) else since
        if api_key is not None:
            params["api_key"] = api_key
        return self.admin("GET", "/paper/audit", params=params)  # type: ignore[no-any-return]

    def accounts(self) -> list[dict[str, Any]]:
        return self.admin("GET", "/paper/accounts")  # type: ignore[no-any-return]

    def reload_accounts(self) -> dict[str, Any]:
        return self.admin("POST", "/paper/reload-accounts")  # type: ignore[no-any-return]

    # --- the real client -----------------------------------------------------------------------
    def kite(self, user: str) -> KiteConnect:
        """A KiteConnect logged in as ``user`` (its env file in this home) by the real login flow."""
        return login_user(self.url, self.home, user)

    def login(self, api_key: str, api_secret: str) -> KiteConnect:
        return login(self.url, api_key, api_secret)

    # --- lifecycle -----------------------------------------------------------------------------
    @property
    def log_file(self) -> Path:
        return self.data_dir / "paper_broker.log"

    def log_text(self) -> str:
        try:
            return self.log_file.read_text(encoding="utf-8")
        except FileNotFoundError:
            return ""

    def output(self) -> str:
        try:
            return (self.data_dir / "broker.out").read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM, then wait; SIGKILL only if it does not stop in time. Returns the exit code."""
        self.session.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return int(self.proc.returncode)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


def start_broker(home: Home, *, clock: str | None = None, scenario: Path | None = None,
                 symbols: list[str] | None = None, rate_limits: bool = False, seed: int = 1,
                 data_dir: Path | None = None, port: int = 0, extra_args: list[str] | None = None,
                 extra_env: dict[str, str] | None = None, timeout: float = STARTUP_TIMEOUT) -> RunningBroker:
    """Start the paper broker in a subprocess and wait until it answers ``/paper/health``.

    ``clock`` is a ``TRADER_CLOCK`` value (e.g. from ``clock_file``); None means the real clock.
    """
    data_dir = (data_dir or home.paper_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    now = clock_from_value(clock).now()
    ensure_calendar(home, now.date())
    argv = [str(VENV_PYTHON), "-m", "paper_broker", "--port", str(port), "--home", str(home.root),
            "--data-dir", str(data_dir), "--seed", str(seed)]
    if scenario is not None:
        argv += ["--scenario", str(scenario)]
    if symbols:
        argv += ["--symbols", ",".join(symbols)]
    if not rate_limits:
        argv.append("--no-rate-limits")
    argv += extra_args or []
    env = child_env(home, **(extra_env or {}))
    env["PYTHONPATH"] = str(PROJECT_ROOT)
    if clock:
        env["TRADER_CLOCK"] = clock
    with open(data_dir / "broker.out", "ab") as out:
        proc = subprocess.Popen(argv, cwd=PROJECT_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    info_path = data_dir / "broker.json"
    deadline = time.monotonic() + timeout
    broker: RunningBroker | None = None
    try:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                text = (data_dir / "broker.out").read_text(encoding="utf-8", errors="replace")
                raise RuntimeError(
                    f"paper broker exited with {proc.returncode} during start:\n{text[-3000:]}")
            if broker is None:
                with contextlib.suppress(OSError, ValueError):
                    info = json.loads(info_path.read_text(encoding="utf-8"))
                    if info.get("pid") == proc.pid:
                        broker = RunningBroker(proc, home, data_dir, int(info["port"]), str(info["url"]),
                                               argv, env)
            if broker is not None:
                with contextlib.suppress(requests.RequestException):
                    if broker.request("GET", "/paper/health", timeout=2).status_code == 200:
                        return broker
            time.sleep(0.05)
        raise RuntimeError(f"paper broker did not answer within {timeout:.0f}s")
    except BaseException:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        raise


@contextlib.contextmanager
def running_broker(home: Home, **kwargs: Any) -> Iterator[RunningBroker]:
    broker = start_broker(home, **kwargs)
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def broker_factory() -> Iterator[Callable[..., RunningBroker]]:
    """``broker_factory(home, **start_broker_kwargs)``; every broker started is stopped at teardown."""
    started: list[RunningBroker] = []

    def start(home: Home, **kwargs: Any) -> RunningBroker:
        broker = start_broker(home, **kwargs)
        started.append(broker)
        return broker

    yield start
    for broker in started:
        broker.stop()
