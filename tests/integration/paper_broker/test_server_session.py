"""Sessions over time and restarts: 06:00 expiry by a clock-file jump, restart persistence, account
reload, clean SIGTERM shutdown. Each test runs its own broker subprocess."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest
from kiteconnect import exceptions as kex

from kitefleet.clock import IST, write_clock_file
from tests.support.broker import RunningBroker, broker_factory, clock_file  # noqa: F401 (fixture)
from tests.support.homes import make_home, write_env

LOGIN_AT = datetime(2026, 11, 25, 15, 0, tzinfo=IST)
FROZEN = 1e-6


def test_token_expires_at_six_next_morning(tmp_path: Path, broker_factory: Callable[..., RunningBroker]) -> None:  # noqa: F811
    home = make_home(tmp_path / "home")
    write_env(home, "Som")
    clock = tmp_path / "clock"
    broker = broker_factory(home, clock=clock_file(clock, LOGIN_AT, speed=FROZEN), symbols=["INFY"])
    kite = broker.kite("Som")
    expired: list[int] = []
    kite.set_session_expiry_hook(lambda: expired.append(1))

    write_clock_file(clock, datetime(2026, 11, 26, 5, 59, 59, tzinfo=IST), speed=FROZEN)
    _wait_for_broker_now(broker, datetime(2026, 11, 26, 5, 59, 59, tzinfo=IST))
    assert kite.profile()["user_name"] == "Som"
    assert kite.ltp("NSE:INFY")

    write_clock_file(clock, datetime(2026, 11, 26, 6, 0, 0, tzinfo=IST), speed=FROZEN)
    _wait_for_broker_now(broker, datetime(2026, 11, 26, 6, 0, 0, tzinfo=IST))
    for call in (kite.profile, kite.holdings, lambda: kite.ltp("NSE:INFY")):
        with pytest.raises(kex.TokenException) as info:
            call()
        assert info.value.code == 403
    assert expired == [1, 1, 1]
    # A new login that morning works until 06:00 the day after.
    again = broker.kite("Som")
    assert again.profile()["user_name"] == "Som"
    write_clock_file(clock, datetime(2026, 11, 27, 5, 0, tzinfo=IST), speed=FROZEN)
    _wait_for_broker_now(broker, datetime(2026, 11, 27, 5, 0, tzinfo=IST))
    assert again.profile()["user_name"] == "Som"


def _wait_for_broker_now(broker: RunningBroker, target: datetime) -> None:
    """The broker re-reads the clock file on change; poll until it reports the new time."""
    import time

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if abs((broker.now() - target).total_seconds()) < 1:
            return
        time.sleep(0.02)
    raise AssertionError(f"broker clock never reached {target}")


def test_restart_keeps_accounts_and_sessions(tmp_path: Path,
                                             broker_factory: Callable[..., RunningBroker]) -> None:  # noqa: F811
    home = make_home(tmp_path / "home")
    write_env(home, "Som")
    write_env(home, "Sai")
    clock = clock_file(tmp_path / "clock", LOGIN_AT, speed=FROZEN)
    first = broker_factory(home, clock=clock, symbols=["INFY"])
    som = first.kite("Som")
    user_ids = {a["user_name"]: a["user_id"] for a in first.accounts()}
    audited = len(first.audit())
    assert first.stop() == 0
    assert not (home.paper_dir / "broker.json").exists(), "a clean stop removes broker.json"

    second = broker_factory(home, clock=clock, symbols=["INFY"])
    assert second.port != 0
    # The same client object, same token, new broker process: the worker need not log in again.
    som.root = second.url
    assert som.profile()["user_id"] == user_ids["Som"]
    assert {a["user_name"]: a["user_id"] for a in second.accounts()} == user_ids
    assert len(second.audit()) == audited + 1


def test_reload_picks_up_new_accounts(tmp_path: Path, broker_factory: Callable[..., RunningBroker]) -> None:  # noqa: F811
    home = make_home(tmp_path / "home")
    write_env(home, "Som")
    broker = broker_factory(home, clock=clock_file(tmp_path / "clock", LOGIN_AT, speed=FROZEN), symbols=["INFY"])
    assert [a["user_name"] for a in broker.accounts()] == ["Som"]

    write_env(home, "Sai", PAPER_STARTING_CASH=300000)
    write_env(home, "Bad", file_mode=0o644)  # refused by the settings loader: group/other readable
    write_env(home, "Liz", mode="live")
    home.env_file("Typo").write_text("TRADER_MODE=paper\nKITE_API_KEYY=x\n", encoding="utf-8")
    home.env_file("Typo").chmod(0o600)
    result = broker.reload_accounts()
    assert result["added"] == ["Sai"] and result["active"] == 2
    assert set(result["skipped"]) == {"Bad", "Liz", "Typo"}
    sai = broker.kite("Sai")
    assert sai.margins("equity")["available"]["opening_balance"] == pytest.approx(300_000.0)
    # One log line per skipped file, without its secret.
    log = broker.log_text()
    assert "skipping env file of Bad" in log and "secret-bad" not in log


def test_sigterm_stops_cleanly_and_rebinding_works(tmp_path: Path,
                                                    broker_factory: Callable[..., RunningBroker]) -> None:  # noqa: F811
    home = make_home(tmp_path / "home")
    write_env(home, "Som")
    broker = broker_factory(home, clock=clock_file(tmp_path / "clock", LOGIN_AT, speed=FROZEN), symbols=["INFY"])
    info = json.loads((home.paper_dir / "broker.json").read_text(encoding="utf-8"))
    assert info == {"pid": broker.proc.pid, "port": broker.port, "url": broker.url, "host": "127.0.0.1"}
    kite = broker.kite("Som")
    kite.profile()  # leaves a keep-alive connection open: shutdown must not wait for it
    assert broker.stop(timeout=10) == 0
    assert "paper broker listening on " + broker.url in broker.output()
    assert "stopped" in broker.log_text()
