"""Where everything lives. All runtime paths hang off one home, never the current directory.

The home is the folder named by ``KITEFLEET_HOME`` when set, else the project root (the folder
holding ``orchestrator.py``). A ``KITEFLEET_HOME`` that is not an existing folder is a
configuration error, never created: a typo would otherwise show an empty fleet (``users``), write
a fresh config elsewhere (``supervisor-conf``) or report "no such env file". Layout (see
ARCHITECTURE.md):

    env/<User>.env                  one file per user (mode 0600)
    data/trading_state_<User>.json  that user's state (StateStore)
    data/<User>/                    that user's other runtime files
    data/shared/<source>/           market data only, one folder per data source
    data/shared/nse_calendar.json   the exported NSE calendar read by lean processes
    data/paper/                     the paper broker's database
    logs/<User>/                    that user's logs
    run/                            supervisord socket, pid file, generated config
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from kitefleet.errors import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _source_folder_name(source: str) -> str:
    # "http://127.0.0.1:8765" -> "127.0.0.1_8765": a folder name that still says which broker.
    name = re.sub(r"^[a-z]+://", "", source.strip().lower()).rstrip("/")
    return re.sub(r"[^a-z0-9.\-]+", "_", name) or "unknown"


@dataclass(frozen=True)
class Home:
    root: Path

    @classmethod
    def resolve(cls, environ: Mapping[str, str] | None = None) -> Home:
        """The home named by ``KITEFLEET_HOME`` (which must be an existing folder), else the project.
        Raises ConfigError for a ``KITEFLEET_HOME`` that is not a folder."""
        env = os.environ if environ is None else environ
        value = env.get("KITEFLEET_HOME")
        if not value:
            return cls(PROJECT_ROOT)
        root = Path(value).expanduser()
        if not root.is_dir():
            raise ConfigError(f"KITEFLEET_HOME={value} is not a folder; create it or unset KITEFLEET_HOME")
        return cls(root.resolve())

    # --- folders -----------------------------------------------------------------------------
    @property
    def env_dir(self) -> Path:
        return self.root / "env"

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def logs_dir(self) -> Path:
        return self.root / "logs"

    @property
    def run_dir(self) -> Path:
        return self.root / "run"

    @property
    def paper_dir(self) -> Path:
        return self.data_dir / "paper"

    @property
    def shared_dir(self) -> Path:
        return self.data_dir / "shared"

    # --- per-user ----------------------------------------------------------------------------
    def env_file(self, user: str) -> Path:
        return self.env_dir / f"{user}.env"

    def state_file(self, user: str) -> Path:
        return self.data_dir / f"trading_state_{user}.json"

    def user_data_dir(self, user: str) -> Path:
        return self.data_dir / user

    def user_logs_dir(self, user: str) -> Path:
        return self.logs_dir / user

    def session_file(self, user: str) -> Path:
        return self.user_data_dir(user) / "session.json"

    def heartbeat_file(self, user: str) -> Path:
        return self.user_data_dir(user) / "heartbeat.json"

    def key_fingerprint_file(self, user: str) -> Path:
        """The fingerprint of the user's API key and the identity of the env file it was read from,
        written by the user's own process (kitefleet.key_fingerprint)."""
        return self.user_data_dir(user) / "key_fingerprint.json"

    def locks_dir(self, user: str) -> Path:
        return self.user_data_dir(user) / "locks"

    # --- shared market data ------------------------------------------------------------------
    def market_data_dir(self, source: str) -> Path:
        """``data/shared/live`` for Kite itself, ``data/shared/<broker address>`` for a paper broker."""
        folder = "live" if source == "live" else _source_folder_name(source)
        return self.shared_dir / folder

    @property
    def calendar_file(self) -> Path:
        return self.shared_dir / "nse_calendar.json"

    @property
    def supervisord_conf(self) -> Path:
        return self.root / "supervisord.conf"

    @property
    def generated_conf_dir(self) -> Path:
        return self.run_dir / "supervisord.d"


def ensure_dir(path: Path, mode: int = 0o700) -> Path:
    path.mkdir(parents=True, exist_ok=True, mode=mode)
    return path
