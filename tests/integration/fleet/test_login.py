"""``orchestrator.py login`` end to end against the real paper broker, through real processes and
the real kiteconnect client."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
import requests
from kiteconnect import KiteConnect

from kitefleet.clock import IST
from kitefleet.exitcodes import ExitCode
from kitefleet.home import Home
from kitefleet.settings import load_settings
from tests.support.broker import RunningBroker, broker_factory, clock_file  # noqa: F401 (fixture)
from tests.support.homes import PROJECT_ROOT, child_env, make_home, write_env

START = datetime(2026, 11, 25, 8, 30, tzinfo=IST)


def orchestrator(home: Home, *args: str, stdin: str = "", clock: str | None = None,
                 timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = child_env(home, **({"TRADER_CLOCK": clock} if clock else {}))
    return subprocess.run([sys.executable, str(PROJECT_ROOT / "orchestrator.py"), *args], env=env, input=stdin,
                          capture_output=True, text=True, timeout=timeout, cwd=str(home.root))


@pytest.fixture
def paper(tmp_path: Path, broker_factory: Callable[..., RunningBroker]) -> tuple[Home, RunningBroker, str]:  # noqa: F811
    home = make_home(tmp_path / "home")
    clock = clock_file(tmp_path / "clock", START)
    broker = broker_factory(home, clock=clock, symbols=["INFY"])
    write_env(home, "Som", KITE_ROOT=broker.url)
    write_env(home, "Sai", KITE_ROOT=broker.url)
    broker.reload_accounts()
    return home, broker, clock


def _session(home: Home, user: str) -> dict[str, Any]:
    path = home.session_file(user)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    return json.loads(path.read_text())  # type: ignore[no-any-return]


def _secrets(home: Home, user: str) -> list[str]:
    s = load_settings(home, user)
    return [s.api_secret]


def test_paper_login_writes_a_working_session(paper: tuple[Home, RunningBroker, str]) -> None:
    home, broker, clock = paper
    proc = orchestrator(home, "login", "Som", clock=clock)
    assert proc.returncode == 0, proc.stderr
    data = _session(home, "Som")
    assert {"access_token", "login_time", "expires_at"} <= set(data)
    expires = datetime.fromisoformat(data["expires_at"])
    assert expires == datetime(2026, 11, 26, 6, 0, tzinfo=IST)
    for hidden in [data["access_token"], *_secrets(home, "Som")]:
        assert hidden not in proc.stdout + proc.stderr
    assert "2026-11-26T06:00:00+05:30" in proc.stdout
    kite = KiteConnect(api_key=load_settings(home, "Som").api_key, root=broker.url)
    kite.set_access_token(data["access_token"])
    assert kite.profile()["user_id"]


def test_login_all(paper: tuple[Home, RunningBroker, str]) -> None:
    home, _broker, clock = paper
    proc = orchestrator(home, "login", "--all", "--json", clock=clock)
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert [(r["user"], r["ok"]) for r in rows] == [("Sai", True), ("Som", True)]
    assert _session(home, "Sai")["access_token"] != _session(home, "Som")["access_token"]


def _fresh_request_token(broker: RunningBroker, home: Home, user: str) -> str:
    r = requests.get(f"{broker.url}/connect/login", params={"api_key": load_settings(home, user).api_key, "v": 3},
                     allow_redirects=False, timeout=10)
    assert r.status_code == 302
    return parse_qs(urlparse(r.headers["Location"]).query)["request_token"][0]


def test_manual_flow_with_pasted_redirect_url(paper: tuple[Home, RunningBroker, str]) -> None:
    home, broker, clock = paper
    token = _fresh_request_token(broker, home, "Som")
    redirect = f"https://example.invalid/kite?action=login&type=login&status=success&request_token={token}"
    proc = orchestrator(home, "login", "Som", "--manual", stdin=redirect + "\n", clock=clock)
    assert proc.returncode == 0, proc.stderr
    assert "/connect/login?api_key=" in proc.stderr  # the login URL is shown
    assert token not in proc.stdout + proc.stderr  # never echoed
    assert _session(home, "Som")["mode"] == "paper"


def test_wrong_request_token_is_refused_and_keeps_the_old_session(paper: tuple[Home, RunningBroker, str]) -> None:
    home, _broker, clock = paper
    assert orchestrator(home, "login", "Som", clock=clock).returncode == 0
    before = home.session_file("Som").read_bytes()
    proc = orchestrator(home, "login", "Som", "--request-token", "WrongToken123", clock=clock)
    assert proc.returncode == ExitCode.TOKEN, proc.stderr
    assert "refused the request token" in proc.stderr
    assert home.session_file("Som").read_bytes() == before
    proc = orchestrator(home, "login", "Som", "--manual", stdin="\n", clock=clock)
    assert proc.returncode == ExitCode.USAGE and "no request token" in proc.stderr


def test_live_user_with_simulated_clock_is_refused(paper: tuple[Home, RunningBroker, str]) -> None:
    home, _broker, clock = paper
    write_env(home, "Liv", mode="live")
    proc = orchestrator(home, "login", "Liv", "--request-token", "abcdef123", clock=clock)
    assert proc.returncode == ExitCode.CONFIG and "simulated clock" in proc.stderr
    assert not home.session_file("Liv").exists()


def test_unknown_user_and_bad_usage(tmp_path: Path) -> None:
    home = make_home(tmp_path / "home")
    assert orchestrator(home, "login", "Nobody").returncode == ExitCode.USAGE
    assert orchestrator(home, "login").returncode == ExitCode.USAGE
    assert orchestrator(home, "login", "--all", "--request-token", "x").returncode == ExitCode.USAGE


def test_running_scheduler_picks_up_a_new_login(paper: tuple[Home, RunningBroker, str], tmp_path: Path) -> None:
    """A job fails for an expired session (exit 5) under a running scheduler; ``orchestrator.py login``
    writes a new session; the same scheduler, not restarted, runs the job again and it succeeds."""
    import time as _time
    from datetime import time as dtime

    from kitefleet import clock as clock_module
    from kitefleet.calendar import read_calendar
    from workers.daemon import Scheduler
    from workers.schedule import Plan
    from workers.session_file import save_session

    home, broker, clock_value = paper
    yesterday = START - timedelta(days=1)
    save_session(home, "Som", access_token="ExpiredToken0001", login_time=yesterday,
                 expires_at=START.replace(hour=6, minute=0), mode="paper", root=broker.url)
    script = (
        "import json, sys\n"
        "from kiteconnect import KiteConnect, exceptions as kex\n"
        f"s = json.load(open({str(home.session_file('Som'))!r}))\n"
        f"k = KiteConnect({load_settings(home, 'Som').api_key!r}, root={broker.url!r})\n"
        "k.set_access_token(s['access_token'])\n"
        "try:\n    k.profile()\nexcept kex.TokenException:\n    sys.exit(5)\n"
    )
    now = START.replace(hour=9, minute=0)
    clock_module.set_clock(clock_module.SimulatedClock(clock_module.parse_spec(now.isoformat())))
    plan = Plan({"pattern_daily": (dtime(9, 0),)}, paper=False)
    sched = Scheduler(home, "Som", plan, read_calendar(home.calendar_file), mode="paper",
                      launch=lambda job: subprocess.Popen([sys.executable, "-c", script], start_new_session=True),
                      stop_grace=2.0)

    def until(pred: Callable[[], bool], what: str, when: datetime) -> None:
        deadline = _time.monotonic() + 30
        while not pred():
            assert _time.monotonic() < deadline, what
            sched.loop_once(when)
            _time.sleep(0.02)

    sched.initialize(now)
    try:
        sched.loop_once(now)
        until(lambda: sched.state == "waiting for login", "the token exit", now)
        later = now + timedelta(minutes=5)
        sched.loop_once(later)
        assert not sched.tracked  # no blind retry while the session is still the expired one
        assert orchestrator(home, "login", "Som", clock=clock_value).returncode == 0
        until(lambda: sched.records["pattern_daily"].runs_today == 2 and not sched.tracked, "the rerun", later)
        assert sched.records["pattern_daily"].last_exit == 0
    finally:
        sched.shutdown(now)
