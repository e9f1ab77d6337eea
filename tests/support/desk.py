"""A tmp home, its paper broker process and a clock file every process reads: the rig of the
job tests that run real worker processes (place_orders_daily, update_cnc_stoploss, status, doctor)."""

from __future__ import annotations

import csv
import json
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

from kiteconnect import KiteConnect

from kitefleet.clock import write_clock_file
from kitefleet.home import Home
from kitefleet.settings import load_settings
from kitefleet.state import StateStore
from tests.support.broker import RunningBroker, clock_file
from tests.support.homes import PROJECT_ROOT, VENV_PYTHON, child_env, make_home, write_env
from workers.context import FAULT_ENV
from workers.strategy.patterns import SCAN_COLUMNS, ScanResult


@dataclass
class Desk:
    """A tmp home, its paper broker and the clock file every process reads."""

    home: Home
    broker: RunningBroker
    clock_path: Path
    clock_value: str
    users: tuple[str, ...]
    kites: dict[str, KiteConnect] = field(default_factory=dict)

    def at(self, when: datetime) -> None:
        """Move every process's clock (the broker's included) and wait until the broker sees it."""
        write_clock_file(self.clock_path, when)
        self.kites.clear()  # a Kite token lives until 06:00 the next day: log in again after a jump
        deadline = time.monotonic() + 20
        while self.broker.now() < when:
            assert time.monotonic() < deadline, f"broker clock did not reach {when}"
            time.sleep(0.02)

    def run(self, user: str, job: str, *args: str, fault: str | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
        env = child_env(self.home, TRADER_CLOCK=self.clock_value, PYTHONPATH=str(PROJECT_ROOT))
        if fault:
            env[FAULT_ENV] = fault
        return subprocess.run([str(VENV_PYTHON), "-m", "workers", job, "--user", user, *args], cwd=PROJECT_ROOT,
                              env=env, capture_output=True, text=True, timeout=timeout)

    def ok(self, user: str, job: str, *args: str) -> dict[str, Any]:
        """Run with --json, expect exit 0, return the JSON summary line."""
        proc = self.run(user, job, "--json", *args)
        assert proc.returncode == 0, f"{job} {user} exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        return last_json(proc.stdout)

    def orchestrator(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = child_env(self.home, TRADER_CLOCK=self.clock_value, PYTHONPATH=str(PROJECT_ROOT))
        return subprocess.run([str(VENV_PYTHON), str(PROJECT_ROOT / "orchestrator.py"), *args], cwd=PROJECT_ROOT,
                              env=env, capture_output=True, text=True, timeout=60)

    def kite(self, user: str) -> KiteConnect:
        """The test's own client for ``user`` (to look at the account, or to sell by hand)."""
        if user not in self.kites:
            self.kites[user] = self.broker.kite(user)
        return self.kites[user]

    def api_key(self, user: str) -> str:
        return load_settings(self.home, user).api_key

    def writes(self, since: int = 0) -> list[dict[str, Any]]:
        """Audited order and GTT writes (every user), from audit row ``since`` on."""
        return [r for r in self.broker.audit()[since:]
                if r["method"] in ("POST", "PUT", "DELETE") and r["path"].startswith(("/orders", "/gtt"))]

    def audit_len(self) -> int:
        return len(self.broker.audit())

    def state(self, user: str) -> dict[str, Any]:
        return StateStore(self.home, user, "paper").read()

    def write_scan(self, user: str, session: date, rows: list[ScanResult]) -> Path:
        folder = self.home.user_data_dir(user) / "scans"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"pattern_daily_{session:%Y%m%d}.csv"
        with path.open("w", encoding="utf-8", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=SCAN_COLUMNS, lineterminator="\n")
            writer.writeheader()
            for r in rows:
                writer.writerow(r.as_row())
        return path

    def ltp(self, user: str, symbol: str) -> float:
        return float(self.kite(user).ltp(f"NSE:{symbol}")[f"NSE:{symbol}"]["last_price"])


def last_json(text: str) -> dict[str, Any]:
    for line in reversed(text.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)  # type: ignore[no-any-return]
    raise AssertionError(f"no JSON line in output:\n{text}")


def open_desk(tmp_path: Path, factory: Callable[..., RunningBroker], users: dict[str, dict[str, object]],
              start: datetime, symbols: list[str], scenario: dict[str, Any] | None = None) -> Desk:
    home = make_home(tmp_path / "home")
    for user in users:
        write_env(home, user)
    clock_path = tmp_path / "clock"
    value = clock_file(clock_path, start)
    scenario_path = None
    if scenario is not None:
        scenario_path = tmp_path / "scenario.json"
        scenario_path.write_text(json.dumps(scenario), encoding="utf-8")
    broker = factory(home, clock=value, symbols=symbols, scenario=scenario_path)
    for user, extra in users.items():
        write_env(home, user, KITE_ROOT=broker.url, **extra)  # same keys: the broker's accounts still match
    return Desk(home, broker, clock_path, value, tuple(users))
