"""The broker process itself: a private data dir (it holds every paper account's secret and
token), and one-line failures with stable exit codes for a bad or busy port."""

from __future__ import annotations

import socket
import stat
import subprocess
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest

from kitefleet.clock import IST, clock_from_value
from kitefleet.errors import ConfigError
from kitefleet.exitcodes import ExitCode
from paper_broker.__main__ import main
from paper_broker.app import BindError, BrokerConfig, PaperBroker
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


def test_a_shared_sticky_data_dir_is_refused(tmp_path: Path) -> None:
    home = make_home(tmp_path / "home")
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    ensure_calendar(home, NOW.date())
    with pytest.raises(ConfigError, match="sticky"):
        PaperBroker(BrokerConfig(home=home, data_dir=shared, port=0, symbols=["INFY"]),
                    clock=clock_from_value(clock_file(tmp_path / "clock", NOW, FROZEN)))
    assert _mode(shared) == 0o1777 and not (shared / "paper.db").exists()


@pytest.mark.parametrize("port", ["99999", "-1", "80a"])
def test_port_outside_the_range_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                 port: str) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--port", port, "--home", str(tmp_path), "--data-dir", str(tmp_path / "data")])
    assert info.value.code == ExitCode.USAGE
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("paper_broker: error: argument --port: ")
    assert "0 to 65535" in err
    assert not (tmp_path / "data").exists()


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


def test_port_beyond_the_socket_range_raises_bind_error(tmp_path: Path) -> None:
    """A caller that skips the CLI (BrokerConfig built in code) gets a BindError, not an
    OverflowError from the socket layer."""
    home = make_home(tmp_path / "home")
    ensure_calendar(home, NOW.date())
    clock = clock_from_value(clock_file(tmp_path / "clock", NOW, FROZEN))
    with pytest.raises(BindError, match="port 70000 is not allowed") as info:
        PaperBroker(BrokerConfig(home=home, data_dir=home.paper_dir, port=70000, symbols=["INFY"]), clock=clock)
    assert info.value.exit_code == ExitCode.CONFIG
