"""Test-only fault injection: die at a chosen point so tests can prove restarts are safe.

``KITEFLEET_FAULT`` (workers.context.FAULT_ENV; the launcher passes it through) holds
``POINT`` or ``POINT:SYMBOL``, e.g. ``after_intent`` or ``after_send:INFY``. When the running code
reaches ``fault_point(POINT, symbol)`` with a matching point (and symbol, if one is given), the
process flushes its logs and SIGKILLs itself: no cleanup, no ``finally``, as a power cut or an
OOM kill would.

It is armed only by ``arm()`` at the worker's start, and only when the user is in paper mode and
the test suite's marker ``KITEFLEET_TEST_MARKER`` (set by tests/conftest.py, passed by the
launcher) is present as well: a ``KITEFLEET_FAULT`` left exported in an operator's shell does
nothing in paper mode (a warning is logged) and is refused at start in live mode (exit 4), where
a self-inflicted SIGKILL between a real order and its record must never be possible.

Points used by workers.intents: ``after_intent`` (intent recorded, nothing sent) and
``after_send`` (the broker accepted the write, its id not yet recorded); adopt and release use
``after_ledger`` (their first state write done, the GTT not changed yet); a cancel also passes
``after_cancel_intent`` and ``after_cancel_send`` (so a test can kill an entry run at its cancel
and not at the send of that symbol's entry). workers.entry_wait: ``entry_wait`` (each look at the
order book while waiting for the entries, per open entry's symbol). workers.jobs.backtest:
``backtest_written`` (the outputs written to ``<out>.partial/``, not yet renamed).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
from collections.abc import Mapping

from kitefleet.errors import ConfigError
from workers.context import FAULT_ENV, TEST_MARKER_ENV

POINTS = ("after_intent", "after_send", "after_ledger", "after_cancel_intent", "after_cancel_send", "entry_wait",
          "backtest_written")

#: The armed fault of this process (a per-process singleton, set once by ``arm``); None: no-op.
_armed: str | None = None


def arm(*, paper: bool, environ: Mapping[str, str] | None = None) -> str | None:
    """Decide once, at start, whether this process honours ``KITEFLEET_FAULT``; returns what is armed.
    Raises ConfigError in live mode when the variable is present at all."""
    global _armed
    environ = os.environ if environ is None else environ
    _armed = None
    value = environ.get(FAULT_ENV)
    if value is None:
        return None
    if not paper:
        raise ConfigError(f"{FAULT_ENV} is set: fault injection is for the test suite and never runs in "
                          f"live mode; unset {FAULT_ENV}")
    if not environ.get(TEST_MARKER_ENV):
        logging.getLogger("workers.faults").warning(
            "%s ignored: fault injection runs only under the test suite", FAULT_ENV)
        return None
    _armed = value or None
    return _armed


def _matches(value: str, name: str, symbol: str | None) -> bool:
    point, _, wanted = value.strip().partition(":")
    if point != name:
        return False
    return not wanted or (symbol is not None and wanted.upper() == symbol.upper())


def fault_point(name: str, symbol: str | None = None) -> None:
    value = _armed
    if not value or not _matches(value, name, symbol):
        return
    logging.getLogger("workers.faults").warning("fault injection: SIGKILL at %s (%s)", name, symbol or "-")
    for handler in logging.getLogger().handlers:
        # Dying anyway: a broken handler must not stop the kill.
        with contextlib.suppress(Exception):
            handler.flush()
    sys.stdout.flush()
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)
