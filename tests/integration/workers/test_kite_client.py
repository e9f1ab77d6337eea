"""The worker's Kite client against the real paper broker in a process (real kiteconnect, real HTTP, file clock)."""

from __future__ import annotations

import json
import stat
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from kitefleet import clock
from kitefleet.clock import IST, clock_from_value, write_clock_file
from kitefleet.errors import TokenError
from kitefleet.exitcodes import ExitCode
from kitefleet.home import Home
from kitefleet.settings import load_settings
from tests.support.broker import RunningBroker, broker_factory, clock_file  # noqa: F401 (fixture)
from tests.support.homes import make_home, write_env
from tests.support.jobs import MARKET_OPEN, paper_home, point_users_at, run_job
from workers.broker_errors import BrokerRejected
from workers.kite_client import KiteApi, build_kite
from workers.ratelimit import RateLimiter
from workers.session_file import read_session, save_session, session_expiry


@pytest.fixture
def paper(tmp_path: Path, broker_factory: Callable[..., RunningBroker]  # noqa: F811
          ) -> Iterator[tuple[Home, RunningBroker, Path]]:
    home = paper_home(tmp_path / "home")
    clock_path = tmp_path / "clock"
    value = clock_file(clock_path, MARKET_OPEN)
    broker = broker_factory(home, clock=value, symbols=["INFY", "TCS"])
    point_users_at(home, broker.url)
    clock.set_clock(clock_from_value(value))
    yield home, broker, clock_path
    clock.set_clock(None)


def test_paper_login_writes_a_private_session_that_the_next_process_reuses(paper) -> None:
    home, broker, _ = paper
    settings = load_settings(home, "Som")
    kite = build_kite(home, settings)
    assert kite.logins == 1
    assert kite.profile()["user_name"] == "Som"
    path = home.session_file("Som")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    data = json.loads(path.read_text())
    assert set(data) >= {"access_token", "login_time", "expires_at"}
    assert datetime.fromisoformat(data["expires_at"]) == datetime(2026, 3, 5, 6, 0, tzinfo=IST)
    assert data["mode"] == "paper" and data["root"] == broker.url

    again = build_kite(home, settings)
    assert again.logins == 0  # adopted the session file
    assert again.holdings() == []
    assert [r["path"] for r in broker.audit(api_key=settings.api_key)].count("/session/token") == 1


def test_expired_paper_session_is_renewed_mid_job_and_at_start(paper) -> None:
    home, broker, clock_path = paper
    settings = load_settings(home, "Som")
    kite = build_kite(home, settings)
    first = read_session(home, "Som")
    assert first is not None
    # Next morning: the broker (same clock file) now refuses the token with TokenException.
    write_clock_file(clock_path, MARKET_OPEN + timedelta(days=1))
    deadline = time.monotonic() + 10
    while clock.now() < MARKET_OPEN + timedelta(days=1) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert kite.margins()["equity"]["enabled"] is True  # renewed once, call repeated
    assert kite.logins == 2
    second = read_session(home, "Som")
    assert second is not None and second["access_token"] != first["access_token"]
    statuses = [(r["path"], r["status"]) for r in broker.audit(api_key=settings.api_key)]
    assert ("/user/margins", 403) in statuses and statuses[-1] == ("/user/margins", 200)

    # A process starting after the jump with an expired file logs in before its first call.
    save_session(home, "Som", access_token=second["access_token"], login_time=MARKET_OPEN,
                 expires_at=MARKET_OPEN + timedelta(hours=1), mode="paper", root=broker.url)
    fresh = build_kite(home, settings)
    assert fresh.logins == 1
    assert fresh.positions() == {"net": [], "day": []}


def test_processes_of_one_user_share_one_login(paper) -> None:
    home, broker, _ = paper
    settings = load_settings(home, "Som")
    errors: list[BaseException] = []

    def connect() -> None:
        try:
            build_kite(home, settings).profile()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=connect) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    assert [r["path"] for r in broker.audit(api_key=settings.api_key)].count("/session/token") == 1


def _live_home(tmp_path: Path, **extra: object) -> Home:
    home = make_home(tmp_path / "live")
    write_env(home, "Som", mode="live", **extra)
    return home


def test_expired_live_session_ends_the_job_with_the_token_code(tmp_path: Path) -> None:
    home = _live_home(tmp_path)
    login = clock.now() - timedelta(days=2)  # the real clock: live mode refuses a simulated one
    save_session(home, "Som", access_token="livetoken0123456789", login_time=login,
                 expires_at=session_expiry(login), mode="live")
    done = run_job(home, "Som", "connect")
    assert done.returncode == ExitCode.TOKEN, done.stderr
    assert "log in again: orchestrator.py login Som" in done.stderr
    assert "livetoken0123456789" not in done.stderr
    log_text = (home.user_logs_dir("Som") / "connect.log").read_text()
    assert "log in again" in log_text and "livetoken0123456789" not in log_text

    (home.session_file("Som")).unlink()
    done = run_job(home, "Som", "connect")
    assert done.returncode == ExitCode.TOKEN and "no session file" in done.stderr


