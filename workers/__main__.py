"""The single worker entry: ``python -m workers JOB --user USER [--dry-run] [job args]``.

One process serves exactly one user. Start-up, in order: parse the command line; validate the
user name; check it against supervisord's ``SUPERVISOR_PROCESS_NAME`` when set; read the user's
own ``env/<User>.env`` (never into ``os.environ``); refuse a simulated clock in live mode; set up
per-user logging with secret redaction; take the per-(user, job) lock for trading jobs; run the
job. Every failure ends with one line on stderr and a stable exit code (kitefleet.exitcodes).

The user is fixed by the one ``--user`` the launcher puts first: job arguments come after it and
must not switch it, so a second ``--user`` is a usage error (argparse would keep the last one)
and options are never matched by abbreviation (``--us Sai`` would otherwise mean ``--user Sai``).
"""

from __future__ import annotations

import argparse
import errno
import importlib
import importlib.util
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from types import FrameType, ModuleType

from kitefleet import clock
from kitefleet.errors import ConfigError, KitefleetError, UsageError
from kitefleet.exitcodes import ExitCode
from kitefleet.home import Home
from kitefleet.jobs import JOB_NAMES
from kitefleet.key_fingerprint import load_and_record
from kitefleet.users import validate_user_name
from workers.context import STOP, JobContext
from workers.lean_imports import install_ticker_placeholder

#: Jobs whose module is not ``workers.jobs.<name>``.
_MODULE_OUTSIDE_JOBS = {"daemon": "workers.daemon"}
#: Job name -> module. Modules are imported only when their job runs, so the scheduler stays lean.
JOBS: dict[str, str] = {name: _MODULE_OUTSIDE_JOBS.get(name, f"workers.jobs.{name}") for name in JOB_NAMES}


def available_jobs() -> list[str]:
    return sorted(name for name, module in JOBS.items() if importlib.util.find_spec(module) is not None)


