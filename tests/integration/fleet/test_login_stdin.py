"""``login USER --request-token -`` reads the token from stdin (kept out of ps and the shell history),
end to end against the real paper broker."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import requests

from kitefleet.clock import IST
from kitefleet.settings import load_settings
from tests.support.broker import RunningBroker, broker_factory, clock_file  # noqa: F401 (fixture)
from tests.support.homes import PROJECT_ROOT, child_env, make_home, write_env


def test_request_token_dash_reads_stdin(tmp_path: Path, broker_factory: Callable[..., RunningBroker]) -> None:  # noqa: F811
    home = make_home(tmp_path / "home")
    clock = clock_file(tmp_path / "clock", datetime(2026, 11, 25, 8, 30, tzinfo=IST))
    broker = broker_factory(home, clock=clock, symbols=["INFY"])
    write_env(home, "Som", KITE_ROOT=broker.url)
    broker.reload_accounts()
    r = requests.get(f"{broker.url}/connect/login", params={"api_key": load_settings(home, "Som").api_key, "v": 3},
                     allow_redirects=False, timeout=10)
    token = parse_qs(urlparse(r.headers["Location"]).query)["request_token"][0]
    proc = subprocess.run([sys.executable, str(PROJECT_ROOT / "orchestrator.py"), "login", "Som",
                           "--request-token", "-"], env=child_env(home, TRADER_CLOCK=clock), input=token + "\n",
                          capture_output=True, text=True, timeout=60, cwd=str(home.root))
    assert proc.returncode == 0, proc.stderr
    assert "/connect/login?api_key=" in proc.stderr  # the manual routine: the URL is shown
    assert token not in proc.stdout + proc.stderr
    assert json.loads(home.session_file("Som").read_text())["mode"] == "paper"
