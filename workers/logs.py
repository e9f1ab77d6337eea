"""Per-user logging: ``logs/<User>/<job>.log`` (rotating by size) plus the console in the foreground.

Every line carries time (by the shared clock), level, user and job. A filter on every handler
redacts the API secret, access tokens and all but the first 4 characters of the API key wherever
they appear, including in tracebacks, so a secret printed by mistake never reaches a file.
"""

from __future__ import annotations

import contextlib
import logging
import logging.handlers
import sys
import threading
import time

from kitefleet import clock
from kitefleet.home import Home, ensure_dir

_secrets: dict[str, str] = {}
_secrets_lock = threading.Lock()


def register_secret(value: str | None, *, keep: int = 0) -> None:
    """Redact ``value`` from every log line from now on (``keep`` leading characters stay)."""
    if not value or len(value) < 4:
        return
    with _secrets_lock:
        _secrets[value] = value[:keep] + "***"


def redact(text: str) -> str:
    with _secrets_lock:
        items = sorted(_secrets.items(), key=lambda kv: -len(kv[0]))
    for secret, shown in items:
        if secret in text:
            text = text.replace(secret, shown)
    return text


class RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage())
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


class ClockFormatter(logging.Formatter):
    """Times from the shared clock (simulated in tests and the demo), in IST. Records are
    formatted as they are emitted, so the clock's now is the record's time."""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return clock.now().strftime("%Y-%m-%d %H:%M:%S")


FORMAT = "%(asctime)s %(levelname)-7s user=%(user)s job=%(job)s %(name)s: %(message)s"

#: A handler that cannot write (a full disk, a closed pipe) says so at most this often.
HANDLER_ERROR_EVERY = 60.0


class _QuietErrors:
    """``handleError`` without the traceback: logging's default prints "--- Logging error ---"
    and a traceback to stderr for every line that fails, which on a full disk fills the job's
    output (itself on that disk) with noise. One line, then silence for HANDLER_ERROR_EVERY s."""

    _error_reported_at: float | None = None

    def handleError(self, record: logging.LogRecord) -> None:
        now = time.monotonic()
        if self._error_reported_at is not None and now - self._error_reported_at < HANDLER_ERROR_EVERY:
            return
        self._error_reported_at = now
        exc = sys.exc_info()[1]
        reason = getattr(exc, "strerror", None) or type(exc).__name__
        where = getattr(self, "baseFilename", None) or "the console"
        with contextlib.suppress(Exception):  # stderr may be the thing that is broken
            sys.__stderr__.write(f"logging to {where} failed ({reason}); log lines are lost until it works\n")
            sys.__stderr__.flush()


class QuietRotatingFileHandler(_QuietErrors, logging.handlers.RotatingFileHandler):
    pass


class QuietStreamHandler(_QuietErrors, logging.StreamHandler):  # type: ignore[type-arg]
    pass


class _ContextFilter(logging.Filter):
    def __init__(self, user: str, job: str) -> None:
        super().__init__()
        self.user, self.job = user, job

    def filter(self, record: logging.LogRecord) -> bool:
        record.user, record.job = self.user, self.job
        return True


def setup_logging(home: Home, user: str, job: str, *, level: str = "INFO", console: bool = True,
                  max_bytes: int = 5_000_000, backups: int = 5) -> logging.Logger:
    """Configure the root logger for this process (one user, one job) and return the job's logger."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.setLevel(level)
    formatter = ClockFormatter(FORMAT)
    filters: list[logging.Filter] = [_ContextFilter(user, job), RedactingFilter()]
    log_dir = ensure_dir(home.user_logs_dir(user))
    handlers: list[logging.Handler] = [
        QuietRotatingFileHandler(
            log_dir / f"{job}.log", maxBytes=max_bytes, backupCount=backups, encoding="utf-8"
        )
    ]
    if console:
        handlers.append(QuietStreamHandler(sys.stderr))
    for handler in handlers:
        handler.setFormatter(formatter)
        for f in filters:
            handler.addFilter(f)
        root.addHandler(handler)
    # Libraries that log request URLs or bodies at DEBUG must not leak tokens; they pass the filter too,
    # but keep them quiet unless asked.
    for noisy in ("urllib3", "requests", "filelock"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    return logging.getLogger(f"kitefleet.{job}")
