"""A real ``orchestrator.py web`` in a subprocess, for the dashboard's tests (HTTP and browser)."""

from __future__ import annotations

import contextlib
import re
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import requests

from kitefleet.home import Home
from tests.support.homes import PROJECT_ROOT, VENV_PYTHON, child_env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class WebServer:
    proc: subprocess.Popen[str]
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    self.proc.kill()
                self.proc.wait(5)


def start_web(home: Home, *args: str, clock: str | None = None, timeout: float = 30.0) -> WebServer:
    port = free_port()
    env = child_env(home, PYTHONPATH=str(PROJECT_ROOT))
    if clock:
        env["TRADER_CLOCK"] = clock
    log = home.root / f"web-{port}.out"
    with log.open("w") as out:
        proc = subprocess.Popen([str(VENV_PYTHON), str(PROJECT_ROOT / "orchestrator.py"), "web", "--port", str(port),
                                 *args], cwd=PROJECT_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, text=True,
                                start_new_session=True)
    server = WebServer(proc, port, log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"web exited {proc.returncode}: {server.output()}"
        with contextlib.suppress(requests.RequestException):
            if requests.get(server.url + "/favicon.ico", timeout=2).status_code == 204:
                return server
        time.sleep(0.05)
    server.stop()
    raise AssertionError(f"the dashboard did not answer within {timeout:.0f}s: {server.output()}")


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf" value="([0-9a-f]+)"', html)
    assert match, "no CSRF field in the page"
    return match.group(1)