class _OnlyOnce(argparse.Action):
    """Store the option's value, refusing a second occurrence (argparse would keep the last)."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: str | Sequence[object] | None, option_string: str | None = None) -> None:
        before = getattr(namespace, self.dest, None)
        if before is not None:
            raise argparse.ArgumentError(
                self, f"given twice ({before} and {values}): a process serves exactly one user"
            )
        setattr(namespace, self.dest, values)


def _build_parser(job_module: ModuleType | None, job: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"python -m workers {job}", description=f"run {job} for one user",
                                     allow_abbrev=False)
    parser.add_argument("--user", required=True, action=_OnlyOnce,
                        help="the one user this process serves (env/<USER>.env)")
    parser.add_argument("--dry-run", action="store_true", help="plan and log, send nothing to the broker")
    add_arguments = getattr(job_module, "add_arguments", None)
    if add_arguments is not None:
        add_arguments(parser)
    return parser


def _install_signal_handlers(handles_stop: bool) -> None:
    def on_signal(signum: int, _frame: FrameType | None) -> None:
        already = STOP.is_set()
        STOP.set()
        if not handles_stop or already:
            raise SystemExit(ExitCode.OK)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)


def _check_identity(user: str) -> None:
    supervised_as = os.environ.get("SUPERVISOR_PROCESS_NAME")
    if supervised_as is not None and supervised_as != user:
        raise ConfigError(
            f"user mismatch: --user {user} but supervisord runs this process as {supervised_as!r}; "
            "regenerate the config with 'orchestrator.py supervisor-conf'"
        )


# C901 on purpose: the process entry: each branch is one startup refusal with its own exit code
# (unknown job, broken install, usage, bad settings, simulated clock in live, lock held).
def main(argv: Sequence[str] | None = None) -> int:  # noqa: C901
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0].startswith("-"):
        print(f"usage: python -m workers JOB --user USER [--dry-run] [args]; jobs: {', '.join(available_jobs())}",
              file=sys.stderr)
        return ExitCode.USAGE
    job, rest = argv[0], argv[1:]
    install_ticker_placeholder()
    log: logging.Logger | None = None
    home: Home | None = None
    try:
        if job not in JOBS:
            raise UsageError(f"unknown job {job!r}; jobs: {', '.join(available_jobs())}")
        try:
            module = importlib.import_module(JOBS[job])
        except ModuleNotFoundError as exc:
            if exc.name == JOBS[job]:
                raise UsageError(f"job {job!r} is not available in this version") from None
            raise
        parser = _build_parser(module, job)
        try:
            args = parser.parse_args(rest)
        except SystemExit as exc:
            return ExitCode.USAGE if exc.code else ExitCode.OK
        user = validate_user_name(args.user)
        _check_identity(user)
        home = Home.resolve()
        try:
            settings = load_and_record(home, user)  # + data/<User>/key_fingerprint.json, for the fleet
        except ConfigError as exc:  # the notify job still tells a person, with its own keys only
            if not hasattr(module, "fallback_settings"):
                raise
            settings = module.fallback_settings(home, user, exc)
        current_clock = clock.get_clock()
        if current_clock.simulated and not settings.is_paper:
            raise ConfigError(
                f"{home.env_file(user).name}: TRADER_MODE=live with a simulated clock "
                f"({clock.ENV_VAR} is set); unset {clock.ENV_VAR} for live trading"
            )
        from workers.logs import redact_process_output, register_secret, setup_logging

        for secret in settings.secrets():
            register_secret(secret)
        register_secret(settings.api_key, keep=4)
        from workers.faults import arm

        if not settings.is_paper:
            arm(paper=False)  # refuses a fault variable in live mode, before anything is logged
        log = setup_logging(home, user, job, level=settings.log_level,
                            console=getattr(module, "LOG_TO_CONSOLE", True))
        # stderr ends up in logs/<User>/<job>.out.log, and uncaught exceptions (a job's thread
        # above all: threading.excepthook bypasses logging) would print raw tracebacks there.
        redact_process_output(log)
        arm(paper=settings.is_paper)
        _install_signal_handlers(getattr(module, "HANDLES_STOP", False))
        ctx = JobContext(user=user, job=job, home=home, settings=settings, args=args, log=log)
        if getattr(module, "TAKES_JOB_LOCK", False):
            from kitefleet.locks import job_lock

            with job_lock(home, user, job):
                return int(module.run(ctx))
        return int(module.run(ctx))
    except KitefleetError as exc:
        return _refused(job, log, exc)
    except KeyboardInterrupt:
        return ExitCode.OK
    except OSError as exc:
        folder = _unwritable_folder(exc, home)
        if folder is None:
            return _failed(job, log)
        return _refused(job, log, ConfigError(
            f"{folder}: cannot be written ({exc.strerror}); the home's data/ and logs/ folders must be "
            "writable by the user running the fleet"))
    except Exception:
        return _failed(job, log)


#: errno values that mean "this folder is not ours to write" (a read-only mount, modes, chattr +i).
_NOT_WRITABLE = (errno.EROFS, errno.EACCES, errno.EPERM)


def _unwritable_folder(exc: OSError, home: Home | None) -> Path | None:
    """The folder inside the home that a failed write names, or None for any other OSError."""
    if exc.errno not in _NOT_WRITABLE or not exc.filename or home is None:
        return None
    path = Path(os.fsdecode(exc.filename))
    if home.root not in path.parents:
        return None
    return path if path.is_dir() else path.parent


def _refused(job: str, log: logging.Logger | None, exc: KitefleetError) -> int:
    """One line on stderr (README: "every failure ends with one line"); the log file gets it too,
    but not the console handler, which would print the same failure a second time."""
    from workers.logs import redact

    if log is not None:
        root = logging.getLogger()
        consoles = [h for h in root.handlers
                    if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)]
        for handler in consoles:
            root.removeHandler(handler)
        try:
            log.error("%s", exc)
        finally:
            for handler in consoles:
                root.addHandler(handler)
    print(f"{job}: error: {redact(str(exc))}", file=sys.stderr)
    return int(exc.exit_code)


def _failed(job: str, log: logging.Logger | None) -> int:
    if log is not None:
        log.exception("job %s failed", job)
    else:
        import traceback

        traceback.print_exc()
    return ExitCode.JOB_FAILED


if __name__ == "__main__":
    sys.exit(main())
