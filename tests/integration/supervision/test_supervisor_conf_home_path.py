"""Issue 15 item 16: a home path containing a space, '%' or '"' produced a supervisord config that
started no program (the include was split on the space), refused to start ('%' expanded again) or
truncated KITEFLEET_HOME, while ``supervisor-conf`` exited 0. The config is now read back by
supervisord's own parser: command, environment, directory and log file round-trip exactly, and a
home it cannot hold is refused with one line, nothing written."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import pytest

from fleet import supervisor
from kitefleet.exitcodes import ExitCode
from kitefleet.heartbeat import read_heartbeat
from kitefleet.home import Home
from tests.support.fleet import env_for, fleet_home, kill_group, orchestrator, poll
from tests.support.homes import PROJECT_ROOT

SUPERVISORD = PROJECT_ROOT / ".venv" / "bin" / "supervisord"


def _odd_home(tmp_path: Path, name: str) -> tuple[Home, str | None]:
    return fleet_home(tmp_path / name, {"Som": {}})


@pytest.mark.parametrize("name", ['h 5%d', 'h "q" 5%', "h 'q' x"])
def test_home_with_space_percent_or_quote_round_trips_through_supervisords_parser(tmp_path: Path,
                                                                                  name: str) -> None:
    home, _ = _odd_home(tmp_path, name)
    out = orchestrator(home, "supervisor-conf", "--external-broker")
    assert out.returncode == ExitCode.OK, out.stderr
    programs = supervisor.parse_installed(home)  # the whole config, includes and all, as supervisord reads it
    som = programs["trader:Som"]
    assert som["environment"] == {"KITEFLEET_HOME": str(home.root)}
    assert som["stdout_logfile"] == str(home.user_logs_dir("Som") / "scheduler.out.log")
    assert som["argv"][1:4] == [str(PROJECT_ROOT / "orchestrator.py"), "exec", "Som"]
    assert som["directory"] == str(PROJECT_ROOT)
    check = orchestrator(home, "supervisor-conf", "--check")
    assert check.returncode == ExitCode.OK, check.stderr
    assert "read back by supervisord's parser" in check.stdout


@pytest.mark.parametrize(("name", "why"), [
    ("h 'a\" b", "contains both ' and \""),
    # supervisord strips quote characters from both ends of an environment value
    ("h 'q'", "supervisord would read trader:Som's environment as"),
])
def test_home_supervisord_cannot_hold_is_refused_with_one_line(tmp_path: Path, name: str, why: str) -> None:
    home, _ = _odd_home(tmp_path, name)
    out = orchestrator(home, "supervisor-conf")
    assert out.returncode == ExitCode.CONFIG
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and why in lines[0]
    assert not supervisor.generated_path(home).exists()


@pytest.mark.supervisord
def test_real_supervisord_starts_the_user_in_a_home_with_a_space_and_percent(tmp_path: Path) -> None:
    home, clock = _odd_home(tmp_path, "h 5%d")
    assert orchestrator(home, "supervisor-conf", "--external-broker", "--startsecs", "1").returncode == 0
    env = env_for(home, clock)
    env.pop("PYTHONPATH", None)
    out = open(home.root / "supervisord.out", "ab")  # noqa: SIM115
    with out:
        proc = subprocess.Popen([str(SUPERVISORD), "-c", str(home.supervisord_conf), "-n"], cwd=home.root, env=env,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        # Som's scheduler writes its heartbeat in this home: supervisord found the program, started
        # it, and passed KITEFLEET_HOME whole.
        beat = poll(lambda: proc.poll() is None and read_heartbeat(home, "Som"), 60,
                    "Som's heartbeat under supervisord")
        assert beat["pid"] > 0
        info = poll(lambda: (i := supervisor.rpc(home).supervisor.getProcessInfo("trader:Som"))
                    and i["statename"] == "RUNNING" and i, 30, "trader:Som RUNNING")
        assert info["pid"] == beat["pid"]
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                kill_group(proc)
