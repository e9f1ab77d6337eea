"""Test-only worker jobs and helpers for the worker tests. Production code never imports this.

Jobs are run in a real worker process through the real entry (``workers.__main__.main``) with
this module registered as an extra job, so exit codes, logging and the fault hook are the real
ones::

    run_job(home, "Som", "place_one", env={...})   # -> CompletedProcess

``place_one`` places one LIMIT BUY order (``--symbol``, ``--price``) and/or one GTT
(``--gtt-symbol``) through workers.intents (send_order_once / send_gtt_once) and prints one JSON
line of results. ``candles`` loads the instruments, touches its ready-file, waits for the
go-file, then reads daily candles of ``--symbols`` through MarketData and prints the API calls
it made. ``hammer`` makes Kite calls as fast as the shared limiter allows for ``--seconds`` wall
seconds, round-robin over ``--kinds``. ``connect`` only builds the client.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from datetime import date, datetime
from pathlib import Path
from typing import Any

from kitefleet.home import Home
from tests.support.homes import PROJECT_ROOT, VENV_PYTHON, child_env, make_home, write_env
from workers.context import JobContext

LOG_TO_CONSOLE = False

_RUNNER = (
    "import sys, workers.__main__ as m; "
    "m.JOBS[sys.argv[1]] = 'tests.support.jobs'; "
    "sys.exit(m.main(sys.argv[1:]))"
)


# --- the job ---------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--symbol", default=None)
    parser.add_argument("--price", type=float, default=None)
    parser.add_argument("--quantity", type=int, default=1)
    parser.add_argument("--gtt-symbol", default=None)
    parser.add_argument("--gtt-trigger", type=float, default=None)
    parser.add_argument("--gtt-last-price", type=float, default=None)
    parser.add_argument("--symbols", default="")
    parser.add_argument("--go-file", default=None)
    parser.add_argument("--ready-file", default=None)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--kinds", default="quote,historical,other")


def run(ctx: JobContext) -> int:
    if ctx.job == "place_one":
        return _place_one(ctx)
    if ctx.job == "candles":
        return _candles(ctx)
    if ctx.job == "hammer":
        return _hammer(ctx)
    if ctx.job == "connect":
        from workers.kite_client import get_kite

        get_kite(ctx)
        print(json.dumps({"connected": True}), flush=True)
        return 0
    raise SystemExit(f"unknown test job {ctx.job}")


def _place_one(ctx: JobContext) -> int:
    from kitefleet import clock
    from workers.intents import intent_log_for, make_tag, send_gtt_once, send_order_once
    from workers.kite_client import get_kite

    kite = get_kite(ctx)
    intents = intent_log_for(ctx)
    report = intents.reconcile(kite)  # on every start
    out: dict[str, Any] = {"reconciled": report.found, "resendable": report.resendable}
    today = clock.today()
    args = ctx.args
    if args.symbol:
        tag = make_tag(ctx.user, ctx.job, today, args.symbol, "entry")
        params = {"variety": "regular", "exchange": "NSE", "tradingsymbol": args.symbol,
                  "transaction_type": "BUY", "quantity": args.quantity, "product": "CNC",
                  "order_type": "LIMIT", "price": args.price}
        result = send_order_once(kite, intents, tag, params, purpose="entry", job=ctx.job)
        out["order"] = {"tag": tag, "id": result.broker_id, "sent_now": result.sent_now}
    if args.gtt_symbol:
        tag = make_tag(ctx.user, ctx.job, today, args.gtt_symbol, "stop")
        trigger = args.gtt_trigger
        result = send_gtt_once(
            kite, intents, tag, purpose="stop", trigger_type="single", tradingsymbol=args.gtt_symbol,
            exchange="NSE", trigger_values=[trigger], last_price=args.gtt_last_price,
            orders=[{"exchange": "NSE", "tradingsymbol": args.gtt_symbol, "transaction_type": "BUY",
                     "quantity": args.quantity, "order_type": "LIMIT", "product": "CNC", "price": trigger}],
            job=ctx.job)
        out["gtt"] = {"tag": tag, "id": result.broker_id, "sent_now": result.sent_now}
    print(json.dumps(out), flush=True)
    return 0


def _candles(ctx: JobContext) -> int:
    from kitefleet import clock
    from workers.marketdata import market_data_for

    md = market_data_for(ctx)
    md.instruments()
    if ctx.args.ready_file:
        Path(ctx.args.ready_file).touch()
    if ctx.args.go_file:
        deadline = time.monotonic() + 60
        while not Path(ctx.args.go_file).exists():
            if time.monotonic() > deadline:
                raise SystemExit("go file never appeared")
            time.sleep(0.005)
    today = clock.today()
    counts = {}
    for symbol in [s for s in ctx.args.symbols.split(",") if s]:
        counts[symbol] = len(md.daily_candles(symbol, date(today.year - 1, 1, 1), today))
    print(json.dumps({"api_calls": md.api_calls, "candles": counts}), flush=True)
    return 0


def _hammer(ctx: JobContext) -> int:
    from workers.kite_client import get_kite

    kite = get_kite(ctx)
    token = int(next(iter(kite.ltp("NSE:INFY").values()))["instrument_token"])
    deadline = time.monotonic() + ctx.args.seconds
    done = {"quote": 0, "historical": 0, "other": 0}
    kinds = ctx.args.kinds.split(",")
    i = 0
    while time.monotonic() < deadline:
        kind = kinds[i % len(kinds)]
        i += 1
        if kind == "quote":
            kite.ltp("NSE:INFY")
        elif kind == "historical":
            kite.historical_data(token, "2026-01-01", "2026-02-01", "day")
        else:
            kite.margins()
        done[kind] += 1
    print(json.dumps({"done": done, "waited": kite.limiter.waited}), flush=True)
    return 0


# --- helpers for the tests -------------------------------------------------------------------
def run_job(home: Home, user: str, job: str, *args: str, env: dict[str, str] | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
    full_env = child_env(home, **(env or {}))
    full_env["PYTHONPATH"] = str(PROJECT_ROOT)
    return subprocess.run([str(VENV_PYTHON), "-c", _RUNNER, job, "--user", user, *args],
                          cwd=PROJECT_ROOT, env=full_env, capture_output=True, text=True, timeout=timeout)


def start_job(home: Home, user: str, job: str, *args: str,
              env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    full_env = child_env(home, **(env or {}))
    full_env["PYTHONPATH"] = str(PROJECT_ROOT)
    return subprocess.Popen([str(VENV_PYTHON), "-c", _RUNNER, job, "--user", user, *args],
                            cwd=PROJECT_ROOT, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def last_json(text: str) -> dict[str, Any]:
    for line in reversed(text.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)  # type: ignore[no-any-return]
    raise AssertionError(f"no JSON line in output:\n{text}")


def paper_home(root: Path, users: tuple[str, ...] = ("Som",)) -> Home:
    home = make_home(root)
    for user in users:
        write_env(home, user)
    return home


def point_users_at(home: Home, url: str, users: tuple[str, ...] = ("Som",)) -> None:
    """Rewrite the users' env files with the broker's address (same keys: accounts still match)."""
    for user in users:
        write_env(home, user, KITE_ROOT=url)


#: A Wednesday morning with the market open (2026-03-04 is a trading day in the XNSE calendar).
MARKET_OPEN = datetime.fromisoformat("2026-03-04T10:00:00+05:30")
