"""Stable process exit codes. supervisord's ``exitcodes`` and the README rely on these values.

Permanent problems (configuration, already running, reconciliation failed) are listed as
"expected" in the generated supervisord config so they park the program instead of
restart-looping; temporary ones (token, broker) exit non-zero and are retried.
"""

from __future__ import annotations

import signal
from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0  # clean stop / success
    JOB_FAILED = 1  # the job ran and failed (a bug, an unexpected error)
    USAGE = 2  # bad command line (argparse uses 2 as well)
    ALREADY_RUNNING = 3  # the user's instance lock (or a job lock) is held by another process
    CONFIG = 4  # bad env file, permissions, user mismatch, corrupt or mismatched state
    TOKEN = 5  # Kite access token missing, expired or invalid: log in again
    RECONCILE_FAILED = 6  # open intents could not be reconciled with the broker; a person must look
    BROKER_TEMPORARY = 7  # broker unreachable, 5xx, rate limited after retries: try again later
    KILLED = 8  # the process was killed by a signal (SIGKILL, the OOM killer, ...): see its log


def from_returncode(returncode: int) -> int:
    """A child's exit code as reported by the orchestrator: ``Popen`` gives ``-N`` for a death by
    signal N, which a shell would turn into 256-N (247 for SIGKILL), a number in no table."""
    return ExitCode.KILLED if returncode < 0 else returncode


def signal_name(returncode: int) -> str | None:
    """``SIGKILL`` for a ``Popen`` return code of -9; None when the process exited by itself."""
    if returncode >= 0:
        return None
    try:
        return signal.Signals(-returncode).name
    except ValueError:
        return f"signal {-returncode}"


#: Exit codes that mean "do not restart me": supervisord treats them as expected exits.
PERMANENT_EXIT_CODES: tuple[ExitCode, ...] = (
    ExitCode.OK,
    ExitCode.CONFIG,
    ExitCode.ALREADY_RUNNING,
    ExitCode.RECONCILE_FAILED,
)
