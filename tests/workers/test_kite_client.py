"""The worker's Kite client against the real paper broker (real kiteconnect, real HTTP, file clock)."""

from __future__ import annotations

import contextlib
import os
import socket
import stat
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from kitefleet import clock
from kitefleet.clock import IST, clock_from_value
from kitefleet.errors import BrokerTemporaryError, TokenError
from kitefleet.exitcodes import ExitCode
from kitefleet.home import Home
from kitefleet.settings import load_settings
from tests.support.broker import RunningBroker, broker_factory, clock_file  # noqa: F401 (fixture)
from tests.support.homes import make_home, write_env
from tests.support.jobs import MARKET_OPEN, paper_home, point_users_at
from workers.broker_errors import BrokerUnavailable, WriteOutcomeUnknown
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


def test_session_expiry_is_the_next_six_am() -> None:
    assert session_expiry(datetime(2026, 3, 4, 10, 0, tzinfo=IST)) == datetime(2026, 3, 5, 6, 0, tzinfo=IST)
    assert session_expiry(datetime(2026, 3, 4, 5, 59, tzinfo=IST)) == datetime(2026, 3, 4, 6, 0, tzinfo=IST)


def _live_home(tmp_path: Path, **extra: object) -> Home:
    home = make_home(tmp_path / "live")
    write_env(home, "Som", mode="live", **extra)
    return home


@pytest.mark.parametrize(("content", "why"), [
    (b'{"access_token": "livetokenCUT0123', "not valid JSON"),
    (b'{"access_token": ', "not valid JSON"),
    (b'["livetokenCUT0123"]', "not a JSON object"),
    (b'{"token": "livetokenCUT0123"}', "no access_token"),
    (b'\xff\xfelivetokenCUT0123', "not UTF-8"),
], ids=["truncated", "cut-before-value", "array", "no-token", "binary"])
def test_a_corrupt_live_session_file_is_unreadable_not_missing(tmp_path: Path, content: bytes, why: str) -> None:
    home = _live_home(tmp_path)
    path = home.session_file("Som")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    path.chmod(0o600)
    kite = KiteApi(user="Som", home=home, settings=load_settings(home, "Som"), limiter=RateLimiter(tmp_path / "rl"))
    with pytest.raises(TokenError) as err:
        kite.connect()
    message = str(err.value)
    assert "data/Som/session.json is unreadable (" in message and why in message
    assert "no session file" not in message and "livetokenCUT" not in message
    assert "orchestrator.py login Som" in message
    assert path.read_bytes() == content  # left for the person (or the next login) to replace


def test_a_corrupt_live_session_file_falls_back_to_the_access_token_setting(tmp_path: Path) -> None:
    home = _live_home(tmp_path, KITE_ACCESS_TOKEN="fallbacktoken0001")
    path = home.session_file("Som")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('{"access_token": ')
    kite = KiteApi(user="Som", home=home, settings=load_settings(home, "Som"), limiter=RateLimiter(tmp_path / "rl"))
    kite.connect()
    assert kite._kite.access_token == "fallbacktoken0001" and kite.logins == 0


