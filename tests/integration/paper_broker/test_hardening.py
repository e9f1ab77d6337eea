"""Issue 15, items 7-11: the paper broker binds a port on a shared machine, so every local process is
a possible attacker. Each test is named after the finding it covers and drives the real broker
process over HTTP: the real kiteconnect client where the input is a Kite call, raw http.client or
socket requests where the client cannot send the hostile input."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
import requests
from kiteconnect import KiteConnect
from kiteconnect import exceptions as kex

from kitefleet.clock import IST, write_clock_file
from kitefleet.exitcodes import ExitCode
from kitefleet.settings import api_key_fingerprint
from tests.support.broker import RunningBroker, broker_factory, clock_file, ensure_calendar, start_broker  # noqa: F401
from tests.support.homes import PROJECT_ROOT, VENV_PYTHON, child_env, make_home, write_env

NOW = datetime(2026, 11, 25, 11, 30, tzinfo=IST)  # a Wednesday, market open
FROZEN = 1e-6
SOM_KEY, SOM_SECRET = "keysom0001", "secret-som-S3CR3T"
DEEP = 100_000
ADMIN_TOKEN = "admin-token-0123456789abcdef"


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningBroker]:
    root = tmp_path_factory.mktemp("hardening")
    home = make_home(root / "home")
    write_env(home, "Som")
    write_env(home, "Sai")
    b = start_broker(home, clock=clock_file(root / "clock", NOW, speed=FROZEN), symbols=["INFY"])
    yield b
    assert b.stop() == 0


@pytest.fixture(scope="module")
def som(broker: RunningBroker) -> KiteConnect:
    return broker.kite("Som")


def _error(status: int, body: bytes | str, error_type: str) -> str:
    payload = json.loads(body)
    assert payload["status"] == "error" and payload["data"] is None, payload
    assert payload["error_type"] == error_type, payload
    return str(payload["message"])


def _raw(broker: RunningBroker, data: bytes, *, timeout: float = 10.0) -> bytes:
    """Send bytes on a fresh connection; everything the broker answers until it closes."""
    with socket.create_connection(("127.0.0.1", broker.port), timeout=timeout) as sock:
        sock.sendall(data)
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)


def _request_token(broker: RunningBroker, api_key: str = SOM_KEY) -> str:
    r = requests.get(f"{broker.url}/connect/login", params={"api_key": api_key, "v": 3}, allow_redirects=False,
                     timeout=10)
    assert r.status_code == 302
    return r.headers["Location"].split("request_token=")[1].split("&")[0]


# --- 7: strangers are counted and audited apart ----------------------------------------------------
def test_unauthenticated_requests_naming_a_key_do_not_use_its_rate_limit_or_audit(tmp_path: Path) -> None:
    home = make_home(tmp_path / "home")
    write_env(home, "Som")
    broker = start_broker(home, clock=clock_file(tmp_path / "clock", NOW, speed=FROZEN), symbols=["INFY"],
                          rate_limits=True)
    try:
        kite = broker.kite("Som")
        stranger = KiteConnect(SOM_KEY, root=broker.url, access_token="not-a-token")
        for attempt in range(3):  # noqa: B007 (read after the loop)  # the window is one wall second: a loaded machine may need a retry
            time.sleep(1.05)  # every earlier request has left its window
            started = time.monotonic()
            for _ in range(12):  # more than the "other" class allows Som in a second (10)
                requests.post(f"{broker.url}/session/token", data={"api_key": SOM_KEY}, timeout=10)
            for _ in range(3):
                with pytest.raises((kex.TokenException, kex.NetworkException)):
                    stranger.holdings()
            profile = kite.profile()  # today: 429, Som's window was filled by a stranger
            if time.monotonic() - started < 0.9:
                break
        assert profile["user_name"] == "Som"
        assert attempt < 2, "the machine was too slow to fill a one-second window"
        rows = broker.audit()
        strangers = [r for r in rows if r["status"] in (403, 400, 429)]
        assert len(strangers) >= 15 and all(r["api_key"] is None for r in strangers)
        assert {r["status"] for r in broker.audit(api_key=SOM_KEY)} == {200}
        assert "from=127.0.0.1" in broker.log_text()  # the stranger is named by address
    finally:
        assert broker.stop() == 0


# --- 8: bodies and headers are capped before they are read ------------------------------------------
def test_a_body_over_the_cap_is_refused_with_413_before_it_is_read(broker: RunningBroker) -> None:
    head = (f"POST /session/token HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
            f"Content-Length: {300 * 1024 * 1024}\r\n\r\n").encode()
    # Only the head is sent: today the broker waits for 300 MB it would then hold in memory.
    answer = _raw(broker, head + b"api_key=" + b"x" * 1000)
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line.startswith(b"HTTP/1.1 413 "), answer[:300]
    headers, _, body = rest.partition(b"\r\n\r\n")
    assert b"Connection: close" in headers
    assert "1048576" in _error(413, body, "InputException")
    answer = _raw(broker, b"POST /margins/orders HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                          b"Content-Length: 1048577\r\n\r\n[")  # one byte over the cap
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:300]
    assert requests.get(f"{broker.url}/paper/health", timeout=10).status_code == 200


def test_a_chunked_body_is_refused_with_411_not_parsed_as_requests(broker: RunningBroker) -> None:
    smuggled = b"GET /paper/accounts HTTP/1.1\r\nHost: x\r\n\r\n"
    chunk = b"%x\r\n%s\r\n0\r\n\r\n" % (len(smuggled), smuggled)
    answer = _raw(broker, b"POST /session/token HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk)
    assert answer.count(b"HTTP/1.1 ") == 1, answer  # today: three answers, the smuggled one among them
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line.startswith(b"HTTP/1.1 411 ")
    assert "Content-Length" in _error(411, rest.partition(b"\r\n\r\n")[2], "InputException")


def test_too_many_headers_get_431_in_the_kite_envelope(broker: RunningBroker) -> None:
    many = b"".join(b"X-H%d: v\r\n" % i for i in range(101))
    answer = _raw(broker, b"GET /user/profile HTTP/1.1\r\nHost: x\r\n" + many + b"\r\n")
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
    _error(431, answer.partition(b"\r\n\r\n")[2], "GeneralException")


# --- 9: not on the network without a token; never a full key -------------------------------------
def _broker_cli(home_root: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    argv = [str(VENV_PYTHON), "-m", "paper_broker", "--port", "0", "--home", str(home_root), *args]
    full_env = {**(env or {}), "PYTHONPATH": str(PROJECT_ROOT)}
    return subprocess.run(argv, cwd=PROJECT_ROOT, env=full_env, capture_output=True, text=True, timeout=60)


def test_a_non_loopback_host_is_refused_without_allow_remote(tmp_path: Path) -> None:
    home = make_home(tmp_path / "home")
    ensure_calendar(home, NOW.date())
    env = child_env(home, TRADER_CLOCK=f"{NOW.isoformat()},speed=1")
    try:
        proc = _broker_cli(home.root, "--host", "0.0.0.0", env=env)
    except subprocess.TimeoutExpired:
        pytest.fail("the broker started listening on 0.0.0.0 with open admin routes")
    assert proc.returncode == ExitCode.USAGE
    assert proc.stderr.count("\n") == 1 and "--allow-remote" in proc.stderr, proc.stderr
    proc = _broker_cli(home.root, "--host", "0.0.0.0", "--allow-remote", env=env)
    assert proc.returncode == ExitCode.CONFIG
    assert proc.stderr.count("\n") == 1 and "PAPER_ADMIN_TOKEN" in proc.stderr, proc.stderr
    assert not (home.paper_dir / "broker.json").exists()


def test_allow_remote_puts_the_admin_routes_behind_the_admin_token(
        tmp_path: Path, broker_factory: Callable[..., RunningBroker]) -> None:  # noqa: F811
    home = make_home(tmp_path / "home")
    write_env(home, "Som")
    broker = broker_factory(home, clock=clock_file(tmp_path / "clock", NOW, FROZEN), symbols=["INFY"],
                            extra_args=["--host", "0.0.0.0", "--allow-remote"],
                            extra_env={"PAPER_ADMIN_TOKEN": ADMIN_TOKEN})
    url = f"http://127.0.0.1:{broker.port}"
    for method, path in (("GET", "/paper/accounts"), ("GET", "/paper/health"), ("GET", "/paper/audit"),
                         ("POST", "/paper/reload-accounts")):
        for headers in ({}, {"X-Paper-Admin-Token": "wrong"}):
            r = requests.request(method, url + path, headers=headers, timeout=10)
            assert r.status_code == 403, (path, r.text)
            _error(403, r.content, "TokenException")
    kite = broker.kite("Som")  # Kite's own routes are untouched
    assert kite.profile()["user_name"] == "Som"
    accounts = broker.accounts()  # with the token (tests/support sends it)
    assert [a["api_key_fingerprint"] for a in accounts] == [api_key_fingerprint(SOM_KEY)]
    assert SOM_KEY not in json.dumps(accounts) and "secret-som" not in json.dumps(accounts)
    assert ADMIN_TOKEN not in " ".join(broker.argv) and ADMIN_TOKEN not in broker.log_text()


def test_paper_accounts_shows_the_key_fingerprint_not_the_key(broker: RunningBroker) -> None:
    r = requests.get(f"{broker.url}/paper/accounts", timeout=10)
    assert r.status_code == 200
    assert SOM_KEY not in r.text and "keysai0001" not in r.text
    assert {a["user_name"]: a["api_key_fingerprint"] for a in r.json()["data"]} == {
        "Som": api_key_fingerprint(SOM_KEY), "Sai": api_key_fingerprint("keysai0001")}


# --- 10: hostile inputs are 400 InputException, not 500 ---------------------------------------------
def _kite_request(broker: RunningBroker, kite: KiteConnect, method: str, path: str, **kwargs: Any) -> requests.Response:
    headers = {"Authorization": f"token {kite.api_key}:{kite.access_token}", "X-Kite-Version": "3",
               **kwargs.pop("headers", {})}
    return requests.request(method, broker.url + path, headers=headers, timeout=30, **kwargs)


def test_json_nested_too_deep_in_margins_or_a_gtt_condition_is_a_400(broker: RunningBroker, som: KiteConnect) -> None:
    deep_list = "[" * DEEP + "]" * DEEP
    r = _kite_request(broker, som, "POST", "/margins/orders", data=deep_list,
                      headers={"Content-Type": "application/json"})
    assert r.status_code == 400, r.text
    _error(400, r.content, "InputException")
    deep_object = '{"a":' * (DEEP // 2) + "1" + "}" * (DEEP // 2)  # half: URL-encoded it fits the body cap
    for condition, orders in ((deep_object, "[]"), ('{"exchange":"NSE"}', deep_list)):
        form = urlencode({"type": "single", "condition": condition, "orders": orders})
        r = _kite_request(broker, som, "POST", "/gtt/triggers", data=form,
                          headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert r.status_code == 400, r.text
        _error(400, r.content, "InputException")
    assert "Traceback" not in broker.log_text()


def test_an_audit_limit_beyond_int64_is_a_400(broker: RunningBroker) -> None:
    for limit in ("99999999999999999999999", "9223372036854775808", "²"):
        r = requests.get(f"{broker.url}/paper/audit", params={"limit": limit}, timeout=10)
        assert r.status_code == 400, (limit, r.text)
        _error(400, r.content, "InputException")
    assert len(broker.admin("GET", "/paper/audit", params={"limit": "2"})) <= 2


def test_a_gtt_id_beyond_int64_is_a_400(som: KiteConnect) -> None:
    huge = 99999999999999999999999
    for call in (lambda: som.get_gtt(huge), lambda: som.delete_gtt(huge), lambda: som.get_gtt(2**63)):
        with pytest.raises(kex.InputException):
            call()


def test_a_gtt_leg_quantity_of_1e30_is_refused(som: KiteConnect) -> None:
    leg = {"exchange": "NSE", "tradingsymbol": "INFY", "transaction_type": "BUY", "order_type": "LIMIT",
           "product": "CNC", "price": 1400.0}
    with pytest.raises(kex.InputException, match="quantity"):
        som.place_gtt("single", "INFY", "NSE", [1400.0], 1500.0, [{**leg, "quantity": 1e30}])
    assert not any(g["condition"]["trigger_values"] == [1400.0] for g in som.get_gtts())
    trigger_id = som.place_gtt("single", "INFY", "NSE", [1400.0], 1500.0, [{**leg, "quantity": 1}])["trigger_id"]
    with pytest.raises(kex.InputException, match="quantity"):
        som.modify_gtt(trigger_id, "single", "INFY", "NSE", [1400.0], 1500.0, [{**leg, "quantity": 1e30}])
    som.delete_gtt(trigger_id)


def test_wrong_checksums_use_up_the_request_token_and_answer_like_an_unknown_token(broker: RunningBroker) -> None:
    kite = KiteConnect(SOM_KEY, root=broker.url)

    def refusal(token: str, secret: str) -> tuple[int, str]:
        with pytest.raises(kex.TokenException) as info:
            kite.generate_session(token, api_secret=secret)
        return info.value.code, str(info.value)

    unknown = refusal("A" * 32, SOM_SECRET)
    token = _request_token(broker)
    wrong = [refusal(token, f"guess-{n}") for n in range(3)]
    assert wrong == [unknown] * 3  # a wrong checksum reads like an unknown token
    assert refusal(token, SOM_SECRET) == unknown  # three wrong ones used the token up
    # Fewer wrong guesses than that leave the token good for its owner.
    token = _request_token(broker)
    refusal(token, "guess")
    refusal(token, "guess")
    assert kite.generate_session(token, api_secret=SOM_SECRET)["user_name"] == "Som"


# --- 11: a clock value that cannot be computed never reaches the broker ------------------------------
def test_an_uncomputable_clock_file_keeps_the_broker_on_its_last_good_time(
        tmp_path: Path, broker_factory: Callable[..., RunningBroker]) -> None:  # noqa: F811
    home = make_home(tmp_path / "home")
    write_env(home, "Som")
    path = tmp_path / "clock"
    broker = broker_factory(home, clock=clock_file(path, NOW, FROZEN), symbols=["INFY"])
    kite = broker.kite("Som")
    for bad in ("anchor=nan", "anchor=inf", "speed=inf", "speed=1e308"):
        path.write_text(f"2026-11-26T10:00:00+05:30,{bad}\n", encoding="utf-8")
        stamp = time.time_ns() + 10**9
        os.utime(path, ns=(stamp, stamp))  # a new mtime: the broker reads the file on its next request
        assert abs((broker.now() - NOW).total_seconds()) < 1, bad  # today: an empty reply
        assert kite.profile()["user_name"] == "Som"
    path.write_text("0001-01-01T00:00:00+05:30\n", encoding="utf-8")
    assert abs((broker.now() - NOW).total_seconds()) < 1
    write_clock_file(path, datetime(2026, 11, 26, 10, 0, tzinfo=IST), FROZEN)  # a good value is taken
    assert abs((broker.now() - datetime(2026, 11, 26, 10, 0, tzinfo=IST)).total_seconds()) < 1
    assert "Traceback" not in broker.log_text()


@pytest.mark.parametrize("value", ["2026-11-25T10:00:00+05:30,speed=inf", "2026-11-25T10:00:00+05:30,anchor=nan",
                                   "0001-01-01T00:00:00+05:30"])
def test_an_uncomputable_clock_value_at_start_is_one_line_and_exit_4(tmp_path: Path, value: str) -> None:
    home = make_home(tmp_path / "home")
    ensure_calendar(home, NOW.date())
    proc = _broker_cli(home.root, env=child_env(home, TRADER_CLOCK=value))
    assert proc.returncode == ExitCode.CONFIG, proc.stderr
    assert proc.stderr.count("\n") == 1 and "TRADER_CLOCK" in proc.stderr, proc.stderr


def test_the_broker_log_rotates_at_its_size(tmp_path: Path, broker_factory: Callable[..., RunningBroker]) -> None:  # noqa: F811
    home = make_home(tmp_path / "home")
    write_env(home, "Som")
    broker = broker_factory(home, clock=clock_file(tmp_path / "clock", NOW, FROZEN), symbols=["INFY"],
                            extra_args=["--log-max-bytes", "2048"])
    for _ in range(150):
        broker.request("GET", "/nope")  # one log line each
    logs = sorted(p.name for p in broker.data_dir.glob("paper_broker.log*"))
    assert logs == ["paper_broker.log", "paper_broker.log.1", "paper_broker.log.2", "paper_broker.log.3"]
    for name in logs:
        path = broker.data_dir / name
        assert path.stat().st_size <= 2048
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "GET /nope 404" in broker.log_text()
