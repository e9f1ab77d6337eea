"""Stable process exit codes. supervisord's ``exitcodes`` and the README rely on these values.

Permanent problems (configuration, already running, reconciliation failed) are listed as
"expected" in the generated supervisord config so they park the program instead of
restart-looping; temporary ones (token, broker) exit non-zero and are retried.
"""

from __future__ import annotations

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


#: Exit codes that mean "do not restart me": supervisord treats them as expected exits.
PERMANENT_EXIT_CODES: tuple[ExitCode, ...] = (
    ExitCode.OK,
    ExitCode.CONFIG,
    ExitCode.ALREADY_RUNNING,
    ExitCode.RECONCILE_FAILED,
)
