"""``supervisor-conf [--check]``: write the generated part of supervisord's config from env/.

Writes ``run/supervisord.d/trader.conf`` (see fleet.supervisor) and, for a home other than the
project root, ``<home>/supervisord.conf`` (a copy of the static one: ``%(here)s`` is the
config's folder). Creates the log folders supervisord needs. ``--check`` writes nothing and exits
1 when the generated part is missing or out of date with env/.

Adding or removing a user changes the membership of group ``trader``, and supervisord's
``update`` then restarts the whole group: the command warns when run during market hours.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from fleet import supervisor
from kitefleet import clock
from kitefleet.atomic import atomic_write_text
from kitefleet.calendar import read_calendar
from kitefleet.errors import ConfigError
from kitefleet.exitcodes import ExitCode
from kitefleet.home import Home
from kitefleet.users import list_users


def add_parser(sub: Any) -> None:
    p = sub.add_parser("supervisor-conf", help="write supervisord's generated config (group trader) from env/",
                       usage="orchestrator.py supervisor-conf [--check] [--external-broker | --supervised-broker] "
                             "[--web | --no-web]")
    p.add_argument("--check", action="store_true", help="exit 1 if the generated config is out of date")
    broker = p.add_mutually_exclusive_group()
    broker.add_argument("--external-broker", dest="external_broker", action="store_true", default=None,
                        help="the paper broker runs outside supervisord: generate no paper-broker program "
                             "(remembered in the generated file)")
    broker.add_argument("--supervised-broker", dest="external_broker", action="store_false",
                        help="generate the paper-broker program again (the default)")
    web = p.add_mutually_exclusive_group()
    web.add_argument("--web", dest="web", action="store_true", default=None,
                     help="add the dashboard (orchestrator.py web, 127.0.0.1:8780) as program 'web' (remembered)")
    web.add_argument("--no-web", dest="web", action="store_false", help="leave the dashboard program out again")
    # Short timings for tests and the demo; hidden from --help.
    p.add_argument("--startsecs", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--startretries", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--stopwaitsecs", type=int, default=None, help=argparse.SUPPRESS)
    p.set_defaults(func=run)


def _market_open(home: Home) -> bool:
    try:
        return read_calendar(home.calendar_file).session_open_at(clock.now())
    except ConfigError:
        return False


def run(args: argparse.Namespace) -> int:
    home = Home.resolve()
    users = list_users(home)
    probes = supervisor.probe_all(home, users)
    target = supervisor.generated_path(home)
    current = target.read_text(encoding="utf-8") if target.exists() else None
    # Timings not given keep the ones the current file was written with (or the defaults).
    base = supervisor.timings_of(current) or supervisor.Timings()
    timings = supervisor.Timings(
        base.startsecs if args.startsecs is None else args.startsecs,
        base.startretries if args.startretries is None else args.startretries,
        base.stopwaitsecs if args.stopwaitsecs is None else args.stopwaitsecs,
    )
    external = args.external_broker
    if external is None:
        external = bool(supervisor.external_broker_of(current))
    web = supervisor.web_of(current) if args.web is None else args.web
    excluded = supervisor.shared_accounts(home, probes)
    text, warnings = supervisor.render(home, probes, timings, external_broker=external, web=web)
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    for p in probes:
        # A name that cannot be a program was left out above (its warning says so): no program to go FATAL.
        if not p.valid and supervisor.program_name_ok(p.user):
            print(f"warning: {p.user}: {p.error} (its program will go FATAL until fixed)", file=sys.stderr)
    home_conf = home.supervisord_conf if supervisor.home_conf_needed(home) else None
    home_conf_stale = home_conf is not None and (
        not home_conf.exists() or home_conf.read_text(encoding="utf-8") != supervisor.home_conf_text(home))
    programs = [u for u in sorted(users) if supervisor.program_name_ok(u) and u not in excluded]
    if args.check:
        if current != text or home_conf_stale:
            what = "missing" if current is None else "out of date with env/"
            print(f"{target}: {what}; run 'orchestrator.py supervisor-conf'", file=sys.stderr)
            return ExitCode.JOB_FAILED
        # Read back by supervisord's own parser: what it would run is what we meant.
        try:
            problem = supervisor.misread(home, supervisor.parse_installed(home), programs, timings)
        except ValueError as exc:
            problem = f"supervisord refuses it: {exc}"
        if problem:
            print(f"{home.supervisord_conf}: {problem}", file=sys.stderr)
            return ExitCode.CONFIG
        print(f"{target}: up to date ({supervisor.count_text(users, excluded)}), read back by supervisord's parser")
        return ExitCode.OK
    supervisor.ensure_dirs(home, users)
    try:
        problem = supervisor.misread(home, supervisor.parse_generated(home, text), programs, timings)
    except ValueError as exc:
        problem = f"supervisord would refuse the config: {exc}"
    if problem:
        raise ConfigError(f"KITEFLEET_HOME={home.root}: {problem}; nothing written: move the home to a plainer "
                          "path (letters, digits, '/', '_', '-', '.')")
    if home_conf is not None and home_conf_stale:
        atomic_write_text(home_conf, supervisor.home_conf_text(home), mode=0o644)
        print(f"wrote {home_conf}")
    if current == text:
        print(f"{target}: already up to date ({supervisor.count_text(users, excluded)})")
        return ExitCode.OK
    atomic_write_text(target, text, mode=0o600)
    print(f"wrote {target} ({supervisor.count_text(users, excluded)})")
    print(f"apply with: supervisorctl -c {home.supervisord_conf} update")
    if _market_open(home):
        print("warning: the market is open: 'supervisorctl update' restarts every program of group "
              f"{supervisor.GROUP} when its membership changes; apply it after the close", file=sys.stderr)
    return ExitCode.OK
