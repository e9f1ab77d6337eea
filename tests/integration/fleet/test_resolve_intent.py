"""A person lists and resolves a parked intent; the symbol is open to entries again."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import date
from pathlib import Path

from kitefleet.state import StateStore
from tests.support.homes import PROJECT_ROOT, child_env, make_home, write_env
from workers.intents import RESOLVED, UNRESOLVED, IntentLog, make_tag


def orchestrator(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(PROJECT_ROOT / "orchestrator.py"), "resolve-intent", *args],
                          env=env, capture_output=True, text=True, timeout=60)


def test_list_resolve_and_refuse(tmp_path: Path) -> None:
    home = make_home(tmp_path / "home")
    write_env(home, "Som")
    log = IntentLog(StateStore(home, "Som", "paper"))
    tag = make_tag("Som", "place_orders_daily", date(2026, 11, 23), "INFY", "entry")
    log.record(tag, "order", "INFY", "entry", {"quantity": 1}, job="place_orders_daily", session=date(2026, 11, 23))
    log._update(tag, status=UNRESOLVED, note="not in the order book after the day")
    assert log.blocked_symbols() == {"INFY"}
    env = child_env(home)

    listed = orchestrator(env, "Som", "--json")
    assert listed.returncode == 0, listed.stderr
    assert [(r["tag"], r["symbol"]) for r in json.loads(listed.stdout)] == [(tag, "INFY")]

    refused = orchestrator(env, "Som", tag)  # no --note
    assert refused.returncode == 2 and "--note" in refused.stderr
    unknown = orchestrator(env, "Som", "NOSUCHTAG", "--note", "x")
    assert unknown.returncode == 2 and "no such intent" in unknown.stderr
    assert log.blocked_symbols() == {"INFY"}

    done = orchestrator(env, "Som", tag, "--note", "no fill in Kite's trades", "--order-id", "2611230001")
    assert done.returncode == 0, done.stderr
    assert "new entries of INFY are allowed again" in done.stdout
    intent = log.get(tag)
    assert intent is not None and intent["status"] == RESOLVED and intent["broker_id"] == "2611230001"
    assert "no fill" in intent["note"] and log.blocked_symbols() == set()
    again = orchestrator(env, "Som", tag, "--note", "twice")
    assert again.returncode == 2 and "status is resolved" in again.stderr
