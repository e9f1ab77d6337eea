"""Secrets never reach a log file (issue 13, bug 2: redaction had no test that could fail).

In-process: the real ``setup_logging`` with three registered secrets (an API key, an API secret,
an access token), each logged in the message, in ``%s``/``%r`` arguments and inside a traceback;
the file is read back. In real worker processes (the real entry, this module registered as an
extra job, started by the scheduler's own spawn so its stdout and stderr go to
``logs/<User>/<job>.out.log``): a job that writes secrets to stderr, raises one in a thread of its
own, or lets one escape the entry. Each test fails when ``RedactingFilter.filter`` returns True at
once or the worker entry does not call ``redact_process_output``.

This module is also the test job (``add_arguments`` and ``run`` below).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import threading
import types
from collections.abc import Sequence
from pathlib import Path

import pytest

from kitefleet import launcher
from kitefleet.home import Home
from tests.support.homes import make_home, write_env
from tests.workers.test_logs import API_KEY, API_SECRET, SHOWN_KEY, TOKEN, _assert_clean
from workers.context import JobContext
from workers.daemon import Scheduler
from workers.logs import register_secret

# --- in-process: the logging handlers ----------------------------------------------------------


# --- real worker processes, started the way the scheduler starts a job -------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--leak", choices=("stderr", "thread", "escape"), required=True)


class _Escapes(BaseException):
    """Not an Exception: the entry's handlers let it through to sys.excepthook."""


def run(ctx: JobContext) -> int:
    register_secret(TOKEN)  # as workers.kite_client does for a session's token
    secret = next(iter(ctx.settings.secrets()))
    leak = f"key {ctx.settings.api_key} secret {secret} token {TOKEN}"
    if ctx.args.leak == "stderr":
        print("written by the job to stderr:", leak, file=sys.stderr)
        sys.stderr.write(f"in pieces: {TOKEN[:5]}")
        sys.stderr.write(f"{TOKEN[5:]}\n")
        return 0
    if ctx.args.leak == "thread":
        def work() -> None:
            raise RuntimeError(f"thread failed: {leak}")

        worker = threading.Thread(target=work, name="leaky-thread")
        worker.start()
        worker.join()
        return 0
    raise _Escapes(f"escaped: {leak}")




def _spawn_as_scheduler(home: Home, job: str, leak: str, monkeypatch: pytest.MonkeyPatch) -> tuple[str, str]:
    """The scheduler's own spawn (``Scheduler._spawn``: stdout and stderr appended to the job's
    .out.log); only the argv names this module as the job. Returns (.out.log, job .log)."""
    runner = f"import sys, workers.__main__ as m; m.JOBS[{job!r}] = {__name__!r}; sys.exit(m.main(sys.argv[1:]))"

    def argv(user: str, job_name: str, args: Sequence[str] = ()) -> list[str]:
        return [sys.executable, "-c", runner, job_name, "--user", user, "--leak", leak]

    monkeypatch.setattr(launcher, "worker_argv", argv)
    proc: subprocess.Popen[bytes] = Scheduler._spawn(  # type: ignore[arg-type]
        types.SimpleNamespace(home=home, user="Som"), job)
    assert proc.wait(timeout=60) is not None
    logs = home.user_logs_dir("Som")
    job_log = logs / f"{job}.log"
    return ((logs / f"{job}.out.log").read_text(encoding="utf-8"),
            job_log.read_text(encoding="utf-8") if job_log.exists() else "")


@pytest.fixture
def leaky_home(tmp_path: Path) -> Home:
    home = make_home(tmp_path / "home")
    write_env(home, "Som", api_key=API_KEY, api_secret=API_SECRET)
    return home


def test_redact_job_stderr_in_the_out_log(leaky_home: Home, monkeypatch: pytest.MonkeyPatch) -> None:
    out, _ = _spawn_as_scheduler(leaky_home, "redact_stderr", "stderr", monkeypatch)
    _assert_clean(out, "redact_stderr.out.log")
    assert f"written by the job to stderr: key {SHOWN_KEY} secret *** token ***" in out
    assert "in pieces: ***" in out


def test_redact_uncaught_exception_in_a_job_thread(leaky_home: Home, monkeypatch: pytest.MonkeyPatch) -> None:
    out, log = _spawn_as_scheduler(leaky_home, "redact_thread", "thread", monkeypatch)
    _assert_clean(out, "redact_thread.out.log")
    _assert_clean(log, "redact_thread.log")
    # Through the job's logger (threading.excepthook bypassed it), with the traceback.
    assert "uncaught exception in thread leaky-thread" in log
    assert f"RuntimeError: thread failed: key {SHOWN_KEY} secret *** token ***" in log
    assert "uncaught exception in thread leaky-thread" in out  # and one line where the output goes


def test_redact_exception_escaping_the_worker_entry(leaky_home: Home, monkeypatch: pytest.MonkeyPatch) -> None:
    out, log = _spawn_as_scheduler(leaky_home, "redact_escape", "escape", monkeypatch)
    _assert_clean(out, "redact_escape.out.log")
    _assert_clean(log, "redact_escape.log")
    assert "uncaught exception in the main thread" in log and f"escaped: key {SHOWN_KEY}" in log
