"""paper_broker/app.py and __main__.py in-process: data dir and port refusals."""

from __future__ import annotations

import stat
from datetime import datetime
from pathlib import Path

import pytest

from kitefleet.clock import IST, clock_from_value
from kitefleet.errors import ConfigError
from kitefleet.exitcodes import ExitCode
from paper_broker.__main__ import main
from paper_broker.app import BindError, BrokerConfig, PaperBroker
from tests.support.broker import clock_file, ensure_calendar
from tests.support.homes import make_home

NOW = datetime(2026, 11, 25, 10, 0, tzinfo=IST)
FROZEN = 1e-6


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


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


def test_port_beyond_the_socket_range_raises_bind_error(tmp_path: Path) -> None:
    """A caller that skips the CLI (BrokerConfig built in code) gets a BindError, not an
    OverflowError from the socket layer."""
    home = make_home(tmp_path / "home")
    ensure_calendar(home, NOW.date())
    clock = clock_from_value(clock_file(tmp_path / "clock", NOW, FROZEN))
    with pytest.raises(BindError, match="port 70000 is not allowed") as info:
        PaperBroker(BrokerConfig(home=home, data_dir=home.paper_dir, port=70000, symbols=["INFY"]), clock=clock)
    assert info.value.exit_code == ExitCode.CONFIG