def test_live_uses_its_session_file_then_the_access_token_setting_and_never_logs_in(tmp_path: Path) -> None:
    home = _live_home(tmp_path, KITE_ACCESS_TOKEN="fallbacktoken0001")
    settings = load_settings(home, "Som")
    limiter = RateLimiter(tmp_path / "rl")
    kite = KiteApi(user="Som", home=home, settings=settings, limiter=limiter)
    kite.connect()  # no session file: the setting
    assert kite._kite.access_token == "fallbacktoken0001"
    now = clock.now()
    save_session(home, "Som", access_token="filetoken0002", login_time=now, expires_at=now + timedelta(hours=2),
                 mode="live")
    kite.connect()
    assert kite._kite.access_token == "filetoken0002"
    assert kite.logins == 0 and kite.calls == {}

    # A paper session file never stands in for a live one.
    save_session(home, "Som", access_token="papertoken0003", login_time=now, expires_at=now + timedelta(hours=2),
                 mode="paper", root="http://127.0.0.1:1")
    no_fallback = _live_home(tmp_path / "b")
    save_session(no_fallback, "Som", access_token="papertoken0003", login_time=now,
                 expires_at=now + timedelta(hours=2), mode="paper", root="http://127.0.0.1:1")
    other = KiteApi(user="Som", home=no_fallback, settings=load_settings(no_fallback, "Som"), limiter=limiter)
    with pytest.raises(TokenError, match="log in again"):
        other.connect()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class SilentServer:
    """Accepts connections, reads the request, never answers: a broker that timed out."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = int(self.sock.getsockname()[1])
        self.requests: list[bytes] = []
        self.conns: list[socket.socket] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)
            conn.settimeout(5)
            with contextlib.suppress(OSError):
                self.requests.append(conn.recv(65536))

    def close(self) -> None:
        self.sock.close()
        for conn in self.conns:
            conn.close()


def _api_against(tmp_path: Path, port: int, **options: object) -> KiteApi:
    home = make_home(tmp_path / f"h{port}")
    write_env(home, "Som", KITE_ROOT=f"http://127.0.0.1:{port}")
    settings = load_settings(home, "Som")
    api = KiteApi(user="Som", home=home, settings=settings, limiter=RateLimiter(tmp_path / f"rl{port}"),
                  backoff_initial=0.05, backoff_max=0.1, **options)  # type: ignore[arg-type]
    api._kite.set_access_token("sometoken0001")
    return api


def test_a_write_that_times_out_is_never_resent_and_reads_are_retried(tmp_path: Path) -> None:
    server = SilentServer()
    try:
        api = _api_against(tmp_path, server.port, timeout=0.5, attempts=3)
        with pytest.raises(WriteOutcomeUnknown) as info:
            api.place_order("regular", exchange="NSE", tradingsymbol="INFY", transaction_type="BUY", quantity=1,
                            product="CNC", order_type="LIMIT", price=100.0, tag="ENTRYTAG")
        assert isinstance(info.value, BrokerTemporaryError)
        deadline = time.monotonic() + 5
        while len(server.requests) < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert [r.split(b" ")[:2] for r in server.requests] == [[b"POST", b"/orders/regular"]]

        with pytest.raises(BrokerUnavailable):
            api.orders()
        deadline = time.monotonic() + 5
        while len(server.requests) < 4 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert [r.split(b" ")[1] for r in server.requests[1:]] == [b"/orders"] * 3
    finally:
        server.close()


class TruncatingServer:
    """Reads each request, then answers 200 with a chunked body cut off mid-way and hangs up:
    the broker took the order, the worker got half an answer."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = int(self.sock.getsockname()[1])
        self.requests: list[bytes] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn, contextlib.suppress(OSError):
                conn.settimeout(5)
                data = conn.recv(65536)
                head, _, body = data.partition(b"\r\n\r\n")
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                while len(body) < length:
                    body += conn.recv(65536)
                self.requests.append(data)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                             b"Transfer-Encoding: chunked\r\n\r\n40\r\n{\"status\": \"succ")

    def close(self) -> None:
        self.sock.close()


def test_a_cut_off_answer_to_a_write_is_outcome_unknown_not_a_refusal(tmp_path: Path) -> None:
    server = TruncatingServer()
    try:
        api = _api_against(tmp_path, server.port, timeout=2, attempts=3)
        with pytest.raises(WriteOutcomeUnknown) as info:
            api.place_order("regular", exchange="NSE", tradingsymbol="INFY", transaction_type="BUY", quantity=1,
                            product="CNC", order_type="LIMIT", price=100.0, tag="ENTRYTAG")
        assert "ChunkedEncodingError" in str(info.value)
        assert len(server.requests) == 1  # sent once, never repeated
        with pytest.raises(BrokerUnavailable):  # a read: retried, then temporary (not exit 1)
            api.orders()
        assert len(server.requests) == 4
    finally:
        server.close()


def test_connection_refused_is_retried_then_temporary(tmp_path: Path) -> None:
    api = _api_against(tmp_path, _free_port(), attempts=3)
    with pytest.raises(BrokerUnavailable) as info:
        api.place_order("regular", exchange="NSE", tradingsymbol="INFY", transaction_type="BUY", quantity=1,
                        product="CNC", order_type="LIMIT", price=100.0)
    assert info.value.exit_code == ExitCode.BROKER_TEMPORARY
    assert api.calls == {"order.place": 3}  # never sent, so retrying is safe


def test_paper_login_against_a_dead_broker_is_temporary(tmp_path: Path) -> None:
    home = make_home(tmp_path / "home")
    write_env(home, "Som", KITE_ROOT=f"http://127.0.0.1:{_free_port()}")
    with pytest.raises(BrokerUnavailable):
        build_kite(home, load_settings(home, "Som"), attempts=2, backoff_initial=0.05)
    assert not home.session_file("Som").exists()


def test_session_file_is_written_atomically_private(tmp_path: Path) -> None:
    home = make_home(tmp_path / "home")
    now = datetime(2026, 3, 4, 9, 0, tzinfo=IST)
    path = save_session(home, "Som", access_token="abc123456", login_time=now, expires_at=session_expiry(now),
                        mode="live")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert read_session(home, "Som") == {"access_token": "abc123456", "login_time": now.isoformat(),
                                         "expires_at": "2026-03-05T06:00:00+05:30", "mode": "live"}
    assert [p.name for p in path.parent.iterdir()] == ["session.json"]
