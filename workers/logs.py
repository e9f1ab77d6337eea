"""Per-user logging: ``logs/<User>/<job>.log`` (rotating by size) plus the console in the foreground.

Every line carries time (by the shared clock), level, user and job. A filter on every handler
redacts the API secret, access tokens and all but the first 4 characters of the API key wherever
they appear, including in tracebacks, so a secret printed by mistake never reaches a file.

The worker entry also calls ``redact_process_output``: the process's stderr (which the scheduler
sends to ``logs/<User>/<job>.out.log``) is redacted line by line, and an exception nobody caught,
in the main thread (``sys.excepthook``) or in any other (``threading.excepthook``, which never
passes through logging), is logged through the job's redacting logger. Not covered: stdout, the
job's result channel (the login job prints its URL, API key included, to the orchestrator), and
bytes a C library or a child process writes to file descriptor 2 itself.
"""

from __future__ import annotations

import contextlib
import logging
import logging.handlers
import sys
import threading
import time
import traceback
from types import TracebackType
from typing import Any, TextIO

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
        err = sys.__stderr__  # None under pythonw or with fd 2 closed
        with contextlib.suppress(Exception):  # stderr may be the thing that is broken
            if err is not None:
                err.write(f"logging to {where} failed ({reason}); log lines are lost until it works\n")
                err.flush()


class QuietRotatingFileHandler(_QuietErrors, logging.handlers.RotatingFileHandler):
    pass


class QuietStreamHandler(_QuietErrors, logging.StreamHandler):
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


class RedactingStream:
    """A text stream that redacts whole lines before passing them on, so a secret written in
    pieces (``print("token", token)`` is several writes) is still seen whole. A line without its
    newline waits for the next write or ``flush()``."""

    def __init__(self, inner: TextIO) -> None:
        self.inner = inner
        self._pending = ""
        self._lock = threading.RLock()  # RLock: a signal handler may print while a write is under way

    def write(self, text: str) -> int:
        with self._lock:
            head, newline, self._pending = (self._pending + text).rpartition("\n")
            if newline:
                self.inner.write(redact(head + newline))
                self.inner.flush()
            if len(self._pending) > 65536:  # no newline for long: do not hold it for ever
                self._emit_pending()
        return len(text)

    def _emit_pending(self) -> None:
        if self._pending:
            pending, self._pending = self._pending, ""
            self.inner.write(redact(pending))

    def flush(self) -> None:
        with self._lock:
            if self.inner.closed:
                return
            self._emit_pending()
            self.inner.flush()

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def fileno(self) -> int:
        return self.inner.fileno()

    def isatty(self) -> bool:
        return self.inner.isatty()

    def writable(self) -> bool:
        return True

    @property
    def encoding(self) -> str:
        return self.inner.encoding

    @property
    def errors(self) -> str | None:
        return self.inner.errors

    @property
    def closed(self) -> bool:
        return self.inner.closed


def redact_process_output(log: logging.Logger) -> None:
    """From now on this process's stderr is redacted, and uncaught exceptions (any thread) are
    logged through ``log`` (whose handlers redact) instead of printed raw. Call once secrets
    are registered and logging is set up (workers.__main__ does)."""
    if not isinstance(sys.stderr, RedactingStream) and sys.stderr is not None:
        sys.stderr = RedactingStream(sys.stderr)
    console = any(isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)
                  for h in logging.getLogger().handlers)

    def report(where: str, exc_type: type[BaseException], exc: BaseException | None,
               tb: TracebackType | None) -> None:
        log.critical("uncaught exception in %s", where, exc_info=(exc_type, exc, tb))  # type: ignore[arg-type]
        if not console:
            # The job logs to its file only: leave one (redacted) line where its output goes.
            summary = traceback.format_exception_only(exc_type, exc)[-1].strip()
            print(f"uncaught exception in {where}: {summary} (traceback in the job's log)", file=sys.stderr)

    def on_uncaught(exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        if issubclass(exc_type, KeyboardInterrupt):
            sys.__excepthook__(exc_type, exc, tb)
            return
        report("the main thread", exc_type, exc, tb)

    def on_thread(args: threading.ExceptHookArgs) -> None:
        if args.exc_type is SystemExit:
            return  # as the default hook: a thread may end itself with sys.exit()
        name = args.thread.name if args.thread is not None else "an unnamed thread"
        report(f"thread {name}", args.exc_type, args.exc_value, args.exc_traceback)

    sys.excepthook = on_uncaught
    threading.excepthook = on_thread
