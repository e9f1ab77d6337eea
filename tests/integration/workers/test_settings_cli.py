"""A bad env file seen by a real worker process: one line of stderr and exit 4."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from kitefleet.exitcodes import ExitCode
from tests.support.homes import PROJECT_ROOT, child_env, make_home, write_env

GOOD = "TRADER_MODE=paper\nKITE_API_KEY=abcd1234\nKITE_API_SECRET=s3cr3t-value\n"


def test_cli_config_error_exit_code_and_one_line(tmp_path: Path) -> None:
    home = make_home(tmp_path)
    write_env(home, "Som", KITE_API_KEYY="x")
    before = home.env_file("Som").read_bytes()
    proc = subprocess.run([sys.executable, "-m", "workers", "whoami", "--user", "Som"], cwd=PROJECT_ROOT,
                          env=child_env(home), capture_output=True, text=True, timeout=60)
    assert proc.returncode == ExitCode.CONFIG
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "env/Som.env" in lines[0] and "KITE_API_KEYY" in lines[0]
    assert "Traceback" not in proc.stderr
    assert home.env_file("Som").read_bytes() == before


def test_cli_line_that_does_not_parse_is_one_line_of_stderr(tmp_path: Path) -> None:
    home = make_home(tmp_path)
    path = home.env_file("Som")
    path.write_text(GOOD + "this is a bad line\n")
    path.chmod(0o600)
    proc = subprocess.run([sys.executable, "-m", "workers", "whoami", "--user", "Som"], cwd=PROJECT_ROOT,
                          env=child_env(home), capture_output=True, text=True, timeout=60)
    assert proc.returncode == ExitCode.CONFIG
    assert proc.stderr.strip().splitlines() == ["whoami: error: env/Som.env: line 4 does not parse"]
