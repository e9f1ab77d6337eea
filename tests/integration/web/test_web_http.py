"""The dashboard over plain HTTP against a real ``orchestrator.py web``: the security model (read-only
without a token, login, CSRF, confirmation, Host check, the token file's mode), escaping, no
secret in any answer, and the command's one-line errors. Fast: no broker, no browser."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from fleet import supervisor
from fleet.web import disk
from fleet.web.live import LiveCache
from kitefleet.clock import IST
from kitefleet.home import Home
from kitefleet.pause import pause_file
from tests.integration.web.server import WebServer, csrf_of, free_port, start_web
from tests.support.homes import PROJECT_ROOT, VENV_PYTHON, child_env, make_home, write_env

USERS = ("Som", "Sai")
#: nothing listens here: the summary processes fail fast instead of waiting for a broker
NO_BROKER = "http://127.0.0.1:9"


def secrets_of(user: str) -> list[str]:
    return [f"key{user.lower()}0001", f"secret-{user.lower()}-S3CR3T"]


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Home:
    home = make_home(tmp_path_factory.mktemp("web") / "home")
    for user in USERS:
        write_env(home, user, KITE_ROOT=NO_BROKER)
    scans = home.user_data_dir("Som") / "scans"
    scans.mkdir(parents=True)
    (scans / "pattern_daily_20261124.csv").write_text(
        "symbol,score,entry,stop_loss,target_1,risk_reward,trend,reason\n"
        "INFY,6,1500,1400,1700,2.0,up,<script>alert(1)</script>\n", encoding="utf-8")
    logs = home.user_logs_dir("Som")
    logs.mkdir(parents=True)
    (logs / "daemon.log").write_text("10:00 INFO Som daemon started <b>bold</b>\n", encoding="utf-8")
    (logs / "daemon.out.log").write_text("RAW-UNREDACTED-LINE\n", encoding="utf-8")
    return home


@pytest.fixture(scope="module")
def readonly(home: Home) -> Iterator[WebServer]:
    server = start_web(home)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def tokened(home: Home) -> Iterator[WebServer]:
    server = start_web(home, "--token")
    yield server
    server.stop()


def token_of(home: Home) -> str:
    return (home.run_dir / "web.token").read_text().strip()


def login(server: WebServer, token: str) -> requests.Session:
    session = requests.Session()
    r = session.post(server.url + "/login", data={"token": token}, allow_redirects=False, timeout=10)
    assert r.status_code == 303, r.text
    return session


# --- read-only ---------------------------------------------------------------------------------------
def test_without_a_token_pages_show_and_every_post_is_refused(readonly: WebServer, home: Home) -> None:
    page = requests.get(readonly.url + "/", timeout=10)
    assert page.status_code == 200 and "read-only" in page.text
    assert 'id="row-Som"' in page.text and 'id="row-Sai"' in page.text
    r = requests.post(readonly.url + "/user/Som/action/pause", data={"confirm": "yes"}, timeout=10)
    assert r.status_code == 403 and "read-only" in r.text
    assert not pause_file(home, "Som").exists()
    assert "action-pause" not in requests.get(readonly.url + "/user/Som", timeout=10).text


def test_a_foreign_host_header_is_refused(readonly: WebServer, tokened: WebServer) -> None:
    for server in (readonly, tokened):
        for host in ("evil.example", f"evil.example:{server.port}", "127.0.0.2"):
            r = requests.get(server.url + "/api/fleet", headers={"Host": host}, timeout=10)
            assert r.status_code == 421, (host, r.status_code)
        assert requests.get(server.url + "/favicon.ico", headers={"Host": f"localhost:{server.port}"},
                            timeout=10).status_code == 204


def test_everything_shown_is_escaped_and_raw_output_logs_are_never_read(readonly: WebServer) -> None:
    text = requests.get(readonly.url + "/user/Som", timeout=10).text
    assert "<script>alert(1)</script>" not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "<b>bold</b>" not in text and "&lt;b&gt;bold&lt;/b&gt;" in text
    assert "RAW-UNREDACTED-LINE" not in text
    assert requests.get(readonly.url + "/user/%3Cscript%3E", timeout=10).status_code == 404


def test_no_route_serves_a_path_from_the_request(readonly: WebServer, home: Home) -> None:
    reports = home.user_data_dir("Som") / "reports"
    reports.mkdir(parents=True, exist_ok=True)
    (reports / "daily_2026-11-24.html").write_text("<h1>report</h1>", encoding="utf-8")
    ok = requests.get(readonly.url + "/user/Som/report/daily", timeout=10)
    assert ok.status_code == 200 and "attachment" in ok.headers["content-disposition"]
    framed = requests.get(readonly.url + "/user/Som/report/daily?view=1", timeout=10)
    assert framed.headers["content-security-policy"].startswith("sandbox")
    for path in ("/user/Som/report/..%2F..%2Fenv%2FSom.env", "/user/Som/report/../../env/Som.env",
                 "/user/..%2Fenv/report/daily", "/static/..%2F..%2Fenv%2FSom.env", "/user/Som/report/session"):
        r = requests.get(readonly.url + path, timeout=10)
        assert r.status_code == 404, path
        assert "KITE_API" not in r.text


def test_no_secret_in_any_page_or_api_answer(readonly: WebServer, tokened: WebServer, home: Home) -> None:
    token = token_of(home)
    session = login(tokened, token)
    answers = []
    for server, client in ((readonly, requests.Session()), (tokened, session)):
        for path in ("/", "/api/fleet", "/user/Som", "/api/user/Som", "/user/Sai", "/api/user/Sai", "/login"):
            answers.append(client.get(server.url + path, timeout=10).text)
    blob = "\n".join(answers)
    for user in USERS:
        for secret in secrets_of(user):
            assert secret not in blob
    assert token not in blob


# --- with a token ------------------------------------------------------------------------------------
def test_token_file_is_0600_and_pages_need_the_login(tokened: WebServer, home: Home) -> None:
    path = home.run_dir / "web.token"
    assert path.stat().st_mode & 0o777 == 0o600
    assert token_of(home) not in tokened.output()  # not a terminal: the token is not printed into a log
    r = requests.get(tokened.url + "/", allow_redirects=False, timeout=10)
    assert r.status_code == 303 and r.headers["location"] == "/login"
    assert requests.get(tokened.url + "/api/fleet", timeout=10).status_code == 403
    wrong = requests.post(tokened.url + "/login", data={"token": "not-the-token-at-all"}, allow_redirects=False,
                          timeout=10)
    assert wrong.status_code == 403 and "set-cookie" not in wrong.headers
    session = login(tokened, token_of(home))
    cookie = session.cookies.get_dict()
    assert cookie and token_of(home) not in "".join(cookie.values())
    assert any("httponly" in h.lower() for h in [requests.post(tokened.url + "/login", data={
        "token": token_of(home)}, allow_redirects=False, timeout=10).headers["set-cookie"]])
    assert session.get(tokened.url + "/api/fleet", timeout=10).status_code == 200


def test_a_post_needs_the_cookie_the_csrf_token_and_a_confirmation(tokened: WebServer, home: Home) -> None:
    session = login(tokened, token_of(home))
    csrf = csrf_of(session.get(tokened.url + "/user/Sai", timeout=10).text)
    url = tokened.url + "/user/Sai/action/pause"
    assert requests.post(url, data={"csrf": csrf, "confirm": "yes"}, timeout=10).status_code == 403  # no cookie
    assert session.post(url, data={"confirm": "yes"}, timeout=10).status_code == 403  # no CSRF token
    assert session.post(url, data={"csrf": "0" * 64, "confirm": "yes"}, timeout=10).status_code == 403
    assert session.post(url, data={"csrf": csrf}, timeout=10).status_code == 400  # not confirmed
    assert session.post(url, data={"csrf": csrf, "confirm": "yes"}, timeout=10,
                        headers={"Host": "evil.example"}).status_code == 421
    assert not pause_file(home, "Sai").exists()
    done = session.post(url, data={"csrf": csrf, "confirm": "yes"}, timeout=60)
    assert done.status_code == 200, done.text
    info = json.loads(pause_file(home, "Sai").read_text())
    assert info["reason"] == "set from the dashboard"
    assert session.post(tokened.url + "/user/Sai/action/resume", data={"csrf": csrf, "confirm": "yes"},
                        timeout=60).status_code == 200
    assert not pause_file(home, "Sai").exists()
    unknown = session.post(tokened.url + "/user/Sai/action/rm-rf", data={"csrf": csrf, "confirm": "yes"}, timeout=10)
    assert unknown.status_code == 404


# --- the command ---------------------------------------------------------------------------------------
def web_cmd(home: Home, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(VENV_PYTHON), str(PROJECT_ROOT / "orchestrator.py"), "web", *args], cwd=PROJECT_ROOT,
                          env=child_env(home, PYTHONPATH=str(PROJECT_ROOT)), capture_output=True, text=True,
                          timeout=60, check=False)


def test_a_port_in_use_or_a_bad_host_is_one_line(tmp_path: Path) -> None:
    home = make_home(tmp_path / "home")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        out = web_cmd(home, "--port", str(taken.getsockname()[1]))
    assert out.returncode == 4 and out.stderr.count("\n") == 1 and "already in use" in out.stderr
    for bad, code in (("not a host", 2), ("999.1.1.1", 2), ("192.0.2.77", 4)):
        out = web_cmd(home, "--host", bad, "--port", str(free_port()))
        assert out.returncode == code and out.stderr.count("\n") == 1, (bad, out.stderr)
    out = web_cmd(home, "--host", "0.0.0.0", "--port", str(free_port()))
    assert out.returncode == 2 and "--allow-host" in out.stderr
    assert not (home.run_dir / "web.token").exists()  # nothing made for a start that failed


def test_a_token_file_with_another_mode_is_refused(tmp_path: Path) -> None:
    home = make_home(tmp_path / "home")
    path = home.run_dir / "web.token"
    path.write_text("x" * 40 + "\n")
    os.chmod(path, 0o644)
    out = web_cmd(home, "--token", "--port", str(free_port()))
    assert out.returncode == 4 and "0644" in out.stderr and out.stderr.count("\n") == 1


# --- pure parts ------------------------------------------------------------------------------------
def test_the_summary_cache_runs_one_summary_per_user_per_interval_however_many_clients() -> None:
    calls: list[str] = []
    release = threading.Event()
    now = [1000.0]

    def fetch(user: str) -> tuple[dict[str, object], None]:
        calls.append(user)
        release.wait(5)
        return {"day_pnl": 1.0}, None

    cache = LiveCache(fetch, interval=30.0, monotonic=lambda: now[0])
    threads = [threading.Thread(target=cache.want, args=(["Som", "Sai"],)) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    release.set()
    deadline = time.monotonic() + 5
    while cache.get("Som").running or cache.get("Sai").running:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert sorted(calls) == ["Sai", "Som"]
    now[0] += 29.0
    assert cache.want(["Som"]) == []
    now[0] += 1.5
    assert cache.want(["Som"]) == ["Som"]
    cache.close()


def test_outbox_warnings_of_the_last_24_hours_torn_line_skipped(tmp_path: Path) -> None:
    from datetime import datetime

    home = make_home(tmp_path / "home")
    folder = home.user_data_dir("Som")
    folder.mkdir(parents=True)
    lines = [
        {"time": "2026-11-25T09:00:00+05:30", "level": "warning", "kind": "job_failed", "text": "new"},
        {"time": "2026-11-23T09:00:00+05:30", "level": "warning", "kind": "job_failed", "text": "old"},
        {"time": "2026-11-25T09:01:00+05:30", "level": "info", "kind": "stop_placed", "text": "info"},
    ]
    (folder / "outbox.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + '\n{"time": "2026-11-25T09',
                                         encoding="utf-8")
    got = disk.warnings_of(home, "Som", datetime(2026, 11, 25, 10, 0, tzinfo=IST))
    assert [w["text"] for w in got] == ["new"]


def test_supervisor_conf_web_adds_the_dashboard_program(tmp_path: Path) -> None:
    home = make_home(tmp_path / "home")
    probes = [supervisor.UserProbe("Som", True, "paper", None)]
    supervisor.ensure_dirs(home, ["Som"])
    text, _ = supervisor.render(home, probes, web=True)
    assert supervisor.web_of(text)
    parsed = supervisor.parse_generated(home, text)
    assert parsed["web:web"]["argv"][-1] == "web"
    plain, _ = supervisor.render(home, probes)
    assert "[program:web]" not in plain and not supervisor.web_of(plain)
