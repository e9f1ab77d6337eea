"""kitefleet/launcher.py in-process: the child environment is built from nothing (allowlist, locales, the test marker)
and the worker's argv puts the user first."""

from __future__ import annotations

from pathlib import Path

import pytest

from kitefleet.errors import UsageError
from kitefleet.home import Home
from kitefleet.launcher import LOCALE_NAMES, TEST_MARKER_ENV, build_child_env, worker_argv


def test_every_locale_name_passes_and_nothing_else_starting_lc() -> None:
    parent = {name: "C" for name in LOCALE_NAMES} | {"LC_": "x", "LC_ALLX": "x", "lc_all": "x"}
    env = build_child_env(parent, home=Home(Path("/nonexistent")))
    assert {n for n in env if n.upper().startswith("LC_")} == set(LOCALE_NAMES)


def test_the_launcher_passes_the_fault_and_the_marker_only() -> None:
    env = build_child_env({"KITEFLEET_FAULT": "", TEST_MARKER_ENV: "pytest", "PATH": "/bin"},
                          home=Home(Path("/nonexistent")))
    assert env["KITEFLEET_FAULT"] == "" and env[TEST_MARKER_ENV] == "pytest"


def test_launcher_env_from_nothing(tmp_path: Path) -> None:
    parent = {"PATH": "/bin", "LC_ALL": "C", "KITE_API_KEY": "x", "SUPERVISOR_PROCESS_NAME": "Som",
              "TRADER_CLOCK": "2026-11-25T09:15:00+05:30,speed=60", "RANDOM_TOKEN": "y",
              "KITEFLEET_HOME": str(tmp_path)}
    env = build_child_env(parent)
    assert env["PATH"] == "/bin" and env["LC_ALL"] == "C" and env["SUPERVISOR_PROCESS_NAME"] == "Som"
    assert "KITE_API_KEY" not in env and "RANDOM_TOKEN" not in env
    assert env["KITEFLEET_HOME"] == str(tmp_path.resolve())
    assert ",anchor=" in env["TRADER_CLOCK"]  # filled in so that every child agrees on the time


def test_worker_argv_puts_the_user_first_and_refuses_job_args_naming_one() -> None:
    argv = worker_argv("Som", "whoami", ["--dry-run", "--note", "--use the force", "--", "--user"])
    assert argv[3:6] == ["whoami", "--user", "Som"]
    assert argv[6:] == ["--dry-run", "--note", "--use the force", "--", "--user"]
    for bad in (["--user", "Sai"], ["--user=Sai"], ["--u", "Sai"], ["--dry-run", "--use=Sai"]):
        with pytest.raises(UsageError, match="may not name a user"):
            worker_argv("Som", "whoami", bad)
