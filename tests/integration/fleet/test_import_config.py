"""import-config on a legacy-style config.ini with three users, one incomplete, through a real process."""

from __future__ import annotations

import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from kitefleet.exitcodes import ExitCode
from kitefleet.home import Home
from kitefleet.settings import load_settings
from tests.support import DATA
from tests.support.homes import PROJECT_ROOT, child_env, make_home

FIXTURES = DATA
SECRETS = ("SaiSecret%Value123", "SomSecretValue456", "saiAccessTokenStale001", "somAccessTokenStale002",
           "momAccessTokenStale003", "twilioTokenValue", "saikey0000001", "somkey0000002")


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Home:
    h = make_home(tmp_path / "home")
    monkeypatch.setenv("KITEFLEET_HOME", str(h.root))
    return h


def test_three_users_one_incomplete(tmp_path: Path) -> None:
    home = make_home(tmp_path / "home")
    shutil.rmtree(home.env_dir)  # created on demand
    proc = subprocess.run([sys.executable, str(PROJECT_ROOT / "orchestrator.py"), "import-config",
                           str(FIXTURES / "config.ini")], env=child_env(home), capture_output=True, text=True,
                          timeout=60, cwd=tmp_path)
    assert proc.returncode == ExitCode.CONFIG, proc.stderr  # Mom could not be imported
    output = proc.stdout + proc.stderr
    for secret in SECRETS:
        assert secret not in output
    assert "Mom" in output and "no api_secret" in output
    assert "profit_target_exits" in output and "[TWILIO_CREDENTIALS]" in output
    assert sorted(p.name for p in home.env_dir.iterdir()) == ["Sai.env", "Som.env"]
    for user in ("Sai", "Som"):
        assert stat.S_IMODE(home.env_file(user).stat().st_mode) == 0o600
    sai, som = load_settings(home, "Sai"), load_settings(home, "Som")
    assert (sai.mode, som.mode) == ("live", "live")
    assert sai.api_secret == "SaiSecret%Value123" and sai.api_key == "saikey0000001"
    # max_cnc_positions was new stocks per run: MAX_NEW_ENTRIES_PER_DAY, not MAX_CNC_POSITIONS (issue 18)
    assert (sai["MAX_NEW_ENTRIES_PER_DAY"], som["MAX_NEW_ENTRIES_PER_DAY"]) == (2, 5)
    assert "MAX_CNC_POSITIONS" not in sai.file_keys
    assert sai["CAPITAL_DEPLOYMENT_PERCENT"] == 1.0 and sai.log_level == "INFO"
    assert "KITE_ACCESS_TOKEN" not in sai.file_keys  # the stale legacy token is not carried over
