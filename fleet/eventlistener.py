"""supervisord event listener: tell a user when their trader stopped or was restarted.

Run by supervisord as ``[eventlistener:trader-events]`` (fleet/supervisor.py renders it; no secret
in it: its only variable is ``KITEFLEET_HOME``), subscribed to PROCESS_STATE_EXITED and
PROCESS_STATE_FATAL. For ``trader:<User>`` it starts that user's ``notify`` job through the
launcher (a process of that user, which reads that user's env file), with the event:

| supervisord says                          | the user hears                              |
|-------------------------------------------|---------------------------------------------|
| EXITED, exit 0                            | nothing (a clean stop)                      |
| EXITED, not expected (a crash, a signal)  | "trader restarted (exit N)" (-9: SIGKILL)   |
| EXITED, expected 3 or 6                   | "trader stopped (exit N)" (parked)          |
| EXITED or FATAL with exit 4               | "trader stopped: configuration"             |
| FATAL (could not start)                   | "trader stopped (exit N)"                   |

EXITED does not carry the exit status: it is read from supervisord's own log (``exit_status``).

stdout is supervisord's protocol channel: nothing else is written there. This process's own lines
go to stderr (supervisord's ``stderr_logfile``, logs/eventlistener.log); the notify jobs' output
to ``logs/<User>/notify.out.log``.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Mapping
from typing import Any, TextIO

from kitefleet.exitcodes import ExitCode
from kitefleet.home import Home, ensure_dir
from kitefleet.launcher import spawn_worker
from kitefleet.users import validate_user_name

GROUP = "trader"
NAME = "trader-events"
EVENTS = ("PROCESS_STATE_EXITED", "PROCESS_STATE_FATAL")


def notify_args(event: str, expected: bool, exitstatus: int | None) -> list[str] | None:
    """The notify job's arguments for one supervisord event, or None when nobody needs to hear it."""
    code = [] if exitstatus is None else ["--exit", str(exitstatus)]
    if event == "PROCESS_STATE_FATAL":
        return ["--event", "trader_stopped", "--fatal", *code]
    if exitstatus == ExitCode.OK:
        return None
    if expected or exitstatus == ExitCode.CONFIG:
        return ["--event", "trader_stopped", "--expected", *code]
    return ["--event", "trader_restarted", *code]


_EXITED_LINE = r"exited: {name} \((exit status (\d+)|terminated by (SIG[A-Z0-9]+))"


def exit_status(rpc: Any, namespec: str, program: str) -> int | None:
    """The exit status of the program's last exit; ``-N`` for a death by signal N. From supervisord's
    own log line ("exited: Som (terminated by SIGKILL; not expected)"): ``getProcessInfo`` has
    forgotten it once the program is started again (at once, for an unexpected exit) or after an
    exit too quick to count, and shows a death by any signal as -1."""
    try:
        tail = str(rpc.supervisor.readLog(-16000, 0))
    except Exception:  # the listener answers supervisord whatever happens
        tail = ""
    found = re.findall(_EXITED_LINE.format(name=re.escape(program)), tail)
    if found:
        _, code, name = found[-1]
        if code:
            return int(code)
        try:
            return -int(signal.Signals[name])
        except KeyError:
            return None
    try:
        return int(rpc.supervisor.getProcessInfo(namespec)["exitstatus"])
    except Exception:
        return None


class Listener:
    def __init__(self, home: Home, rpc: Any, environ: Mapping[str, str], err: TextIO) -> None:
        self.home, self.rpc, self.err = home, rpc, err
        # The notify job must not think it is a supervisord program (SUPERVISOR_PROCESS_NAME would
        # name this listener, and the worker refuses a name other than its user's).
        self.child_env = {k: v for k, v in environ.items() if not k.startswith("SUPERVISOR_")}
        self.children: list[subprocess.Popen[bytes]] = []

    def handle(self, eventname: str, headers: Mapping[str, str]) -> None:
        self.children = [c for c in self.children if c.poll() is None]  # reap
        if eventname not in EVENTS or headers.get("groupname") != GROUP:
            return
        user = headers.get("processname", "")
        try:
            validate_user_name(user)
        except Exception:
            return
        status = exit_status(self.rpc, f"{GROUP}:{user}", user)
        args = notify_args(eventname, headers.get("expected") == "1", status)
        print(f"{eventname} {GROUP}:{user} exit {status}: {'notify ' + ' '.join(args) if args else 'nothing'}",
              file=self.err, flush=True)
        if args is None:
            return
        log_dir = ensure_dir(self.home.user_logs_dir(user))
        fd = os.open(log_dir / "notify.out.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            self.children.append(spawn_worker(user, "notify", args, home=self.home, parent_env=self.child_env,
                                               stdin=subprocess.DEVNULL, stdout=fd, stderr=subprocess.STDOUT))
        except OSError as exc:
            print(f"could not start notify for {user}: {exc}", file=self.err, flush=True)
        finally:
            os.close(fd)


def main() -> int:
    from supervisor import childutils

    home = Home.resolve()
    listener = Listener(home, childutils.getRPCInterface(os.environ), os.environ, sys.stderr)
    while True:
        headers, payload = childutils.listener.wait(sys.stdin, sys.stdout)
        try:
            pheaders, _ = childutils.eventdata(payload + "\n")
            listener.handle(headers.get("eventname", ""), pheaders)
        except Exception as exc:  # never leave supervisord waiting for an answer
            print(f"event not handled: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        childutils.listener.ok(sys.stdout)


if __name__ == "__main__":
    sys.exit(main())
