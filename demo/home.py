"""The demo's home: a folder of its own, never the project's env/ or data/.

On-disk contract (everything below is the demo's own and is wiped at the start of each run):

    <home>/.kitefleet-demo-home      marker: this folder was made by the demo and may be wiped
    <home>/env/Som.env, Sai.env      the demo's paper users (mode 0600, throwaway keys); Som's has
                                     NOTIFY_URLS=json://127.0.0.1:PORT/... (the demo's sink), Sai's none
    <home>/clock                     the clock file every process reads (TRADER_CLOCK=file:...)
    <home>/demo/scenario.json        the paper broker's scenario: INFY's path on both replay days
    <home>/demo/yesterday.json       the picks the users entered the day before (place_orders_daily --from)
    <home>/data, logs, run, supervisord.conf   the system's own layout (kitefleet.home)

A folder is wiped only when it is empty or carries the marker; a folder holding anything in
live mode (an env file with TRADER_MODE=live, a state file with "mode": "live") is refused
before anything is touched.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time
from pathlib import Path

from kitefleet.calendar import NseCalendar, export_calendar
from kitefleet.clock import IST
from kitefleet.home import PROJECT_ROOT, Home

MARKER = ".kitefleet-demo-home"
DEFAULT_ROOT = PROJECT_ROOT / "demo-home"
#: supervisord's unix socket lives in <home>/run; sun_path holds 108 bytes.
MAX_SOCKET_PATH = 100
_LIVE_ENV = re.compile(r"^\s*(?:export\s+)?TRADER_MODE\s*=\s*['\"]?live['\"]?\s*(?:#.*)?$", re.MULTILINE)

#: The symbol whose path the scenario pins on both days (both users enter it the day before).
PINNED = "INFY"
#: What both users bought the day before, through place_orders_daily --from.
YESTERDAY_PICKS = ("INFY", "ITC")
#: Som's long-term shares, bought by hand (a plain client order, no bot tag, no ledger lot) the day
#: before, before the bot runs: the bot must leave them alone all day (issue 18). Cheap and few, so
#: the cash the entries are sized from barely moves.
HAND_HELD = ("Som", "TATASTEEL", 2)
#: INFY's pinned path (IST minute, price). The day before: a dip to 1491 (that day's low, where
#: the GTT stop goes), a close at 1515. Replay day: it opens above the previous hourly lows, holds
#: above 1518 until 11:40, then falls to 1500 by 12:10: through the lower of the last two
#: completed hourly lows (~1518) a few minutes after 11:40, the watchdog's exit, while staying
#: well above the GTT's trigger at 1491.
PREVIOUS_DAY_PATH = (("09:15", 1506.0), ("11:00", 1500.0), ("12:30", 1491.0), ("14:00", 1506.0),
                     ("15:29", 1515.0))
REPLAY_DAY_PATH = (("09:15", 1518.0), ("10:30", 1524.0), ("11:40", 1521.0), ("12:10", 1500.0),
                   ("15:29", 1503.0))


class DemoRefused(Exception):
    """The demo will not run here; the message says why and what to do."""


@dataclass(frozen=True)
class DemoUser:
    name: str
    api_key: str
    api_secret: str
    settings: dict[str, str] = field(default_factory=dict)

    def env_text(self, kite_root: str, secrets: Mapping[str, str] | None = None) -> str:
        """``secrets``: keys kept out of ``settings``, which the report prints (NOTIFY_URLS)."""
        lines = [
            "# kitefleet demo user (throwaway paper credentials; the demo rewrites this file each run)",
            "TRADER_MODE=paper",
            f"KITE_API_KEY={self.api_key}",
            f"KITE_API_SECRET={self.api_secret}",
            f"KITE_ROOT={kite_root}",
            *(f"{k}={v}" for k, v in self.settings.items()),
            *(f"{k}={v}" for k, v in (secrets or {}).items()),
        ]
        return "\n".join(lines) + "\n"


USERS: tuple[DemoUser, ...] = (
    DemoUser("Som", "somdemo0key0001", "somdemo-secret-0001", {
        "PAPER_STARTING_CASH": "1000000", "MIN_SCORE": "4", "CAPITAL_DEPLOYMENT_PERCENT": "50",
        "MAX_CNC_POSITIONS": "8", "WATCHDOG_POLL_SECONDS": "30",
    }),
    DemoUser("Sai", "saidemo0key0002", "saidemo-secret-0002", {
        "PAPER_STARTING_CASH": "500000", "MIN_SCORE": "5", "CAPITAL_DEPLOYMENT_PERCENT": "40",
        "MAX_CNC_POSITIONS": "5", "WATCHDOG_POLL_SECONDS": "60", "WATCHDOG_RULE": "hourly_low",
    }),
)


# --- safety ------------------------------------------------------------------------------------------
def check_location(root: Path) -> None:
    """Refuse a home that is (or holds, or lies inside the runtime folders of) the project."""
    root = root.resolve()
    project = PROJECT_ROOT.resolve()
    if root == project or project.is_relative_to(root):
        raise DemoRefused(f"{root}: the demo home must be a folder of its own, not the project or above it")
    for sub in ("env", "data", "logs", "run"):
        if root.is_relative_to(project / sub):
            raise DemoRefused(f"{root}: inside the project's {sub}/; the demo never works there")
    socket = root / "run" / "supervisor.sock"
    if len(os.fsencode(socket)) > MAX_SOCKET_PATH:
        raise DemoRefused(f"{socket}: too long for a unix socket; pick a shorter --home")


def live_findings(root: Path) -> list[str]:
    """Everything in ``root`` that says live mode (an env file, a state file)."""
    found: list[str] = []
    env_dir = root / "env"
    if env_dir.is_dir():
        for path in sorted(env_dir.glob("*.env")):
            try:
                if _LIVE_ENV.search(path.read_text(encoding="utf-8", errors="replace")):
                    found.append(f"{path}: TRADER_MODE=live")
            except OSError as exc:
                found.append(f"{path}: cannot be read ({exc.strerror}); not sure it is not live")
    data_dir = root / "data"
    if data_dir.is_dir():
        for path in sorted(data_dir.glob("trading_state_*.json")):
            try:
                mode = json.loads(path.read_text(encoding="utf-8")).get("mode")
            except (OSError, ValueError, AttributeError):
                continue
            if mode == "live":
                found.append(f"{path}: \"mode\": \"live\"")
    return found


def check(root: Path) -> None:
    """Raises DemoRefused when the demo must not use ``root``: the project, live-mode files, a
    folder the demo did not make. Nothing in ``root`` is touched (nor any process using it)
    before this has passed."""
    check_location(root)
    live = live_findings(root)
    if live:
        raise DemoRefused("refusing to run: the demo home holds live-mode files:\n  " + "\n  ".join(live)
                          + "\nthe demo only ever runs paper users; move these away or pick another --home")
    if root.exists():
        if not root.is_dir():
            raise DemoRefused(f"{root}: exists and is not a folder")
        if any(root.iterdir()) and not (root / MARKER).exists():
            raise DemoRefused(f"{root}: not empty and not made by the demo (no {MARKER}); "
                              "the demo wipes its home at each run, so it will not use this folder")


def prepare(root: Path) -> Home:
    """Check, wipe and recreate the demo home. Raises DemoRefused."""
    root = root.expanduser().absolute()
    check(root)
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True, mode=0o700)
    (root / MARKER).write_text("made by 'make demo'; wiped and rebuilt at each run\n", encoding="utf-8")
    for sub in ("env", "data", "logs", "run", "demo"):
        (root / sub).mkdir(mode=0o700)
    return Home(root.resolve())


# --- content -----------------------------------------------------------------------------------------
def write_users(home: Home, kite_root: str, users: tuple[DemoUser, ...] = USERS,
                secrets: Mapping[str, Mapping[str, str]] | None = None) -> list[Path]:
    """``secrets``: user -> extra keys for that user's env file only (Som's NOTIFY_URLS)."""
    paths = []
    for user in users:
        path = home.env_file(user.name)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(user.env_text(kite_root, (secrets or {}).get(user.name)))
        paths.append(path)
    return paths


def export_nse_calendar(home: Home, around: date) -> NseCalendar:
    return export_calendar(home.calendar_file, around)


def pick_days(calendar: NseCalendar, today: date, day: date | None = None) -> tuple[date, date]:
    """(previous session P, replay day D): D is ``day`` or the last session completed before ``today``."""
    if day is None:
        day = calendar.previous_trading_day(today)
    elif not calendar.is_trading_day(day):
        raise DemoRefused(f"{day} is not an NSE trading day")
    previous = calendar.previous_trading_day(day)
    return previous, day


def at(day: date, hhmm: str) -> datetime:
    return datetime.combine(day, time.fromisoformat(hhmm), IST)


def write_scenario(home: Home, previous: date, day: date) -> Path:
    path = home.root / "demo" / "scenario.json"
    paths = [{"symbol": PINNED, "date": d.isoformat(), "waypoints": [list(w) for w in way]}
             for d, way in ((previous, PREVIOUS_DAY_PATH), (day, REPLAY_DAY_PATH))]
    path.write_text(json.dumps({"paths": paths}, indent=2) + "\n", encoding="utf-8")
    return path


def write_yesterday_picks(home: Home) -> Path:
    path = home.root / "demo" / "yesterday.json"
    path.write_text(json.dumps(list(YESTERDAY_PICKS)) + "\n", encoding="utf-8")
    return path
