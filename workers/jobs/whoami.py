"""``whoami``: prove which user and which credentials this process holds, without showing them.

Prints one JSON object on one line: user, mode, env_file, pid, env_keys (the names of every
environment variable this process sees), settings_keys (the keys read from its env file) and
api_key_fingerprint (first 4 characters of the key, a colon, the first 12 hex digits of its SHA-256).
"""

from __future__ import annotations

import argparse
import json
import os

from workers.context import STOP, JobContext

LOG_TO_CONSOLE = False
HANDLES_STOP = True


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--hold", type=float, default=0.0, metavar="SECONDS",
        help="stay alive this many wall seconds after printing (to inspect /proc/<pid>/environ); "
             "SIGTERM ends it early",
    )


def run(ctx: JobContext) -> int:
    print(
        json.dumps(
            {
                "user": ctx.user,
                "mode": ctx.settings.mode,
                "env_file": str(ctx.settings.env_file),
                "pid": os.getpid(),
                "env_keys": sorted(os.environ),
                "settings_keys": sorted(ctx.settings.file_keys),
                "api_key_fingerprint": ctx.settings.fingerprint,
            },
            separators=(",", ":"),
        ),
        flush=True,
    )
    ctx.log.info("whoami: pid %d, key %s", os.getpid(), ctx.settings.fingerprint)
    if ctx.args.hold > 0:
        STOP.wait(ctx.args.hold)
    return 0
