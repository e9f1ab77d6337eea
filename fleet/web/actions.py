"""The dashboard's actions: the same command code as the CLI, run as ``orchestrator.py <command>``
in a process of its own (so a halt with flatten, which needs the user's broker session, starts that
user's process exactly as the CLI would, and the dashboard never holds the user's secret).

Which actions exist is read from the CLI's own parser: ``halt`` / ``unhalt`` appear on the page
once those commands exist (``halt`` with ``--flatten`` when it offers that option); until then a
POST for them answers "not available".
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

from kitefleet.home import PROJECT_ROOT, Home
from kitefleet.launcher import SUPERVISOR_NAMES

ORCHESTRATOR = PROJECT_ROOT / "orchestrator.py"
TIMEOUT_S = 180.0
REASON = "set from the dashboard"


@dataclass(frozen=True)
class Action:
    name: str
    label: str
    command: str
    args: tuple[str, ...]
    confirm: str
    danger: bool = False


def _subcommands() -> dict[str, Any]:
    from fleet.cli import build_parser

    parser = build_parser()
    for action in parser._actions:  # argparse keeps subparsers only here
        choices = getattr(action, "choices", None)
        if isinstance(choices, dict):
            return choices
    return {}


def _options(parser: Any) -> set[str]:
    return {opt for a in getattr(parser, "_actions", []) for opt in a.option_strings}


def available_actions() -> dict[str, Action]:
    """Action name -> Action, for the commands this tree's CLI has."""
    subs = _subcommands()
    out: dict[str, Action] = {}
    if "pause" in subs:
        out["pause"] = Action("pause", "Pause entries", "pause", ("--reason", REASON),
                              "Pause new entries of {user}? Stops and exits keep working.")
    if "resume" in subs:
        out["resume"] = Action("resume", "Resume entries", "resume", (), "Allow new entries of {user} again?")
    if "halt" in subs:
        opts = _options(subs["halt"])
        yes = ("--yes",) if "--yes" in opts else ()
        reason = ("--reason", REASON) if "--reason" in opts else ()
        # --yes only confirms a flatten (the CLI refuses it on a plain halt)
        out["halt"] = Action("halt", "Halt", "halt", reason,
                             "Halt {user}? Entries stop and open entry orders are cancelled.", danger=True)
        if "--flatten" in opts:
            out["halt-flatten"] = Action("halt-flatten", "Halt and flatten", "halt", ("--flatten", *reason, *yes),
                                         "Halt {user} AND sell the shares the bot owns at market?", danger=True)
    if "unhalt" in subs:
        yes = ("--yes",) if "--yes" in _options(subs["unhalt"]) else ()
        out["unhalt"] = Action("unhalt", "Unhalt", "unhalt", yes, "Lift the halt of {user}?")
    return out


#: every action the dashboard knows, for "not available" answers about the ones this tree lacks
KNOWN = ("pause", "resume", "halt", "halt-flatten", "unhalt")


def run_action(home: Home, action: Action, user: str) -> tuple[int, str]:
    """Run the CLI command for ``user``; its exit code and output (stdout then stderr), stripped."""
    env = {k: v for k, v in os.environ.items() if k not in SUPERVISOR_NAMES}
    env["KITEFLEET_HOME"] = str(home.root)
    argv = [sys.executable, str(ORCHESTRATOR), action.command, user, *action.args]
    try:
        done = subprocess.run(argv, cwd=PROJECT_ROOT, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, timeout=TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        return 1, f"{action.command} {user} gave no answer within {TIMEOUT_S:g}s"
    text = "\n".join(t.strip() for t in (done.stdout, done.stderr) if t.strip())
    return done.returncode, text
