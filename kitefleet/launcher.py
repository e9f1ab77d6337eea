"""The one way a worker process is born (supervisord's ``exec``, ``run-all`` and ``run``).

The child's environment is built from nothing: a short allowlist of harmless variables from the
parent, plus the project's own non-secret variables. Nothing else passes: supervisord copies its
whole environment into every child, so a key exported in the shell that started it would
otherwise reach every user. The child reads its own ``env/<User>.env`` itself; no secret travels
through any environment, command line or config file.

The child's command line is ``python -m workers JOB --user USER [JOB_ARGS...]``: ``--user`` comes
first and job arguments may not name a user again (refused here, and by the worker itself, which
also refuses a second ``--user`` and never matches an abbreviation), so no job argument can switch
the user a process labelled USER serves. Job arguments are not put after a ``--``: the worker
parses them as options (``--dry-run``, ``--top N``).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from typing import Any, NoReturn

from kitefleet import clock
from kitefleet.errors import UsageError
from kitefleet.home import PROJECT_ROOT, Home
from kitefleet.users import validate_user_name

#: The locale variables by name: POSIX's, and the GNU ones a Debian system sets. Never a prefix:
#: ``LC_KITE_API_SECRET`` is a legal name, and anything exported in supervisord's shell would pass.
LOCALE_NAMES = frozenset({
    "LC_ALL", "LC_CTYPE", "LC_COLLATE", "LC_MESSAGES", "LC_MONETARY", "LC_NUMERIC", "LC_TIME",
    "LC_ADDRESS", "LC_IDENTIFICATION", "LC_MEASUREMENT", "LC_NAME", "LC_PAPER", "LC_TELEPHONE",
})
#: Harmless variables copied from the parent when present.
ALLOWED_NAMES = frozenset({"PATH", "LANG", "TZ", "HOME", "TMPDIR", "PYTHONPATH"}) | LOCALE_NAMES
#: supervisord's identity variables (the worker cross-checks its --user against them).
SUPERVISOR_NAMES = frozenset(
    {"SUPERVISOR_ENABLED", "SUPERVISOR_PROCESS_NAME", "SUPERVISOR_GROUP_NAME", "SUPERVISOR_SERVER_URL"}
)
#: Test-only fault injection and the test suite's marker without which it does nothing (see
#: workers/faults.py; the names are repeated here so the launcher imports nothing of the workers).
FAULT_ENV = "KITEFLEET_FAULT"
TEST_MARKER_ENV = "KITEFLEET_TEST_MARKER"


def build_child_env(parent: Mapping[str, str] | None = None, *, home: Home | None = None) -> dict[str, str]:
    """The complete environment of a worker child, from nothing."""
    parent = os.environ if parent is None else parent
    env: dict[str, str] = {}
    for name, value in parent.items():
        if name in ALLOWED_NAMES or name in SUPERVISOR_NAMES:
            env[name] = value
    env["KITEFLEET_HOME"] = str((home or Home.resolve(dict(parent))).root)
    anchored = clock.anchored(parent.get(clock.ENV_VAR))
    if anchored:
        env[clock.ENV_VAR] = anchored
    for name in (FAULT_ENV, TEST_MARKER_ENV):
        # Passed as given, even empty: a live worker refuses to start with the fault variable present.
        if name in parent:
            env[name] = parent[name]
    env["PYTHONUNBUFFERED"] = "1"
    # The project's packages must import in the child even when it is not installed in the venv.
    root = str(PROJECT_ROOT)
    paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    if root not in paths:
        env["PYTHONPATH"] = os.pathsep.join([root, *paths])
    return env


def _names_user(arg: str) -> bool:
    """``--user``, ``--user=X`` or an abbreviation argparse could take for it (``--us``)."""
    option = arg.split("=", 1)[0]
    return len(option) > 2 and "--user".startswith(option)


def worker_argv(user: str, job: str, args: Sequence[str] = ()) -> list[str]:
    validate_user_name(user)
    for arg in args:
        if arg == "--":
            break  # beyond this the worker takes everything as plain values
        if _names_user(arg):
            raise UsageError(f"job arguments may not name a user ({arg.split('=', 1)[0]}): "
                             f"this process serves {user}")
    return [sys.executable, "-m", "workers", job, "--user", user, *args]


def spawn_worker(user: str, job: str, args: Sequence[str] = (), *, home: Home | None = None,
                 parent_env: Mapping[str, str] | None = None, new_session: bool = True,
                 **popen: Any) -> subprocess.Popen[bytes]:
    """Start one job for one user as a child process (its own session, so it is stopped by group)."""
    env = build_child_env(parent_env, home=home)
    return subprocess.Popen(
        worker_argv(user, job, args), env=env, cwd=str(PROJECT_ROOT), start_new_session=new_session, **popen
    )


def signal_leader(pid: int, sig: int) -> None:
    """Signal ``pid``'s process group when it leads one (workers and jobs are started in their own
    session, so everything they started goes too), else the pid alone; never our own group."""
    try:
        pgid = os.getpgid(pid)
    except ProcessLookupError:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if pgid == pid and pgid != os.getpgrp():
            os.killpg(pgid, sig)
        else:
            os.kill(pid, sig)


def exec_worker(user: str, job: str, args: Sequence[str] = (), *, home: Home | None = None) -> NoReturn:
    """Replace this process with the worker (supervisord's ``orchestrator.py exec``)."""
    env = build_child_env(home=home)
    argv = worker_argv(user, job, args)
    os.chdir(PROJECT_ROOT)
    os.execve(argv[0], argv, env)
