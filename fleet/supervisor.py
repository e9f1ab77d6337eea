"""supervisord: the generated part of its config, and its XML-RPC socket.

Over 400 lines because it renders the generated config and parses it back (one format, kept in one
place) and probes the users that feed it; the XML-RPC half at the end (``socket_path`` ..
``namespec``) could move out if it grows.

On-disk contract:

    supervisord.conf                  tracked, static (socket, pid file, supervisord's log inside the
                                      home via %(here)s; include of run/supervisord.d/*.conf, relative
                                      to the file). A home other than the project root gets a copy
                                      (written by ``supervisor-conf``) with the home's folder written
                                      out in place of %(here)s (supervisord would expand a '%' in it).
    run/supervisord.d/trader.conf     generated from env/ by ``supervisor-conf``; untracked. Group
                                      ``trader`` with one program per env file (an invalid one too, so
                                      its error lands in its log and it goes FATAL), a
                                      ``paper-broker`` program when any valid user is in paper mode,
                                      and ``[eventlistener:trader-events]`` (fleet/eventlistener.py).
    logs/<User>/scheduler.out.log     the program's stdout+stderr (supervisord rotates it)
    logs/paper-broker.out.log         the paper broker program's stdout+stderr
    run/supervisor.sock               the XML-RPC socket (mode 0700)

Quoting: supervisord splits ``command=`` with POSIX shlex (words are shlex-quoted), splits
``environment=`` with non-POSIX shlex and strips quotes from both ends (the value is put in a quote
it does not contain), expands '%' once in most values and twice in log file names. What cannot be
said that way is refused: the generated text is read back with supervisord's own parser
(``parse_generated``/``parse_installed``) and compared with what was meant (``misread``).

No secret is in any of these: a program's only variable is ``KITEFLEET_HOME``; each worker reads
its own env file. Each user's mode and ``KITE_ROOT`` are learnt from a short process of that
user (``summary --settings-only``), never by reading env files here.
"""

from __future__ import annotations

import contextlib
import shlex
import sys
import xmlrpc.client
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from fleet import accounts, probe
from kitefleet.errors import ConfigError
from kitefleet.exitcodes import PERMANENT_EXIT_CODES
from kitefleet.home import PROJECT_ROOT, Home, ensure_dir

GROUP = "trader"
PAPER_BROKER = "paper-broker"
LISTENER = "trader-events"
GENERATED_NAME = "trader.conf"
STATIC_CONF = PROJECT_ROOT / "supervisord.conf"
ORCHESTRATOR = PROJECT_ROOT / "orchestrator.py"
#: Characters supervisord accepts in a program name (no ':' — it separates group and program).
_SAFE_PROGRAM = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")
_LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})


@dataclass(frozen=True)
class Timings:
    """supervisord timings of the trader programs. ``stop_grace`` (the scheduler's own wait for its
    jobs) stays well inside ``stopwaitsecs`` so supervisord never has to SIGKILL a scheduler."""

    startsecs: int = 5
    startretries: int = 3
    stopwaitsecs: int = 30

    @property
    def stop_grace(self) -> float:
        return max(1.0, self.stopwaitsecs * 0.5)


@dataclass(frozen=True)
class UserProbe:
    user: str
    valid: bool
    mode: str | None = None
    kite_root: str | None = None
    error: str | None = None
    details: dict[str, Any] | None = None


def probe_settings(home: Home, user: str, *, live: bool = False,
                   timeout: float = probe.LOCAL_TIMEOUT_S) -> UserProbe:
    """Run ``summary`` for one user in a process of its own (fleet.probe) and keep its answer."""
    answer = probe.ask(home, user, "summary", [] if live else ["--settings-only"], timeout=timeout)
    return _user_probe(answer)


def _user_probe(answer: probe.Answer) -> UserProbe:
    if answer.ok:
        info = answer.data or {}
        return UserProbe(answer.user, True, info.get("mode"), info.get("kite_root"), details=info)
    details = None if answer.exit_code is None else {"exit_code": answer.exit_code}
    return UserProbe(answer.user, False, error=answer.error, details=details)


def shared_accounts(home: Home, probes: list[UserProbe]) -> dict[str, str]:
    """Users left out because another user's env file is the same file or holds the same API key
    (fleet.accounts), with the reason; fingerprints as each user's own summary process told."""
    return accounts.clashes(home, {p.user: (p.details or {}).get("api_key_fingerprint") if p.valid else None
                                   for p in probes if program_name_ok(p.user)})


def probe_all(home: Home, users: list[str], *, live: bool = False,
              timeout: float = probe.LOCAL_TIMEOUT_S) -> list[UserProbe]:
    return probe.map_users(users, lambda u: probe_settings(home, u, live=live, timeout=timeout))


