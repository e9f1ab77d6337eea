"""The supervisord event listener under a real supervisord: a trader that stops or is restarted is
told to its user through that user's own notify job and sink (tests/support/sink.py).

Som runs and is SIGKILLed (restarted: "exit -9"); Ann cannot start (the test holds her instance
lock: exit 3 until FATAL); Bad's env file does not load (exit 4: "configuration"), yet its
NOTIFY_URLS still reach Bad's sink. Schedules are off and KITE_ROOT is not local, so no broker runs.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from kitefleet.home import Home
from kitefleet.settings import notify_url_secrets
from tests.integration.supervision.test_supervisord import FAST, start_supervisord, stop_supervisord, wait_state
from tests.support.fleet import PROJECT_ROOT, env_for, fleet_home, kill_group, orchestrator, poll
from tests.support.homes import VENV_PYTHON, write_env
from tests.support.sink import Sink

pytestmark = pytest.mark.supervisord

NOT_LOCAL = "http://10.255.255.1:9"
HOLD_INSTANCE = """
import sys, time
from kitefleet.home import Home
from kitefleet.locks import instance_lock
lock = instance_lock(Home(__import__('pathlib').Path(sys.argv[1])), sys.argv[2]); lock.acquire()
print("held", flush=True); time.sleep(600)
"""


@dataclass
class Desk:
    home: Home
    sinks: dict[str, Sink]
    supervisord: subprocess.Popen[bytes]


@pytest.fixture(scope="module")
def desk() -> Iterator[Desk]:
    root = Path(tempfile.mkdtemp(prefix="kfnt-"))
    sinks = {u: Sink(f"hook-{u.lower()}-Z9K4") for u in ("Som", "Ann", "Bad")}
    home, clock = fleet_home(root / "h", {u: {"KITE_ROOT": NOT_LOCAL, "NOTIFY_URLS": sinks[u].url}
                                          for u in ("Som", "Ann")})
    write_env(home, "Bad", KITE_ROOT=NOT_LOCAL, NOTIFY_URLS=sinks["Bad"].url, KITE_API_KEYY="typo")
    holder = subprocess.Popen([str(VENV_PYTHON), "-c", HOLD_INSTANCE, str(home.root), "Ann"], cwd=PROJECT_ROOT,
                              env=env_for(home, None), stdout=subprocess.PIPE, start_new_session=True)
    assert holder.stdout is not None and holder.stdout.readline().strip() == b"held"
    sv = None
    try:
        conf = orchestrator(home, "supervisor-conf", *FAST)
        assert conf.returncode == 0, conf.stderr
        sv = start_supervisord(home, clock)
        yield Desk(home, sinks, sv)
    finally:
        if sv is not None:
            stop_supervisord(sv)
        kill_group(holder)
        orchestrator(home, "stop", "Som", "--grace", "3")
        for s in sinks.values():
            s.stop()
        if not os.environ.get("KEEP_HOME"):
            shutil.rmtree(root, ignore_errors=True)


def texts(sink: Sink, timeout: float = 60) -> list[str]:
    return poll(sink.texts, timeout, "a notification")


def test_the_listener_is_in_the_generated_config_without_secrets(desk: Desk) -> None:
    text = (desk.home.generated_conf_dir / "trader.conf").read_text()
    assert "[eventlistener:trader-events]" in text and "-m fleet.eventlistener" in text
    for s in desk.sinks.values():
        assert str(s.port) not in text and s.path not in text


def test_a_trader_that_cannot_start_says_trader_stopped(desk: Desk) -> None:
    # FATAL when it fails within startsecs; under load a start can outlast the tests' 1-second
    # startsecs, and exit 3 is then an expected EXITED: parked, and told, either way.
    wait_state(desk.home, "trader:Ann", "FATAL", "EXITED", timeout=60)
    got = texts(desk.sinks["Ann"])
    assert len(got) == 1 and "trader stopped (exit 3)" in got[0]


def test_exit_4_says_trader_stopped_configuration(desk: Desk) -> None:
    wait_state(desk.home, "trader:Bad", "FATAL", "EXITED", timeout=60)
    got = texts(desk.sinks["Bad"])
    assert len(got) == 1 and "trader stopped: configuration" in got[0]


def test_a_sigkilled_trader_says_restarted_exit_minus_9(desk: Desk) -> None:
    pid = wait_state(desk.home, "trader:Som", "RUNNING")["pid"]
    os.kill(pid, signal.SIGKILL)
    got = texts(desk.sinks["Som"])
    assert "trader restarted (exit -9)" in got[0]
    wait_state(desk.home, "trader:Som", "RUNNING")
    # each user only their own
    assert len(got) == 1 and len(desk.sinks["Ann"].texts()) == 1 and "exit -9" not in desk.sinks["Ann"].texts()[0]


def test_notify_urls_appear_in_no_log_heartbeat_or_status(desk: Desk) -> None:
    texts(desk.sinks["Som"])
    out = orchestrator(desk.home, "status", "--json", "--no-live")
    shown = out.stdout + out.stderr
    for path in [*desk.home.logs_dir.rglob("*"), *desk.home.data_dir.rglob("*.json"),
                 desk.home.root / "supervisord.out", *desk.home.run_dir.rglob("*.conf")]:
        if path.is_file():
            shown += path.read_text(errors="replace")
    assert json.loads(out.stdout)["users"]
    for user, s in desk.sinks.items():
        for part in notify_url_secrets(s.url):
            assert part not in shown, (user, part)
