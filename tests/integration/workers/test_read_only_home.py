"""Issue 15, item 13: a home the worker cannot write is one line naming the folder, exit 4.

Root ignores file modes, so the home is made read-only for real: bind-mounted read-only in a
private mount namespace (``unshare -rm``) that only the command under test lives in.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from kitefleet.exitcodes import ExitCode
from kitefleet.home import Home
from tests.support.homes import PROJECT_ROOT, child_env, make_home, write_env

_RO = 'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" && exec "$@"'


def _read_only_works() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", _RO, str(PROJECT_ROOT), "true"],
                           capture_output=True, timeout=30)
    return probe.returncode == 0


pytestmark = pytest.mark.skipif(not _read_only_works(), reason="cannot mount read-only here (unshare -rm)")


def _run_read_only(folder: Path, home: Home, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["unshare", "-rm", "sh", "-c", _RO, str(folder), sys.executable, *argv],
                          cwd=PROJECT_ROOT, env=child_env(home, PYTHONPATH=str(PROJECT_ROOT)),
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def home(tmp_path: Path) -> Home:
    home = make_home(tmp_path / "home")
    write_env(home, "Som", KITE_ROOT="http://127.0.0.1:9")
    return home


@pytest.mark.parametrize("job", ["whoami", "daemon", "update_cnc_stoploss"])
def test_read_only_home_is_one_line_naming_the_folder_exit_4(home: Home, job: str) -> None:
    """README: a worker's every failure "ends with one line on stderr and a stable exit code"; a
    read-only home printed a traceback and exited 1."""
    proc = _run_read_only(home.root, home, "-m", "workers", job, "--user", "Som")
    assert proc.returncode == ExitCode.CONFIG, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    # logs/Som does not exist yet: the folder that cannot be written is logs/, where it must be made.
    assert lines == [f"{job}: error: {home.root / 'logs'}: cannot be written (Read-only file system); "
                     "the home's data/ and logs/ folders must be writable by the user running the fleet"]


def test_read_only_data_folder_is_named(home: Home) -> None:
    proc = _run_read_only(home.root / "data", home, "-m", "workers", "update_cnc_stoploss", "--user", "Som")
    assert proc.returncode == ExitCode.CONFIG, proc.stdout + proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    assert f"error: {home.root / 'data'}: cannot be written" in proc.stderr


def test_doctor_on_a_read_only_home_names_the_folder_not_the_env_file(home: Home) -> None:
    proc = _run_read_only(home.root, home, str(PROJECT_ROOT / "orchestrator.py"), "doctor")
    assert proc.returncode != 0
    failing = [line for line in proc.stdout.splitlines() if line.startswith("Som ") and " FAIL " in line]
    assert len(failing) == 1, proc.stdout
    assert "cannot be written" in failing[0] and "make that folder writable" in failing[0]
    assert "edit env/Som.env" not in proc.stdout and "Traceback" not in proc.stdout + proc.stderr
