"""Operator input checked before anything starts: user names, job names, and job arguments that
were meant to follow ``--``. Every refusal is a UsageError (exit 2): one line naming the value and
what to do.

A user exists when ``env/<User>.env`` exists, valid or not. Whether its content is valid is the
worker's to say (exit 4, naming the file and key), so a supervised program whose env file is
broken still goes FATAL with that error in its log. Only a missing file makes a user unknown.

An env file whose name is not a valid user name (``bad name.env``) is not a user: commands acting
on every user leave it out with a warning that names the file, rather than stopping half-way
through the fleet.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Sequence

from kitefleet.errors import UsageError
from kitefleet.home import Home
from kitefleet.jobs import JOB_NAMES
from kitefleet.users import list_users, validate_user_name

#: Commands whose extra arguments belong to the job: they take job arguments after ``--``.
JOB_ARG_COMMANDS = frozenset({"run", "run-all"})


def _valid_name(name: str) -> bool:
    try:
        validate_user_name(name)
    except UsageError:
        return False
    return True


def env_file_present(home: Home, user: str) -> bool:
    # lexists: a dangling symlink or a directory is still "the user's env file", and the worker
    # says what is wrong with it.
    return os.path.lexists(home.env_file(user))


def valid_users(home: Home) -> list[str]:
    """Every env file's stem that is a valid user name, sorted."""
    return [u for u in list_users(home) if _valid_name(u)]


def misnamed_env_warnings(home: Home) -> list[str]:
    """One warning per env file whose name cannot be a user's (those files are left out)."""
    return [f"env/{stem}.env: {stem!r} is not a valid user name (1-32 letters, digits, '_' or '-', "
            "starting with a letter); left out: rename the file"
            for stem in list_users(home) if not _valid_name(stem)]


def _users_text(home: Home) -> str:
    users = valid_users(home)
    if not users:
        return (f"there are no users yet ({home.env_dir} has no <User>.env): copy env/example.env to "
                "env/<User>.env or run 'orchestrator.py import-config'")
    return "users: " + ", ".join(users)


def unknown_users_error(home: Home, names: Sequence[str]) -> UsageError:
    files = " or ".join(f"env/{n}.env" for n in names)
    label = "unknown user" if len(names) == 1 else "unknown users"
    message = f"{label} {', '.join(repr(n) for n in names)}: no {files}; {_users_text(home)}"
    by_lower = {u.lower(): u for u in valid_users(home)}
    guesses = [by_lower[n.lower()] for n in names if n.lower() in by_lower]
    if guesses:
        message += f" (did you mean {', '.join(guesses)}? user names are case-sensitive)"
    return UsageError(message)


def require_user(home: Home, name: str) -> str:
    """``name`` if it is a valid user name with an env file; else UsageError naming the users."""
    user = validate_user_name(name)
    if not env_file_present(home, user):
        raise unknown_users_error(home, [user])
    return user


def select_users(home: Home, wanted: str | None) -> list[str]:
    """The users named by a ``--users A,B`` value (in the order given, each once), or every user
    when ``wanted`` is None. Refuses unknown names all at once, and an empty selection."""
    if wanted is None:
        users = valid_users(home)
        if not users:
            raise UsageError(_users_text(home))
        return users
    chosen: list[str] = []
    for part in wanted.split(","):
        name = part.strip()
        if name and name not in chosen:
            chosen.append(validate_user_name(name))
    if not chosen:
        raise UsageError(f"--users names no user: give a comma-separated list; {_users_text(home)}")
    missing = [u for u in chosen if not env_file_present(home, u)]
    if missing:
        raise unknown_users_error(home, missing)
    return chosen


def job_names() -> list[str]:
    """The worker's jobs, by name (kitefleet.jobs: nothing of the workers is imported)."""
    return sorted(JOB_NAMES)


def require_job(job: str) -> str:
    jobs = job_names()
    if job not in jobs:
        raise UsageError(f"unknown job {job!r}; jobs: {', '.join(jobs)}")
    return job


def job_args_hint(command: str, argv: Sequence[str], extras: Sequence[str],
                  passthrough: Sequence[str] = ()) -> str | None:
    """For ``run``/``run-all``: the command line with ``extras`` moved after ``--``, as a hint."""
    if command not in JOB_ARG_COMMANDS or not extras:
        return None
    ours = list(argv)
    # From the right: an extra argument's value ("1" of "--hold 1") may equal one of ours.
    for extra in reversed(extras):
        for i in range(len(ours) - 1, -1, -1):
            if ours[i] == extra:
                del ours[i]
                break
    suggestion = shlex.join(["orchestrator.py", *ours, "--", *extras, *passthrough])
    return f"job arguments go after --: {suggestion}"
