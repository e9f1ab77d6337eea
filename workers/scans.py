"""The scan files: pattern_daily writes them, place_orders_daily (and doctor) read them.

On-disk contract (written only by ``pattern_daily``, under its per-(user, job) lock)::

    data/<User>/scans/pattern_daily_<YYYYMMDD>.csv

``<YYYYMMDD>`` is the last completed session the scan used (``scan_session`` reads it back from
the name). CSV, UTF-8, "\\n" line ends, a header row and the columns
``workers.strategy.patterns.SCAN_COLUMNS`` (one ``ScanResult`` per row: ``as_row`` writes it,
``from_row`` reads it; an empty cell = not computed). Rows in ``scan_sort_key`` order. Written
atomically (temp file + os.replace), so a reader never sees a half-written scan; a rerun for the
same session replaces the file. The newest scan is the one with the latest session in its name.
"""

from __future__ import annotations

import csv
import io
from datetime import date
from pathlib import Path
from typing import Any

from kitefleet.atomic import atomic_write_text, remove_stale_temps
from workers.strategy.patterns import SCAN_COLUMNS, ScanResult

SCAN_PREFIX = "pattern_daily_"


def scans_dir(home: Any, user: str) -> Path:
    return Path(home.user_data_dir(user)) / "scans"


def scan_file(home: Any, user: str, session: date) -> Path:
    """``data/<User>/scans/pattern_daily_<YYYYMMDD>.csv`` for the scan of ``session``."""
    return scans_dir(home, user) / f"{SCAN_PREFIX}{session:%Y%m%d}.csv"


def latest_scan_file(home: Any, user: str) -> Path | None:
    """The newest scan file by session date in its name (for place_orders_daily and doctor)."""
    files = sorted(scans_dir(home, user).glob(f"{SCAN_PREFIX}[0-9]*.csv"))
    return files[-1] if files else None


def scan_session(path: Path) -> date | None:
    """The session in a scan file's name; None when the name carries no valid date."""
    stem = path.stem.rsplit("_", 1)[-1]
    try:
        return date(int(stem[:4]), int(stem[4:6]), int(stem[6:8])) if len(stem) == 8 else None
    except ValueError:
        return None


def read_scan(path: Path) -> list[ScanResult]:
    """The rows of a scan file, in file order."""
    with path.open(encoding="utf-8", newline="") as fh:
        return [ScanResult.from_row(row) for row in csv.DictReader(fh)]


def scan_csv(results: list[ScanResult]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=SCAN_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for result in results:
        writer.writerow(result.as_row())
    return buf.getvalue()


def write_scan(path: Path, results: list[ScanResult]) -> None:
    """Replace ``path`` atomically with ``results``. The caller holds pattern_daily's job lock, so
    temp files beside it are leftovers of a killed run and are removed first."""
    remove_stale_temps(path)
    atomic_write_text(path, scan_csv(results))
