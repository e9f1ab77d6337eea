"""What every job receives: the one user this process serves, its settings, home and arguments."""

from __future__ import annotations

import argparse
import logging
import threading
from dataclasses import dataclass

from kitefleet.home import Home
from kitefleet.settings import Settings

#: Test-only fault injection: the launcher passes it through. Value "POINT" or "POINT:SYMBOL"
#: (e.g. "after_intent", "after_send:INFY"); the process SIGKILLs itself at that point.
FAULT_ENV = "KITEFLEET_FAULT"
#: Set by tests/conftest.py: without it (and outside paper mode) FAULT_ENV does nothing (workers/faults.py).
TEST_MARKER_ENV = "KITEFLEET_TEST_MARKER"

#: Set on SIGTERM/SIGINT by the worker entry; long-running jobs watch it and stop in an orderly
#: way. (It lives here, not in workers/__main__.py: under ``python -m workers`` that module is
#: ``__main__`` and a second import of it would hold a different Event.)
STOP = threading.Event()


@dataclass(frozen=True)
class JobContext:
    user: str
    job: str
    home: Home
    settings: Settings
    args: argparse.Namespace
    log: logging.Logger

    @property
    def dry_run(self) -> bool:
        return bool(getattr(self.args, "dry_run", False))