# --- the config ------------------------------------------------------------------------------------
def generated_path(home: Home) -> Path:
    return home.generated_conf_dir / GENERATED_NAME


def program_name_ok(name: str) -> bool:
    return bool(name) and set(name) <= _SAFE_PROGRAM


def _value(text: str) -> str:
    """A value safe inside supervisord's ini: '%' would start an expansion."""
    return text.replace("%", "%%")


def _logfile(path: Path) -> str:
    """A ``stdout_logfile=`` value: supervisord expands it twice (once as every value, once more
    with the program's expansions), so a '%' is doubled twice."""
    return str(path).replace("%", "%%%%")


def _quoted(path: Path | str) -> str:
    """A word of ``command=``, which supervisord splits with ``shlex.split`` after expansion."""
    return _value(shlex.quote(str(path)))


def _env_value(text: str) -> str:
    """A value of ``environment=``: supervisord splits it with a non-POSIX shlex (no escapes) and
    strips quote characters from both ends, so it is quoted with a quote it does not contain."""
    for quote in ('"', "'"):
        if quote not in text:
            return _value(f"{quote}{text}{quote}")
    raise ConfigError(f"the home {text!r} contains both ' and \": supervisord cannot pass it as "
                      "KITEFLEET_HOME; move the home to a path without quotes")


def _home_env(home: Home) -> str:
    root = str(home.root)
    if any(c in root for c in "\n\r\0"):
        raise ConfigError(f"the home {root!r} contains a line break: supervisord's config cannot hold it; "
                          "move the home to a path without one")
    return f"KITEFLEET_HOME={_env_value(root)}"


def paper_broker_address(probes: list[UserProbe]) -> tuple[str, int] | None:
    """(host, port) the supervised paper broker listens on, or None when no valid user is in paper
    mode (or they point at a broker elsewhere). Refuses valid paper users that disagree."""
    roots = {p.user: p.kite_root for p in probes if p.valid and p.mode == "paper" and p.kite_root}
    if not roots:
        return None
    if len(set(roots.values())) > 1:
        detail = ", ".join(f"{u}: {r}" for u, r in sorted(roots.items()))
        raise ConfigError(f"paper users disagree on KITE_ROOT ({detail}); one supervised paper broker "
                          "serves them all: give them the same KITE_ROOT")
    parsed = urlparse(next(iter(roots.values())))
    host = parsed.hostname or "127.0.0.1"
    if host not in _LOCAL_HOSTS:
        return None
    return host, parsed.port or (443 if parsed.scheme == "https" else 80)


TIMINGS_PREFIX = "; timings: "
BROKER_PREFIX = "; paper broker: "


def external_broker_of(text: str | None) -> bool | None:
    """Whether a generated config was written for a paper broker run outside supervisord."""
    for line in (text or "").splitlines():
        if line.startswith(BROKER_PREFIX):
            return line[len(BROKER_PREFIX):].strip() == "external"
    return None


def timings_of(text: str | None) -> Timings | None:
    """The timings a generated config was written with (so ``--check`` compares like with like)."""
    for line in (text or "").splitlines():
        if line.startswith(TIMINGS_PREFIX):
            with contextlib.suppress(ValueError):
                fields = dict(f.split("=", 1) for f in line[len(TIMINGS_PREFIX):].split())
                return Timings(int(fields["startsecs"]), int(fields["startretries"]), int(fields["stopwaitsecs"]))
    return None


WEB = "web"
WEB_PREFIX = "; web: "


def web_of(text: str | None) -> bool:
    """Whether a generated config was written with the dashboard program (``supervisor-conf --web``)."""
    return any(line.strip() == f"{WEB_PREFIX}on" for line in (text or "").splitlines())


