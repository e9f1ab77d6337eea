"""Test-only fault injection: die at a chosen point so tests can prove restarts are safe.

``KITEFLEET_FAULT`` (workers.context.FAULT_ENV; the launcher passes it through) holds
``POINT`` or ``POINT:SYMBOL``, e.g. ``after_intent`` or ``after_send:INFY``. When the running code
reaches ``fault_point(POINT, symbol)`` with a matching point (and symbol, if one is given), the
process flushes its logs and SIGKILLs itself: no cleanup, no ``finally``, as a power cut or an
OOM kill would. Unset (always, outside tests): a no-op.

Points used by workers.intents: ``after_intent`` (intent recorded, nothing sent) and
``after_send`` (the broker accepted the write, its id not yet recorded).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys

from workers.context import FAULT_ENV

POINTS = ("after_intent", "after_send")


def _matches(value: str, name: str, symbol: str | None) -> bool:
    point, _, wanted = value.strip().partition(":")
    if point != name:
        return False
    return not wanted or (symbol is not None and wanted.upper() == symbol.upper())


def fault_point(name: str, symbol: str | None = None) -> None:
    value = os.environ.get(FAULT_ENV)
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
