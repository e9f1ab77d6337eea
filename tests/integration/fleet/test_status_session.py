"""`status` shows each user's session expiry, read by a process of that user (never the token)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.support.homes import PROJECT_ROOT, child_env, make_home, write_env


def test_status_shows_session_expiry_without_the_token(tmp_path: Path) -> None:
    home = make_home(tmp_path / "home")
    write_env(home, "Som")
    write_env(home, "Sai")
    session = home.session_file("Som")
    session.parent.mkdir(parents=True, exist_ok=True)
    token = "tok-SECRET-0123456789"
    session.write_text(json.dumps({"access_token": token, "login_time": "2026-11-25T09:00:00+05:30",
                                   "expires_at": "2026-11-26T06:00:00+05:30"}))
    session.chmod(0o600)
    env = child_env(home, TRADER_CLOCK="2026-11-25T10:00:00+05:30")
    proc = subprocess.run([sys.executable, str(PROJECT_ROOT / "orchestrator.py"), "status", "--json", "--no-live"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert token not in proc.stdout + proc.stderr
    rows = {r["user"]: r for r in json.loads(proc.stdout)["users"]}
    assert rows["Som"]["session_expires_at"] == "2026-11-26T06:00:00+05:30"
    assert rows["Som"]["session_expired"] is False
    assert rows["Sai"]["session_expires_at"] is None
    text = subprocess.run([sys.executable, str(PROJECT_ROOT / "orchestrator.py"), "status", "--no-live"],
                          env=env, capture_output=True, text=True, timeout=120).stdout
    assert "until 11-26 06:00" in text
