"""Isolation by construction: each worker process sees only the allowlisted variables, its own
settings keys and its own key's fingerprint, whatever the parent environment holds."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kitefleet.home import Home
from kitefleet.launcher import ALLOWED_NAMES, build_child_env
from kitefleet.settings import api_key_fingerprint
from tests.support.homes import PROJECT_ROOT, make_home, write_env

USERS = {
    "Som": ("somkey11111", "som-secret-AAAAAAAA"),
    "Sai": ("saikey22222", "sai-secret-BBBBBBBB"),
}
THIRD = ("annkey33333", "ann-secret-CCCCCCCC")
UNRELATED = "AWS_SECRET_ACCESS_KEY"
UNRELATED_VALUE = "unrelated-secret-DDDDDDDD"
ALLOWED_IN_CHILD = ALLOWED_NAMES | {"KITEFLEET_HOME", "PYTHONUNBUFFERED", "TRADER_CLOCK", "KITEFLEET_FAULT",
                                    "KITEFLEET_TEST_MARKER"}


@pytest.fixture
def home(tmp_path: Path) -> Home:
    home = make_home(tmp_path / "home")
    for user, (key, secret) in USERS.items():
        write_env(home, user, api_key=key, api_secret=secret)
    return home


def leaky_parent_env(home: Home) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        KITEFLEET_HOME=str(home.root),
        KITE_API_KEY=THIRD[0],
        KITE_API_SECRET=THIRD[1],
        **{UNRELATED: UNRELATED_VALUE},
    )
    return env


def orchestrator(home: Home, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(PROJECT_ROOT / "orchestrator.py"), *args],
                          env=leaky_parent_env(home), capture_output=True, text=True, timeout=timeout)


def check_whoami(info: dict[str, object], user: str) -> None:
    assert info["user"] == user
    assert info["mode"] == "paper"
    assert set(info["env_keys"]) <= ALLOWED_IN_CHILD, set(info["env_keys"]) - ALLOWED_IN_CHILD  # type: ignore[arg-type]
    assert "KITE_API_KEY" not in info["env_keys"]  # type: ignore[operator]
    assert info["settings_keys"] == ["KITE_API_KEY", "KITE_API_SECRET", "TRADER_MODE"]
    assert info["api_key_fingerprint"] == api_key_fingerprint(USERS[user][0])


def all_secrets() -> list[str]:
    return [THIRD[0], THIRD[1], UNRELATED_VALUE] + [s for _, s in USERS.values()] + [k for k, _ in USERS.values()]


def test_run_all_whoami_isolates_users(home: Home) -> None:
    proc = orchestrator(home, "run-all", "whoami")
    assert proc.returncode == 0, proc.stderr
    seen = {}
    for line in proc.stdout.splitlines():
        if " | {" in line:
            user, _, payload = line.partition(" | ")
            seen[user.strip()] = json.loads(payload)
    assert set(seen) == set(USERS)
    for user, info in seen.items():
        check_whoami(info, user)
    assert len({info["pid"] for info in seen.values()}) == 2
    # the summary table names every user with exit code 0
    for user in USERS:
        assert any(line.startswith(user) and " 0 " in line for line in proc.stdout.splitlines())
    # nothing secret on the orchestrator's output, and the own key only as a fingerprint
    for secret in all_secrets():
        assert secret not in proc.stdout + proc.stderr


def test_run_single_user_whoami(home: Home) -> None:
    proc = orchestrator(home, "run", "Sai", "whoami")
    assert proc.returncode == 0, proc.stderr
    check_whoami(json.loads(proc.stdout.strip().splitlines()[-1]), "Sai")


def test_proc_environ_of_live_child_holds_no_secret(home: Home) -> None:
    proc = subprocess.Popen([sys.executable, str(PROJECT_ROOT / "orchestrator.py"), "run", "Som", "whoami",
                             "--", "--hold", "30"], env=leaky_parent_env(home), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert proc.stdout is not None
        info = json.loads(proc.stdout.readline())
        environ = Path(f"/proc/{info['pid']}/environ").read_bytes()
        cmdline = Path(f"/proc/{info['pid']}/cmdline").read_bytes()
        names = {entry.split(b"=", 1)[0].decode() for entry in environ.split(b"\0") if entry}
        assert names <= ALLOWED_IN_CHILD
        for secret in all_secrets():
            assert secret.encode() not in environ
            assert secret.encode() not in cmdline
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def test_logs_contain_no_secret(home: Home) -> None:
    assert orchestrator(home, "run-all", "whoami").returncode == 0
    logs = list(home.logs_dir.rglob("*.log"))
    assert {p.parent.name for p in logs} == set(USERS)
    for path in logs:
        text = path.read_text()
        assert "user=" in text and "job=whoami" in text
        for secret in all_secrets():
            assert secret not in text, f"{secret} leaked into {path}"


def test_supervisor_name_mismatch_is_refused(home: Home) -> None:
    env = leaky_parent_env(home)
    env["SUPERVISOR_PROCESS_NAME"] = "Sai"
    proc = subprocess.run([sys.executable, "-m", "workers", "whoami", "--user", "Som"], cwd=PROJECT_ROOT,
                          env=build_child_env(env), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 4
    assert "user mismatch" in proc.stderr and "Sai" in proc.stderr


def test_run_all_stops_children_by_group_on_sigterm(home: Home) -> None:
    proc = subprocess.Popen([sys.executable, str(PROJECT_ROOT / "orchestrator.py"), "run-all", "whoami", "--",
                             "--hold", "60"], env=leaky_parent_env(home), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    pids = []
    while len(pids) < 2:
        line = proc.stdout.readline()
        assert line, proc.stderr.read() if proc.stderr else ""
        if " | {" in line:
            pids.append(json.loads(line.partition(" | ")[2])["pid"])
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    _out, _ = proc.communicate(timeout=30)
    assert time.monotonic() - started < 10
    assert proc.returncode == 1  # the run did not complete
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists() or b"zombie" in Path(f"/proc/{pid}/status").read_bytes().lower()


def test_run_all_reports_failures_and_max_parallel(home: Home) -> None:
    write_env(home, "Bad", KITE_API_KEYY="x")
    proc = orchestrator(home, "run-all", "whoami", "--max-parallel", "1")
    assert proc.returncode == 1
    assert any(line.startswith("Bad | ") and "KITE_API_KEYY" in line for line in proc.stdout.splitlines())
    assert any(line.startswith("Bad") and " 4 " in line for line in proc.stdout.splitlines())
    proc = orchestrator(home, "run-all", "whoami", "--users", "Som,Nobody")
    assert proc.returncode == 2 and "Nobody" in proc.stderr


def test_run_all_whoami_for_two_users_copied_from_example_env(tmp_path: Path) -> None:
    home = make_home(tmp_path / "home")
    example = (PROJECT_ROOT / "env" / "example.env").read_text()
    for user in ("Som", "Sai"):
        # Each user's own key: two env files with one key are one account, refused (issue 15).
        home.env_file(user).write_text(example.replace("KITE_API_KEY=your_api_key",
                                                       f"KITE_API_KEY=your_api_key_{user.lower()}"))
        home.env_file(user).chmod(0o600)
    proc = orchestrator(home, "run-all", "whoami")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    users = {json.loads(line.partition(" | ")[2])["user"] for line in proc.stdout.splitlines() if " | {" in line}
    assert users == {"Som", "Sai"}
