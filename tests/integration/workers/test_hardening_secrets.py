"""Issue 15, items 4-6: secrets pasted into harmless keys, the LC_ allowlist, and the test-only
fault variable."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from kitefleet.home import Home
from kitefleet.launcher import TEST_MARKER_ENV
from tests.support import fault_job
from tests.support.broker import start_broker
from tests.support.homes import PROJECT_ROOT, child_env, make_home, write_env

PASTED = "Zq9PaStEdSeCrEt4711xyz"


def _orchestrator(home: Home, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(PROJECT_ROOT / "orchestrator.py"), *args], env=child_env(home),
                          capture_output=True, text=True, timeout=120)


# --- 4. a secret pasted as the value of a non-secret key ------------------------------------------
def test_secret_pasted_into_a_non_secret_key_is_never_printed(tmp_path: Path) -> None:
    """README, "Env files": the line naming a refused value "never shows a secret". A secret pasted
    as KITE_ROOT, MIN_SCORE or TRADER_MODE was printed whole by ``users``, ``supervisor-conf`` and
    the paper broker's log; now the key, its line and the expected form are named, no value."""
    home = make_home(tmp_path / "home")
    write_env(home, "Good", api_key="goodkey00001")
    write_env(home, "Root", api_key="rootkey00002", KITE_ROOT=PASTED)
    write_env(home, "Score", api_key="scorekey0003", MIN_SCORE=PASTED)
    write_env(home, "Mode", mode=PASTED, api_key="modekey00004")

    users = _orchestrator(home, "users")
    assert users.returncode == 4, users.stdout + users.stderr
    assert "KITE_ROOT (line 4) must look like http://127.0.0.1:8765" in users.stdout
    assert "MIN_SCORE (line 4) must be an integer" in users.stdout
    assert "TRADER_MODE (line 1) must be one of paper, live" in users.stdout
    conf = _orchestrator(home, "supervisor-conf")
    broker = start_broker(home)
    broker.stop()
    log = broker.log_text() + broker.output()
    assert "Root" in log  # the paper broker did read and refuse the file
    generated = "".join(p.read_text(encoding="utf-8") for p in (home.root / "run").rglob("*.conf"))
    for text in (users.stdout + users.stderr, conf.stdout + conf.stderr, log, generated):
        assert PASTED not in text and PASTED[:8] not in text


# --- 5. only the locale variables by name pass the launcher ---------------------------------------
def test_lc_prefixed_secret_does_not_pass_the_launcher(tmp_path: Path) -> None:
    """README, "How a worker process is born": nothing but the listed variables passes, "so a key
    exported in the shell that started supervisord never reaches a worker". Any ``LC_`` name used
    to pass; ``LC_KITE_API_SECRET`` reached every user's worker."""
    home = make_home(tmp_path / "home")
    write_env(home, "Som", api_key="somkey00001")
    write_env(home, "Sai", api_key="saikey00002")
    env = child_env(home, LC_KITE_API_SECRET=PASTED, LC_ALL="C.UTF-8", LC_TELEPHONE="C", LC_FOO="x")
    proc = subprocess.run([sys.executable, str(PROJECT_ROOT / "orchestrator.py"), "run-all", "whoami"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = [json.loads(line.split(" | ", 1)[1]) for line in proc.stdout.splitlines()
            if " | {" in line]
    assert {r["user"] for r in rows} == {"Som", "Sai"}
    for row in rows:
        assert "LC_ALL" in row["env_keys"] and "LC_TELEPHONE" in row["env_keys"]
        assert "LC_KITE_API_SECRET" not in row["env_keys"] and "LC_FOO" not in row["env_keys"]
    assert PASTED not in proc.stdout + proc.stderr


# --- 6. KITEFLEET_FAULT only under the test suite, only in paper mode ------------------------------
def _fault_job(home: Home, **env: str) -> subprocess.CompletedProcess[str]:
    full = child_env(home, PYTHONPATH=str(PROJECT_ROOT), **env)
    full.pop(TEST_MARKER_ENV, None)
    if "marker" in env:
        full[TEST_MARKER_ENV] = full.pop("marker")
    return subprocess.run([sys.executable, "-c", fault_job.RUNNER, "fault_job", "--user", "Som"],
                          cwd=PROJECT_ROOT, env=full, capture_output=True, text=True, timeout=60)


def test_kitefleet_fault_from_an_operator_shell_is_not_honoured(tmp_path: Path) -> None:
    """A stray ``KITEFLEET_FAULT`` exported in an operator's shell used to SIGKILL any worker at
    its fault point, paper or live; without the test suite's marker it now does nothing."""
    home = make_home(tmp_path / "home")
    write_env(home, "Som")
    stray = _fault_job(home, KITEFLEET_FAULT="after_intent")
    assert stray.returncode == 0, stray.stdout + stray.stderr
    assert "survived the fault point" in stray.stdout
    assert "KITEFLEET_FAULT ignored" in (home.user_logs_dir("Som") / "fault_job.log").read_text()
    armed = _fault_job(home, KITEFLEET_FAULT="after_intent", marker="pytest")
    assert armed.returncode == -9 and "survived" not in armed.stdout  # the test suite's faults still work


def test_kitefleet_fault_in_live_mode_is_refused_at_start(tmp_path: Path) -> None:
    home = make_home(tmp_path / "home")
    write_env(home, "Som", mode="live")
    for env in ({"KITEFLEET_FAULT": "after_send"}, {"KITEFLEET_FAULT": "", "marker": "pytest"}):
        proc = _fault_job(home, **env)
        assert proc.returncode == 4, proc.stdout + proc.stderr
        assert proc.stderr.strip().splitlines() == [
            "fault_job: error: KITEFLEET_FAULT is set: fault injection is for the test suite and never "
            "runs in live mode; unset KITEFLEET_FAULT"]
        assert "survived" not in proc.stdout
