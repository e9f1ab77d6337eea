"""``paper-broker [--port N] [--data-dir DIR] [...]``: run the local paper broker (Kite stand-in)."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from kitefleet.home import PROJECT_ROOT, Home
from kitefleet.launcher import build_child_env


def add_parser(sub: Any) -> None:
    p = sub.add_parser("paper-broker", help="run the local paper broker that speaks the Kite HTTP API")
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--data-dir", default=None, help="default: data/paper under the home")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    home = Home.resolve()
    data_dir = args.data_dir or str(home.paper_dir)
    extra = args.passthrough
    argv = [sys.executable, "-m", "paper_broker", "--port", str(args.port), "--data-dir", data_dir,
            "--home", str(home.root), *extra]
    os.chdir(PROJECT_ROOT)
    # The broker gets the same scrubbed environment as a worker: under supervisord it would
    # otherwise inherit whatever the shell that started supervisord exported.
    os.execve(argv[0], argv, build_child_env(home=home))