def render(home: Home, probes: list[UserProbe], timings: Timings | None = None,
           python: str | None = None, *, external_broker: bool = False, web: bool = False) -> tuple[str, list[str]]:
    """The generated config's text, and warnings (users left out). With ``external_broker`` the
    paper users' broker is someone else's to run (the demo's, with its scenario), so no
    ``paper-broker`` program is generated."""
    timings = timings or Timings()
    python = python or sys.executable
    warnings: list[str] = []
    users = []
    shared = shared_accounts(home, probes)
    for p in sorted(probes, key=lambda p: p.user):
        if not program_name_ok(p.user):
            warnings.append(f"env/{p.user}.env: {p.user!r} cannot be a supervisord program name; left out: "
                            "rename the file to a valid user name (letters, digits, '_' or '-')")
        elif p.user in shared:
            warnings.append(f"{shared[p.user]}; {p.user} left out")
        else:
            users.append(p.user)
    exitcodes = ",".join(str(int(c)) for c in sorted(PERMANENT_EXIT_CODES))
    home_env = _home_env(home)
    lines = [
        "; Generated by 'orchestrator.py supervisor-conf' from env/; do not edit (it is rewritten).",
        "; Untracked: user names stay private. No secrets: each worker reads its own env file.",
        f"{TIMINGS_PREFIX}startsecs={timings.startsecs} startretries={timings.startretries} "
        f"stopwaitsecs={timings.stopwaitsecs}",
        f"{BROKER_PREFIX}{'external' if external_broker else 'supervised'}",
        *([f"{WEB_PREFIX}on"] if web else []),
        "",
    ]
    if users:
        lines += [f"[group:{GROUP}]", f"programs={','.join(users)}", "priority=999", ""]
    for user in users:
        lines += [
            f"[program:{user}]",
            f"command={_quoted(python)} {_quoted(ORCHESTRATOR)} exec %(program_name)s "
            f"--stop-grace {timings.stop_grace:g}",
            f"directory={_value(str(PROJECT_ROOT))}",
            f"environment={home_env}",
            "autostart=true",
            "autorestart=unexpected",
            f"exitcodes={exitcodes}",
            f"startsecs={timings.startsecs}",
            f"startretries={timings.startretries}",
            "stopsignal=TERM",
            f"stopwaitsecs={timings.stopwaitsecs}",
            "stopasgroup=true",
            "killasgroup=true",
            f"stdout_logfile={_logfile(home.user_logs_dir(user) / 'scheduler.out.log')}",
            "stdout_logfile_maxbytes=5MB",
            "stdout_logfile_backups=5",
            "redirect_stderr=true",
            "",
        ]
    if users:
        # supervisord's own event mechanism: on a trader's stop, that user's notify job is started
        # (fleet/eventlistener.py). No secret here either: each notify job reads its own env file.
        lines += [
            f"[eventlistener:{LISTENER}]",
            f"command={_quoted(python)} -m fleet.eventlistener",
            f"directory={_value(str(PROJECT_ROOT))}",
            f"environment={home_env}",
            "events=PROCESS_STATE_EXITED,PROCESS_STATE_FATAL",
            "autostart=true",
            "autorestart=true",
            f"stderr_logfile={_logfile(home.logs_dir / 'eventlistener.log')}",
            "stderr_logfile_maxbytes=1MB",
            "stderr_logfile_backups=2",
            "",
        ]
    address = None if external_broker else paper_broker_address(probes)
    if address is not None:
        host, port = address
        lines += [
            f"[program:{PAPER_BROKER}]",
            f"command={_quoted(python)} {_quoted(ORCHESTRATOR)} paper-broker --port {port} -- --host {host}",
            f"directory={_value(str(PROJECT_ROOT))}",
            f"environment={home_env}",
            "; started before the trader group (lower priority number starts first)",
            "priority=100",
            "autostart=true",
            "autorestart=true",
            "startsecs=2",
            "stopsignal=TERM",
            f"stopwaitsecs={timings.stopwaitsecs}",
            "stopasgroup=true",
            "killasgroup=true",
            f"stdout_logfile={_logfile(home.logs_dir / 'paper-broker.out.log')}",
            "stdout_logfile_maxbytes=5MB",
            "stdout_logfile_backups=5",
            "redirect_stderr=true",
            "",
        ]
    if web:
        # The dashboard on its defaults (127.0.0.1:8780, read-only); a port in use (exit 4) parks it.
        lines += [
            f"[program:{WEB}]",
            f"command={_quoted(python)} {_quoted(ORCHESTRATOR)} web",
            f"directory={_value(str(PROJECT_ROOT))}",
            f"environment={home_env}",
            "priority=900",
            "autostart=true",
            "autorestart=unexpected",
            f"exitcodes={exitcodes}",
            "startsecs=2",
            "stopsignal=TERM",
            "stopasgroup=true",
            "killasgroup=true",
            f"stdout_logfile={_logfile(home.logs_dir / 'web.out.log')}",
            "stdout_logfile_maxbytes=1MB",
            "stdout_logfile_backups=2",
            "redirect_stderr=true",
            "",
        ]
    return "\n".join(lines), warnings


def count_text(users: list[str], excluded: Collection[str] = ()) -> str:
    """How many programs of group trader the env files make, and how many files are left out."""
    programs = sum(1 for u in users if program_name_ok(u) and u not in excluded)
    left_out = len(users) - programs
    text = f"{programs} user program(s)"
    return text + (f", {left_out} env file(s) left out" if left_out else "")


def needed_dirs(home: Home, users: list[str]) -> list[Path]:
    """supervisord refuses a config whose log folders do not exist."""
    return [home.run_dir, home.generated_conf_dir, home.logs_dir,
            *(home.user_logs_dir(u) for u in users if program_name_ok(u))]


