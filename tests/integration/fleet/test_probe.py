"""fleet.probe: one JSON line from a process of one user, one timeout policy (issue 13)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fleet import probe
from kitefleet.home import Home
from tests.support.homes import make_home, write_env


@pytest.fixture
def home(tmp_path: Path) -> Home:
    home = make_home(tmp_path / "home")
    write_env(home, "Som")
    return home


def _gone(pid: int) -> bool:
    # A zombie keeps its /proc entry until its parent reaps it: gone means killed AND reaped.
    return not Path(f"/proc/{pid}").exists()


def test_probe_answers_with_the_users_json_line(home: Home) -> None:
    answer = probe.ask(home, "Som", "whoami")
    assert answer.ok, answer.error
    assert answer.data is not None and answer.data["user"] == "Som" and answer.data["mode"] == "paper"
    assert answer.pid is not None and _gone(answer.pid)


def test_probe_of_a_hanging_child_kills_its_group_and_reaps_it(home: Home) -> None:
    # whoami --hold prints its line, then stays alive: the probe waits for the process to end.
    answer = probe.ask(home, "Som", "whoami", ["--hold", "120"], timeout=1.5)
    assert not answer.ok and answer.timed_out
    assert answer.error == "whoami for Som gave no answer within 1.5s (its processes were killed)"
    assert "\n" not in answer.error
    assert answer.pid is not None
    assert _gone(answer.pid), "the killed probe process is still there (a zombie?)"
    with pytest.raises(ProcessLookupError):
        os.killpg(answer.pid, 0)  # its whole process group is gone too


def test_probe_error_is_the_workers_one_line(home: Home) -> None:
    home.env_file("Som").write_text("TRADER_MODE=paper\n", encoding="utf-8")
    answer = probe.ask(home, "Som", "whoami")
    assert not answer.ok and answer.exit_code == 4
    assert answer.error is not None and answer.error.startswith("env/Som.env: ") and "\n" not in answer.error


def test_probe_of_a_job_printing_no_json_is_one_line(home: Home) -> None:
    answer = probe.ask(home, "Som", "whoami", ["--help"])
    assert not answer.ok and answer.error == "whoami for Som printed no JSON answer"
