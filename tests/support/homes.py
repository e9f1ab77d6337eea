"""Temporary kitefleet homes with env files, for tests of every side."""

from __future__ import annotations

import os
from pathlib import Path

from kitefleet.home import Home

PROJECT_ROOT = Path(__file__).resolve().parents[2]
VENV_PYTHON = PROJECT_ROOT / ".venv" / "bin" / "python"


def make_home(root: Path) -> Home:
    for sub in ("env", "data", "logs", "run"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    return Home(root.resolve())


def write_env(home: Home, user: str, *, mode: str = "paper", api_key: str | None = None,
              api_secret: str | None = None, file_mode: int = 0o600, **extra: object) -> Path:
    """Write env/<user>.env with sensible test values; extra keys are written as given."""
    lines = [
        f"TRADER_MODE={mode}",
        f"KITE_API_KEY={api_key or f'key{user.lower()}0001'}",
        f"KITE_API_SECRET={api_secret or f'secret-{user.lower()}-S3CR3T'}",
    ]
    lines += [f"{k}={v}" for k, v in extra.items()]
    path = home.env_file(user)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    os.chmod(path, file_mode)
    return path


def child_env(home: Home, **extra: str) -> dict[str, str]:
    """A minimal environment for running project commands against ``home`` in a subprocess."""
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "HOME", "TMPDIR", "KITEFLEET_TEST_MARKER")}
    env["KITEFLEET_HOME"] = str(home.root)
    env.update(extra)
    return env
