"""``python -m paper_broker [--port 8765] [--data-dir DIR] ...``: run the paper broker until SIGTERM.

Prints one line ``paper broker listening on http://HOST:PORT`` to stdout when ready and writes
``<data-dir>/broker.json`` ({pid, port, url, host}) atomically. ``--port 0`` picks a free port.
SIGTERM or SIGINT stops it cleanly (exit 0). ``orchestrator.py paper-broker`` runs this module.

The process runs with umask 077 and the data dir is made private (0700, files 0600: see
``paper_broker.app``), because the database holds every paper account's secret and token.

Remote access: ``--host`` must be loopback (127.0.0.1, ::1, localhost) unless ``--allow-remote``
is given; then the environment variable PAPER_ADMIN_TOKEN (at least 16 characters; never on the
command line, which every local user can read) is required and every ``/paper/`` admin route
needs it in the ``X-Paper-Admin-Token`` header. The log rotates at ``--log-max-bytes``.

Exit codes (kitefleet.exitcodes): 0 clean stop; 2 usage (argparse: e.g. ``--port`` outside
0..65535, or ``--symbols`` naming a symbol outside the universe; a non-loopback ``--host``
without ``--allow-remote``); 4 configuration: the port is in use or not allowed, the data dir
cannot be made private, a bad env file, calendar or ``TRADER_CLOCK`` value, ``--allow-remote``
without a usable PAPER_ADMIN_TOKEN. Each failure
is one line on stderr (``paper broker: ...``) and in the log, never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import logging.handlers
import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from kitefleet.errors import KitefleetError
from kitefleet.exitcodes import ExitCode
from kitefleet.home import Home

MAX_PORT = 65535
ADMIN_ENV_VAR = "PAPER_ADMIN_TOKEN"
MIN_ADMIN_TOKEN = 16


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid port {text!r}: use a whole number from 0 to {MAX_PORT}") from None
    if not 0 <= port <= MAX_PORT:
        raise argparse.ArgumentTypeError(f"port {port} is out of range: use 0 to {MAX_PORT} (0 picks a free port)")
    return port


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="paper_broker",
                                     description="Local paper broker speaking Kite Connect v3.")
    parser.add_argument("--port", type=_port, default=8765,
                        help="TCP port 0-65535 (0: pick a free one); default 8765")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind; default 127.0.0.1 (others need --allow-remote)")
    parser.add_argument("--allow-remote", action="store_true",
                        help=f"allow a non-loopback --host; needs {ADMIN_ENV_VAR} in the environment")
    parser.add_argument("--data-dir", type=Path, default=None, help="default: <home>/data/paper")
    parser.add_argument("--home", type=Path, default=None,
                        help="kitefleet home (default: KITEFLEET_HOME or the project)")
    parser.add_argument("--scenario", type=Path, default=None, help="scenario file of scripted price moves")
    parser.add_argument("--no-rate-limits", action="store_true", help="turn Kite's rate limits off")
    parser.add_argument("--symbols", default=None, help="comma-separated universe subset, e.g. INFY,TCS")
    parser.add_argument("--seed", type=int, default=1, help="market simulation seed; default 1")
    parser.add_argument("--rms-reject", choices=["row", "error"], default="row",
                        help="an order refused for funds or holdings: its REJECTED row's id (row, default) "
                             "or HTTP 400 MarginException/HoldingException with the row kept (error)")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    parser.add_argument("--log-max-bytes", type=_log_size, default=None,
                        help="rotate paper_broker.log at this size (default 10 MiB; 3 old files kept)")
    return parser


def _log_size(text: str) -> int:
    try:
        size = int(text)
    except ValueError:
        size = 0
    if size < 1024:
        raise argparse.ArgumentTypeError(f"invalid log size {text!r}: use a whole number of bytes, at least 1024")
    return size


def _setup_logging(data_dir: Path, level: str, max_bytes: int | None) -> None:
    from paper_broker.app import LOG_BACKUPS, LOG_FILE, LOG_MAX_BYTES, private_file

    private_file(data_dir / LOG_FILE, create=True)
    # Rotation renames; the new file is created under the process's umask 077, so it stays 0600.
    handler = logging.handlers.RotatingFileHandler(data_dir / LOG_FILE, encoding="utf-8",
                                                   maxBytes=max_bytes or LOG_MAX_BYTES, backupCount=LOG_BACKUPS)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Everything this process creates (database, WAL, log, broker.json) is for its owner only.
    old_umask = os.umask(0o077)
    try:
        return _run(args)
    finally:
        os.umask(old_umask)  # matters only when main() runs inside another process (tests)


def _admin_token(args: argparse.Namespace) -> tuple[str | None, str | None, int]:
    """(token, refusal, exit code): the admin token the host needs, or one line saying why not."""
    from paper_broker.app import is_loopback

    token = os.environ.get(ADMIN_ENV_VAR) or None
    if not is_loopback(args.host) and not args.allow_remote:
        return None, (f"--host {args.host} is not loopback; the admin routes would be open to the network. "
                      f"Use 127.0.0.1, or --allow-remote with {ADMIN_ENV_VAR} set"), int(ExitCode.USAGE)
    if args.allow_remote and (token is None or len(token.strip()) < MIN_ADMIN_TOKEN):
        return None, (f"--allow-remote needs {ADMIN_ENV_VAR} in the environment, at least "
                      f"{MIN_ADMIN_TOKEN} characters"), int(ExitCode.CONFIG)
    return (token.strip() if token else None), None, int(ExitCode.OK)


def _run(args: argparse.Namespace) -> int:
    from paper_broker.app import BrokerConfig, PaperBroker, secure_data_dir

    admin_token, refusal, code = _admin_token(args)
    if refusal is not None:
        print(f"paper broker: {refusal}", file=sys.stderr)
        return code
    try:
        home = Home(args.home.expanduser().resolve()) if args.home else Home.resolve()
        data_dir = (args.data_dir.expanduser().resolve() if args.data_dir else home.paper_dir)
        secure_data_dir(data_dir)
        _setup_logging(data_dir, args.log_level, args.log_max_bytes)
    except (KitefleetError, OSError) as exc:
        print(f"paper broker: {exc}", file=sys.stderr)
        return int(exc.exit_code if isinstance(exc, KitefleetError) else ExitCode.CONFIG)
    symbols = [s.strip() for s in args.symbols.split(",") if s.strip()] if args.symbols else None
    config = BrokerConfig(home=home, data_dir=data_dir, host=args.host, port=args.port,
                          scenario=args.scenario, symbols=symbols, seed=args.seed,
                          rate_limits=not args.no_rate_limits, admin_token=admin_token,
                          rms_reject=args.rms_reject)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        broker = PaperBroker(config)
    except KitefleetError as exc:
        logging.getLogger("paper_broker").error("cannot start: %s", exc)
        print(f"paper broker: {exc}", file=sys.stderr)
        return int(exc.exit_code)
    except ValueError as exc:  # e.g. --symbols naming a symbol outside the universe
        logging.getLogger("paper_broker").error("cannot start: %s", exc)
        print(f"paper broker: {exc}", file=sys.stderr)
        return int(ExitCode.USAGE)
    except OSError as exc:  # e.g. an unreadable calendar export (bind errors are BindError above)
        logging.getLogger("paper_broker").error("cannot start: %s", exc)
        print(f"paper broker: cannot start: {exc}", file=sys.stderr)
        return int(ExitCode.CONFIG)
    broker.start()
    print(f"paper broker listening on {broker.url}", flush=True)
    while not stop.wait(0.25):
        pass
    broker.stop()
    return int(ExitCode.OK)


if __name__ == "__main__":
    sys.exit(main())
