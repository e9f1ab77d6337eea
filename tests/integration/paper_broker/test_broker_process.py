"""The broker process itself: a private data dir (it holds every paper account's secret and
token), and one-line failures with stable exit codes for a bad or busy port."""

from __future__ import annotations

import socket
import stat
import subprocess
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from kitefleet.clock import IST
from kitefleet.exitcodes import ExitCode
from tests.support.broker import RunningBroker, broker_factory, clock_file, ensure_calendar  # noqa: F401 (fixture)
from tests.support.homes import PROJECT_ROOT, VENV_PYTHON, child_env, make_home, write_env

NOW = datetime(2026, 11, 25, 10, 0, tzinfo=IST)
FROZEN = 1e-6
#: Everything the broker itself writes in its data dir (broker.out is the test harness's capture).
SECRET_FILES = ("paper.db", "paper.db-wal", "paper.db-shm", "paper_broker.log")


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _assert_private(data_dir: Path) -> None:
    assert _mode(data_dir) == 0o700, f"{data_dir}: {_mode(data_dir):04o}"
    found = {p.name: _mode(p) for p in data_dir.iterdir() if p.name != "broker.out"}
    for name in ("paper.db", "paper_broker.log"):
        assert name in found, sorted(found)
    wider = {name: f"{mode:04o}" for name, mode in found.items() if mode != 0o600}
    assert not wider, f"files readable beyond their owner: {wider}"


def test_data_dir_and_secret_files_are_private(tmp_path: Path,
                                               broker_factory: Callable[..., RunningBroker]) -> None:  # noqa: F811
    home = make_home(tmp_path / "home")
    write_env(home, "Som")
    data_dir = home.paper_dir
    data_dir.mkdir(parents=True)
    data_dir.chmod(0o755)  # as an older broker (or a plain mkdir) left it
    clock = clock_file(tmp_path / "clock", NOW, FROZEN)

    broker = broker_factory(home, clock=clock, symbols=["INFY"])
    kite = broker.kite("Som")  # writes a session (an access token) through the WAL
    kite.place_order(variety="regular", exchange="NSE", tradingsymbol="INFY", transaction_type="BUY",
                     quantity=1, product="CNC", order_type="LIMIT", price=1000.0)
    assert (data_dir / "paper.db-wal").exists() and (data_dir / "paper.db-shm").exists()
    _assert_private(data_dir)
    assert broker.stop() == 0
    _assert_private(data_dir)

    # Files left world-readable by an older version are tightened on the next start.
    data_dir.chmod(0o755)
    for name in SECRET_FILES:
        if (data_dir / name).exists():
            (data_dir / name).chmod(0o644)
    again = broker_factory(home, clock=clock, symbols=["INFY"])
    assert again.kite("Som").profile()["user_name"] == "Som"
    _assert_private(data_dir)


def _run_broker(home_root: Path, data_dir: Path, *args: str, clock: str) -> subprocess.CompletedProcess[str]:
    env = child_env(make_home(home_root), TRADER_CLOCK=clock, PYTHONPATH=str(PROJECT_ROOT))
    argv = [str(VENV_PYTHON), "-m", "paper_broker", "--home", str(home_root), "--data-dir", str(data_dir),
            "--symbols", "INFY", *args]
    return subprocess.run(argv, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=60)


def test_port_in_use_is_one_line_and_exit_config(tmp_path: Path) -> None:
    home = make_home(tmp_path / "home")
    ensure_calendar(home, NOW.date())
    clock = clock_file(tmp_path / "clock", NOW, FROZEN)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        done = _run_broker(home.root, home.paper_dir, "--port", str(port), clock=clock)
    assert done.returncode == ExitCode.CONFIG, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.splitlines() == [f"paper broker: cannot listen on 127.0.0.1:{port}: port {port} is in use "
                                        f"(Address already in use)"]
    assert not (home.paper_dir / "broker.json").exists()
    assert f"port {port} is in use" in (home.paper_dir / "paper_broker.log").read_text(encoding="utf-8")
