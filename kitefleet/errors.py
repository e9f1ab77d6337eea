"""A shallow exception hierarchy: each error knows its exit code and prints as one line."""

from __future__ import annotations

from kitefleet.exitcodes import ExitCode


class KitefleetError(Exception):
    """Base class: ``str(err)`` is the one-line message shown to the operator."""

    exit_code: ExitCode = ExitCode.JOB_FAILED


class UsageError(KitefleetError):
    exit_code = ExitCode.USAGE


class ConfigError(KitefleetError):
    """Bad env file, bad permissions, user mismatch, simulated clock in live mode."""

    exit_code = ExitCode.CONFIG


class StateError(ConfigError):
    """A state file that does not parse, does not validate, or belongs to another user/mode."""


class AlreadyRunning(KitefleetError):
    exit_code = ExitCode.ALREADY_RUNNING

    def __init__(self, message: str, holder_pid: int | None = None) -> None:
        super().__init__(message)
        self.holder_pid = holder_pid


class LockTimeout(KitefleetError):
    """A blocking lock (e.g. the state lock) was not acquired in time."""

    exit_code = ExitCode.JOB_FAILED


class TokenError(KitefleetError):
    exit_code = ExitCode.TOKEN


class ReconcileError(KitefleetError):
    exit_code = ExitCode.RECONCILE_FAILED


class BrokerTemporaryError(KitefleetError):
    exit_code = ExitCode.BROKER_TEMPORARY


class BrokerPermanentError(KitefleetError):
    """The broker refused a request for a reason retrying will not fix (bad input, funds)."""

    exit_code = ExitCode.JOB_FAILED