def test_a_corrupt_live_session_file_ends_the_job_with_the_token_code(tmp_path: Path) -> None:
    home = _live_home(tmp_path)
    path = home.session_file("Som")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('{"access_token": "livetokenCUT0123')
    done = run_job(home, "Som", "connect")
    assert done.returncode == ExitCode.TOKEN, done.stderr
    assert "data/Som/session.json is unreadable" in done.stderr and "livetokenCUT" not in done.stderr
    assert "livetokenCUT" not in (home.user_logs_dir("Som") / "connect.log").read_text()


def test_a_corrupt_paper_session_file_is_replaced_by_a_new_login(paper) -> None:
    home, _broker, _ = paper
    path = home.session_file("Som")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('{"access_token": ')
    kite = build_kite(home, load_settings(home, "Som"))
    assert kite.logins == 1 and kite.profile()["user_name"] == "Som"
    assert read_session(home, "Som") is not None


def test_http_429_is_retried_with_backoff(tmp_path: Path, broker_factory) -> None:  # noqa: F811
    home = paper_home(tmp_path / "home")
    value = clock_file(tmp_path / "clock", MARKET_OPEN)
    broker = broker_factory(home, clock=value, symbols=["INFY"], rate_limits=True)
    point_users_at(home, broker.url)
    clock.set_clock(clock_from_value(value))
    settings = load_settings(home, "Som")
    # A limiter that allows far more than Kite's 1 quote/s provokes real 429s from the broker.
    loose = RateLimiter(tmp_path / "loose", per_second={"quote": 100, "historical": 100, "orders": 100,
                                                          "other": 100})
    kite = KiteApi(user="Som", home=home, settings=settings, limiter=loose, backoff_initial=0.3,
                   backoff_max=1.5, attempts=8)
    kite.connect()
    for _ in range(4):
        assert kite.ltp("NSE:INFY")["NSE:INFY"]["last_price"] > 0
    statuses = [r["status"] for r in broker.audit(api_key=settings.api_key) if r["path"] == "/quote/ltp"]
    assert statuses.count(200) == 4 and statuses.count(429) >= 1


def test_broker_refusals_map_onto_permanent_errors(paper) -> None:
    home, _, _ = paper
    kite = build_kite(home, load_settings(home, "Som"))
    with pytest.raises(BrokerRejected) as info:
        kite.historical_data(408065, "2026-03-01", "2026-03-02", "fortnight")
    assert info.value.error_type == "InputException" and info.value.exit_code == ExitCode.JOB_FAILED
    with pytest.raises(BrokerRejected):
        kite.place_order("regular", exchange="NSE", tradingsymbol="INFY", transaction_type="BUY", quantity=0,
                         product="CNC", order_type="LIMIT", price=100.0)


def test_a_live_process_adopts_the_new_morning_session_instead_of_ending(tmp_path: Path) -> None:
    """Live: the token dies (06:00), 'orchestrator.py login' writes a new session.json while a
    long-running job runs; the next refused call switches to it. The broker here is the paper
    broker standing in for Kite (real HTTP, real client): a live user can only be pointed at it
    from the inside, since live always uses Kite's own root."""
    from tests.support.broker import login, start_broker

    broker_home = make_home(tmp_path / "broker")
    write_env(broker_home, "Pap", api_key="sharedkey01", api_secret="shared-secret-01")
    live_home = _live_home(tmp_path, api_key="sharedkey01", api_secret="shared-secret-01")
    broker = start_broker(broker_home)
    try:
        old = login(broker.url, "sharedkey01", "shared-secret-01")
        now = clock.now()
        save_session(live_home, "Som", access_token=old.access_token, login_time=now,
                     expires_at=session_expiry(now), mode="live")
        api = build_kite(live_home, load_settings(live_home, "Som"))
        api._kite.root = broker.url  # the one seam: live always talks to Kite's own root
        assert api.profile()["user_id"]
        old.invalidate_access_token()  # the token dies
        new = login(broker.url, "sharedkey01", "shared-secret-01")  # the morning login, in another process
        save_session(live_home, "Som", access_token=new.access_token, login_time=now,
                     expires_at=session_expiry(now), mode="live")
        assert api.profile()["user_id"]  # refused once, then the new session from the file
        assert api._kite.access_token == new.access_token
        new.invalidate_access_token()  # nothing newer in the file: the token error ends the job
        with pytest.raises(TokenError):
            api.profile()
    finally:
        broker.stop()
