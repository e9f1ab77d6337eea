"""Issue 15, item 15: hostile legacy files for ``migrate-state`` and ``import-config``. Each test is
named after its finding; nothing may be written when a file is refused."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from fleet.legacy import MAX_STATE_BYTES
from fleet.legacy_config import MAX_CONFIG_BYTES
from kitefleet.exitcodes import ExitCode
from kitefleet.home import Home
from kitefleet.state import StateStore
from tests.support.homes import PROJECT_ROOT, child_env, make_home, write_env
from tests.support.legacy import migrate, snapshot

POSITION = {"type": "LONG", "entry_price": 100.0, "quantity": 5, "product_type": "CNC"}


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Home:
    h = make_home(tmp_path / "home")
    write_env(h, "Som", api_key="somkey00001")
    write_env(h, "Sai", api_key="saikey00002")
    monkeypatch.setenv("KITEFLEET_HOME", str(h.root))
    return h


def _legacy_tree(root: Path, state_text: str) -> Path:
    """A legacy tree: trading_state.json as given; Som's orders name INFY and TCS, Sai's WIPRO."""
    (root / "Current_Orders" / "Som").mkdir(parents=True)
    (root / "Current_Orders" / "Sai").mkdir(parents=True)
    (root / "Current_Orders" / "Som" / "orders_Som_1.json").write_text(
        json.dumps({"orders": [{"ticker": "INFY"}, {"ticker": "TCS"}]}))
    (root / "Current_Orders" / "Sai" / "orders_Sai_1.json").write_text(json.dumps({"orders": [{"ticker": "WIPRO"}]}))
    (root / "trading_state.json").write_text(state_text)
    return root


def _cli(home: Home, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """The real command in a process of its own, its memory capped: a file that is read without
    end fails here (MemoryError or the timeout) instead of taking the machine down."""
    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))

    return subprocess.run([sys.executable, str(PROJECT_ROOT / "orchestrator.py"), *args], cwd=PROJECT_ROOT,
                          env=child_env(home), capture_output=True, text=True, timeout=timeout, preexec_fn=cap)


def _assert_refused(proc: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert proc.returncode == ExitCode.CONFIG, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.mark.parametrize(("body", "needle"), [
    ('{"positions": {"INFY": {"entry_price": NaN}}}', "NaN is not a JSON number"),
    ('{"positions": {"INFY": {"entry_price": -Infinity}}}', "-Infinity is not a JSON number"),
    ('{"positions": {"INFY": {"entry_price": 1e400}}}', "number '1e400' is out of range"),
    ('{"positions": {"INFY": {"quantity": ' + "9" * 5000 + "}}}", "out of range"),
    ('{"positions": {"INFY": {"x": ' + "[" * 100_000 + "]" * 100_000 + "}}}", "nested more than"),
    ('{"positions": {"INFY": {"x": ' + "[" * 40 + "]" * 40 + "}}}", "nested more than 32 levels"),
], ids=["nan", "infinity", "overflow", "huge-int", "deep-100000", "deep-40"])
def test_nan_infinity_and_deep_nesting_are_exit_4_not_tracebacks(
        home: Home, tmp_path: Path, body: str, needle: str) -> None:
    legacy = _legacy_tree(tmp_path / "legacy", body)
    before = snapshot(home.root)
    proc = _cli(home, "migrate-state", "--legacy", str(legacy / "trading_state.json"),
                "--orders-dir", str(legacy / "Current_Orders"))
    _assert_refused(proc, "trading_state.json: legacy state file", needle)
    assert snapshot(home.root) == before


def test_position_naming_two_different_users_is_not_given_to_the_first(
        home: Home, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """README, migrate-state: ambiguous positions go to the unassigned file, "never guessed". A
    position with ``user=Som`` and ``account=Sai`` went to Som, the first field read."""
    state = {"positions": {"INFY": dict(POSITION, user="Som", account="Sai"), "WIPRO": POSITION}}
    legacy = _legacy_tree(tmp_path / "legacy", json.dumps(state))
    rc, report, _ = migrate(legacy, capsys)
    assert rc == ExitCode.OK, report
    assert "INFY" not in StateStore(home, "Som", "paper").read().get("positions", {})
    assert "INFY" not in StateStore(home, "Sai", "paper").read().get("positions", {})
    doc: dict[str, Any] = json.loads(next((home.data_dir / "migration").glob("unassigned_*.json")).read_text())
    entry = doc["positions"]["INFY"]
    assert entry["status"] == "unassigned" and "names more than one user (user=Som, account=Sai)" in entry["reason"]
    assert "WIPRO" in StateStore(home, "Sai", "paper").read()["positions"]


def _fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


def _sparse(path: Path, size: int) -> Path:
    with path.open("wb") as f:
        f.truncate(size)
    return path


@pytest.mark.parametrize("kind", ["fifo", "dev-zero", "oversize"])
def test_migrate_state_refuses_a_fifo_a_device_and_an_oversize_file(home: Home, tmp_path: Path, kind: str) -> None:
    """A FIFO as --legacy hung migrate-state; /dev/zero grew until the OOM killer came."""
    legacy = _legacy_tree(tmp_path / "legacy", json.dumps({"positions": {"INFY": POSITION}}))
    target = {"fifo": lambda: _fifo(tmp_path / "state.fifo"), "dev-zero": lambda: Path("/dev/zero"),
              "oversize": lambda: _sparse(tmp_path / "big.json", MAX_STATE_BYTES + 1)}[kind]()
    before = snapshot(home.root)
    proc = _cli(home, "migrate-state", "--legacy", str(target), "--orders-dir", str(legacy / "Current_Orders"))
    _assert_refused(proc, str(target), "larger than 16 MB" if kind == "oversize" else "not a regular file")
    assert snapshot(home.root) == before


def test_migrate_state_refuses_a_fifo_among_the_order_files(home: Home, tmp_path: Path) -> None:
    legacy = _legacy_tree(tmp_path / "legacy", json.dumps({"positions": {"INFY": POSITION}}))
    fifo = _fifo(legacy / "Current_Orders" / "Som" / "orders_Som_2.json")
    proc = _cli(home, "migrate-state", "--legacy", str(legacy / "trading_state.json"),
                "--orders-dir", str(legacy / "Current_Orders"))
    _assert_refused(proc, str(fifo), "not a regular file")


@pytest.mark.parametrize("kind", ["fifo", "dev-zero", "oversize"])
def test_import_config_refuses_a_fifo_a_device_and_an_oversize_file(home: Home, tmp_path: Path, kind: str) -> None:
    target = {"fifo": lambda: _fifo(tmp_path / "config.fifo"), "dev-zero": lambda: Path("/dev/zero"),
              "oversize": lambda: _sparse(tmp_path / "config.ini", MAX_CONFIG_BYTES + 1)}[kind]()
    before = snapshot(home.root)
    proc = _cli(home, "import-config", str(target))
    _assert_refused(proc, str(target), "larger than 1 MB" if kind == "oversize" else "not a regular file")
    assert snapshot(home.root) == before
