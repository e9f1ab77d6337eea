"""Review findings on secrets and isolation, each pinned by a test that fails without its fix:

* an env file's errors never echo a line that may be a secret (a token pasted alone, an unknown
  key that is no typo) nor the API key's value (at most its first 4 characters);
* job arguments cannot switch the user a process serves (a second ``--user``, ``--user=``, an
  abbreviation such as ``--us``), neither through the launcher nor at the worker itself;
* a ``KITEFLEET_HOME`` that is not a folder is a configuration error (exit 4), never created;
* ``describe()`` redacts before it truncates.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kitefleet.exitcodes import ExitCode
from kitefleet.home import Home
from kitefleet.launcher import build_child_env
from tests.support.homes import PROJECT_ROOT, child_env, make_home, write_env

PASTED = "SECRETPASTEDALONE999"


def test_the_worker_and_users_never_print_a_pasted_token(tmp_path: Path) -> None:
    home = make_home(tmp_path)
    write_env(home, "Som")
    with home.env_file("Som").open("a") as f:
        f.write(PASTED + "\nAbCdEf0123456789XyZ=zz\n")
    worker = subprocess.run([sys.executable, "-m", "workers", "whoami", "--user", "Som"], cwd=PROJECT_ROOT,
                            env=child_env(home), capture_output=True, text=True, timeout=60)
    assert worker.returncode == ExitCode.CONFIG
    users = subprocess.run([sys.executable, str(PROJECT_ROOT / "orchestrator.py"), "users"],
                           env=child_env(home), capture_output=True, text=True, timeout=60)
    assert users.returncode == ExitCode.CONFIG
    for proc in (worker, users):
        out = proc.stdout + proc.stderr
        assert "env/Som.env" in out and "not shown" in out
        assert PASTED not in out and "AbCdEf0123456789XyZ" not in out


# --- 3. job arguments cannot switch the user --------------------------------------------------------
@pytest.fixture
def two_users(tmp_path: Path) -> Home:
    home = make_home(tmp_path / "home")
    write_env(home, "Som", api_key="somkey11111")
    write_env(home, "Sai", api_key="saikey22222")
    return home


SWITCHES = [["--user", "Sai"], ["--user=Sai"], ["--us", "Sai"], ["--use=Sai"]]


def _never_sai(proc: subprocess.CompletedProcess[str]) -> None:
    out = proc.stdout + proc.stderr
    assert '"user":"Sai"' not in out and "saik" not in out and "Traceback" not in out


@pytest.mark.parametrize("switch", SWITCHES, ids=["space", "equals", "abbrev", "abbrev-equals"])
def test_the_worker_refuses_a_second_user(two_users: Home, switch: list[str]) -> None:
    proc = subprocess.run([sys.executable, "-m", "workers", "whoami", "--user", "Som", *switch],
                          cwd=PROJECT_ROOT, env=build_child_env(child_env(two_users)), capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == ExitCode.USAGE, proc.stdout + proc.stderr
    _never_sai(proc)
    if switch[0].startswith("--user"):
        assert "given twice (Som and Sai)" in proc.stderr


@pytest.mark.parametrize("switch", SWITCHES[:3], ids=["space", "equals", "abbrev"])
def test_run_with_job_args_naming_a_user_exits_2(two_users: Home, switch: list[str]) -> None:
    proc = subprocess.run([sys.executable, str(PROJECT_ROOT / "orchestrator.py"), "run", "Som", "whoami",
                           "--", *switch], env=child_env(two_users), capture_output=True, text=True, timeout=60)
    assert proc.returncode == ExitCode.USAGE, proc.stdout + proc.stderr
    _never_sai(proc)


def test_run_all_with_job_args_naming_a_user_runs_nobody_as_someone_else(two_users: Home) -> None:
    proc = subprocess.run([sys.executable, str(PROJECT_ROOT / "orchestrator.py"), "run-all", "whoami",
                           "--", "--user", "Sai"], env=child_env(two_users), capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode != 0
    _never_sai(proc)
    assert not any(line.startswith("Som | {") for line in proc.stdout.splitlines())


def test_job_args_still_reach_the_job(two_users: Home) -> None:
    proc = subprocess.run([sys.executable, str(PROJECT_ROOT / "orchestrator.py"), "run", "Som", "whoami",
                           "--", "--hold", "0", "--dry-run"], env=child_env(two_users), capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1])["user"] == "Som"


@pytest.mark.parametrize("command", [["users"], ["supervisor-conf"], ["run", "Som", "whoami"]],
                         ids=["users", "supervisor-conf", "run"])
def test_commands_refuse_a_missing_home_with_one_line(tmp_path: Path, command: list[str]) -> None:
    missing = tmp_path / "typo-home"
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "HOME", "TMPDIR")}
    env["KITEFLEET_HOME"] = str(missing)
    proc = subprocess.run([sys.executable, str(PROJECT_ROOT / "orchestrator.py"), *command], env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == ExitCode.CONFIG, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and f"KITEFLEET_HOME={missing} is not a folder" in lines[0]
    assert not missing.exists()


def test_the_worker_refuses_a_missing_home_with_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "typo-home"
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "HOME", "TMPDIR")}
    env["KITEFLEET_HOME"] = str(missing)
    proc = subprocess.run([sys.executable, "-m", "workers", "whoami", "--user", "Som"], cwd=PROJECT_ROOT,
                          env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == ExitCode.CONFIG
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "is not a folder" in lines[0]
    assert not missing.exists()
