"""supervisor-conf --external-broker: the paper broker runs outside supervisord (the demo's own)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from fleet import supervisor
from tests.support.homes import PROJECT_ROOT, child_env, make_home, write_env


def conf(home_env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(PROJECT_ROOT / "orchestrator.py"), "supervisor-conf", *args],
                          env=home_env, capture_output=True, text=True, timeout=120)


def test_external_broker_is_remembered_and_checked(tmp_path: Path) -> None:
    home = make_home(tmp_path / "home")
    write_env(home, "Som")
    env = child_env(home)
    generated = supervisor.generated_path(home)
    assert conf(env).returncode == 0
    assert f"[program:{supervisor.PAPER_BROKER}]" in generated.read_text()
    assert conf(env, "--external-broker").returncode == 0
    text = generated.read_text()
    assert f"[program:{supervisor.PAPER_BROKER}]" not in text and "[program:Som]" in text
    assert conf(env, "--check").returncode == 0  # compares like with like
    assert conf(env).returncode == 0  # a plain rerun keeps the choice
    assert f"[program:{supervisor.PAPER_BROKER}]" not in generated.read_text()
    assert conf(env, "--supervised-broker").returncode == 0
    assert f"[program:{supervisor.PAPER_BROKER}]" in generated.read_text()
