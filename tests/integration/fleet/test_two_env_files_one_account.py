"""Issue 15 item 1, "Two env files, one Kite account": a symlink ``env/Sai.env -> Som.env`` or two
copies with the same API key passed ``users`` and ``doctor`` with the same fingerprint on both rows,
and both processes then traded the one account. Refused everywhere a user is started or listed,
through the real command line and real worker processes (the orchestrator holds no secret: each
user's own process reports its key's fingerprint)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from kitefleet.exitcodes import ExitCode
from kitefleet.home import Home
from tests.support.fleet import fleet_home, orchestrator
from tests.support.homes import write_env

PAIR = "env/Sai.env and env/Som.env are one Kite account"


@pytest.fixture(params=["copy", "symlink"])
def home(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Home, str | None]:
    home, clock = fleet_home(tmp_path / "home", {"Som": {}, "Ravi": {}})
    if request.param == "copy":
        write_env(home, "Sai", api_key="keysom0001", api_secret="another-secret-S3CR3T")
    else:
        os.symlink("Som.env", home.env_file("Sai"))
    return home, clock


def _one_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, text
    return lines[0]


def test_users_fails_two_env_files_one_account(home: tuple[Home, str | None]) -> None:
    h, _ = home
    out = orchestrator(h, "users", "--json")
    assert out.returncode == ExitCode.CONFIG, out.stdout + out.stderr
    rows = {r["user"]: r for r in json.loads(out.stdout)}
    assert rows["Ravi"]["valid"] is True
    for user in ("Som", "Sai"):
        assert rows[user]["valid"] is False
        assert PAIR in rows[user]["error"] and "\n" not in rows[user]["error"]
    assert "S3CR3T" not in out.stdout + out.stderr


def test_doctor_fails_two_env_files_one_account(home: tuple[Home, str | None]) -> None:
    h, clock = home
    out = orchestrator(h, "doctor", "--json", clock=clock, timeout=180)
    assert out.returncode == ExitCode.JOB_FAILED
    rows = [r for r in json.loads(out.stdout)["rows"] if r["check"] == "account"]
    assert {r["user"] for r in rows} == {"Som", "Sai"}
    assert all(r["status"] == "fail" and PAIR in r["detail"] for r in rows)


def test_supervisor_conf_leaves_out_two_env_files_one_account(home: tuple[Home, str | None]) -> None:
    h, _ = home
    out = orchestrator(h, "supervisor-conf")
    assert out.returncode == ExitCode.OK, out.stderr
    conf = (h.generated_conf_dir / "trader.conf").read_text()
    assert "[program:Ravi]" in conf
    assert "[program:Som]" not in conf and "[program:Sai]" not in conf
    assert "programs=Ravi\n" in conf
    assert f"{PAIR}" in out.stderr and "Som left out" in out.stderr and "Sai left out" in out.stderr
    assert "1 user program(s)" in out.stdout


@pytest.mark.parametrize("argv", [("run", "Som", "whoami"), ("run", "Sai", "whoami"),
                                  ("run-all", "whoami"), ("exec", "Som")])
def test_run_run_all_exec_refuse_two_env_files_one_account(home: tuple[Home, str | None],
                                                           argv: tuple[str, ...]) -> None:
    h, clock = home
    out = orchestrator(h, *argv, clock=clock)
    assert out.returncode == ExitCode.CONFIG, out.stdout + out.stderr
    line = _one_line(out.stderr)
    assert PAIR in line
    assert '"user"' not in out.stdout  # no whoami of the refused user ran as a job
    assert not (h.user_logs_dir("Som") / "daemon.log").exists()


def test_an_env_file_that_is_a_symlink_is_refused_alone(tmp_path: Path) -> None:
    h, _ = fleet_home(tmp_path / "home", {"Som": {}})
    real = tmp_path / "elsewhere.env"
    h.env_file("Som").rename(real)
    os.symlink(real, h.env_file("Som"))
    out = orchestrator(h, "run", "Som", "whoami")
    assert out.returncode == ExitCode.CONFIG
    assert _one_line(out.stderr).endswith(
        "env/Som.env: is a symbolic link; an env file must be a regular file of its own (two names for one "
        "file would let two users trade one account): replace the link with the user's own file")


def test_an_env_file_not_owned_by_the_fleet_user_is_refused(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("giving a file to another uid needs root")
    h, _ = fleet_home(tmp_path / "home", {"Som": {}})
    os.chown(h.env_file("Som"), 4242, -1)
    out = orchestrator(h, "run", "Som", "whoami")
    assert out.returncode == ExitCode.CONFIG
    assert "env/Som.env: owned by uid 4242, not by the user running the fleet" in _one_line(out.stderr)
