"""``orchestrator.py`` command line. Each command lives in its own module under fleet/commands;
they share helpers from fleet/ and never import each other."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from fleet.output import error
from fleet.validate import job_args_hint
from kitefleet.errors import KitefleetError
from kitefleet.exitcodes import ExitCode

#: command name -> module under fleet.commands (each defines add_parser(subparsers) and run(args)).
COMMANDS = (
    "users",
    "run",
    "run_all",
    "paper_broker",
    "import_config",
    "migrate_state",
    "pause",
    "halt",
    "adopt",
    "release",
    "backtest",
    "login",
    "doctor",
    "exec_",
    "supervisor_conf",
    "status",
    "stop",
    "resolve_intent",
    "notify_test",
    "web",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="orchestrator.py",
        description="kitefleet: automated swing trading for several Kite accounts, one process per user.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        module = importlib.import_module(f"fleet.commands.{name}")
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    # Everything after the first "--" belongs to the job (or the paper broker), not to us.
    passthrough: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, passthrough = argv[:cut], argv[cut + 1 :]
    try:
        args, extras = parser.parse_known_args(argv)
        if extras:
            hint = job_args_hint(args.command, argv, extras, passthrough)
            if hint is None:
                parser.error(f"unrecognized arguments: {' '.join(extras)}")
            error(f"unrecognized arguments: {' '.join(extras)}; {hint}")
            return ExitCode.USAGE
    except SystemExit as exc:
        return ExitCode.USAGE if exc.code else ExitCode.OK
    args.passthrough = passthrough
    try:
        return int(args.func(args))
    except KitefleetError as exc:
        error(str(exc))
        return int(exc.exit_code)
    except KeyboardInterrupt:
        return ExitCode.OK