def home_conf_needed(home: Home) -> bool:
    return home.root.resolve() != PROJECT_ROOT.resolve()


def static_conf_text() -> str:
    return STATIC_CONF.read_text(encoding="utf-8")


def home_conf_text(home: Home) -> str:
    """The home's copy of the static config, with ``%(here)s`` written out: supervisord puts the
    folder into ``%(here)s`` unescaped and then expands the value again, so a home with a ``%``
    would break every path (and the include is relative, not ``%(here)s``, because supervisord
    splits the include's value on whitespace)."""
    text = static_conf_text()
    if not home_conf_needed(home):
        return text
    return text.replace("%(here)s", _value(str(home.root)))


# --- reading it back as supervisord does ------------------------------------------------------------
def expected_program(home: Home, user: str, timings: Timings, python: str | None = None) -> dict[str, Any]:
    return {"argv": [python or sys.executable, str(ORCHESTRATOR), "exec", user, "--stop-grace",
                     f"{timings.stop_grace:g}"],
            "environment": {"KITEFLEET_HOME": str(home.root)},
            "directory": str(PROJECT_ROOT),
            "stdout_logfile": str(home.user_logs_dir(user) / "scheduler.out.log")}


def _programs_of(opts: Any, groups: list[Any]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for group in groups:
        for proc in group.process_configs:
            try:
                argv = shlex.split(proc.command)
            except ValueError as exc:
                argv = [f"<unparseable: {exc}>"]
            out[f"{group.name}:{proc.name}"] = {
                "argv": argv, "environment": dict(proc.environment or {}),
                "directory": proc.directory, "stdout_logfile": proc.stdout_logfile}
    return out


def parse_generated(home: Home, text: str) -> dict[str, dict[str, Any]]:
    """The trader programs as supervisord's own parser reads ``text`` (the generated part).
    Raises ValueError where supervisord would refuse it. The log folders must exist."""
    from supervisor.options import ServerOptions, UnhosedConfigParser

    opts = ServerOptions()
    opts.here = str(home.root)
    parser = UnhosedConfigParser()
    parser.expansions = opts.environ_expansions
    parser.read_string(text)
    return _programs_of(opts, opts.process_groups_from_parser(parser))


def parse_installed(home: Home) -> dict[str, dict[str, Any]]:
    """The programs as supervisord reads the home's whole config (static part and includes).
    Raises ValueError where supervisord would refuse it."""
    from supervisor.options import ServerOptions

    opts = ServerOptions()
    conf = str(home.supervisord_conf)
    opts.configfile = conf
    opts.here = str(home.supervisord_conf.parent)
    opts.read_config(conf)
    return _programs_of(opts, opts.configroot.supervisord.process_group_configs)


def misread(home: Home, parsed: dict[str, dict[str, Any]], users: list[str], timings: Timings,
            python: str | None = None) -> str | None:
    """One line saying what supervisord would read differently from what was meant, or None."""
    for user in users:
        want = expected_program(home, user, timings, python)
        got = parsed.get(f"{GROUP}:{user}")
        if got is None:
            return f"supervisord would start no program {GROUP}:{user}"
        for key, value in want.items():
            if got[key] != value:
                return f"supervisord would read {GROUP}:{user}'s {key} as {got[key]!r}, not {value!r}"
    return None


def ensure_dirs(home: Home, users: list[str]) -> None:
    for path in needed_dirs(home, users):
        ensure_dir(path)


# --- XML-RPC ---------------------------------------------------------------------------------------
def socket_path(home: Home) -> Path:
    return home.run_dir / "supervisor.sock"


def rpc(home: Home) -> Any:
    from supervisor.xmlrpc import SupervisorTransport

    transport = SupervisorTransport(None, None, f"unix://{socket_path(home)}")
    # The host part is ignored: the transport talks to the unix socket.
    return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport)


def supervisor_running(home: Home) -> bool:
    if not socket_path(home).exists():
        return False
    try:
        return rpc(home).supervisor.getState().get("statename") == "RUNNING"
    except (OSError, xmlrpc.client.Error):
        return False  # a stale socket left by a SIGKILLed supervisord


def process_infos(home: Home) -> dict[str, dict[str, Any]] | None:
    """``{"trader:Som": info, "paper-broker": info}`` from supervisord, or None when it is not running."""
    if not socket_path(home).exists():
        return None
    try:
        infos = rpc(home).supervisor.getAllProcessInfo()
    except (OSError, xmlrpc.client.Error):
        return None
    out: dict[str, dict[str, Any]] = {}
    for info in infos:
        name = info["name"] if info["group"] == info["name"] else f"{info['group']}:{info['name']}"
        out[name] = info
    return out


def namespec(user: str) -> str:
    return f"{GROUP}:{user}"
