"""Benchmark of hourly_candle_watchdog's reaction and API cost, against the real paper broker.

    .venv/bin/python bench/bench_watchdog.py [--sizes 1,10,50] [--speed 20] [--poll 30]

For each size N: a throw-away home with one user, the real paper broker (a subprocess, its own
rate limits off; the worker's shared client-side limiter is on, as in production) with a scenario
pinning N NIFTY 50 symbols on 2026-03-04, and the user holding one share of each (bought at 09:20).
Every symbol's hourly lows are pinned (09:15 hour: 0.99 p, 10:15 hour: 0.985 p); the positions
are entered at 09:20, so the hourly rule reads no candle before the 10:15 one, and from 11:15 the
exit level is 0.985 p. INFY's 11:40 minute closes at 0.98 p (the LTP shows it from 11:41:00);
every other symbol stays flat above its level. The watchdog starts as a real worker process at
09:21 at ``--speed`` (the session's first hourly candle has not completed: no candle request is
needed); the clock then jumps to 11:16 (the hourly refresh of N symbols, spread over one poll
interval), and once the levels are in the state, to 11:38.

Printed: one table, a row per N, then one line per N with the API calls.

* reaction: from 11:41:00 (the end of the crossing minute, the first instant the LTP can show the
  crossing) to the exit order in the broker's book, in simulated seconds and in wall seconds
  (from the broker's request audit: the order request's simulated time, and the wall time it was
  answered, against the wall instant the file clock reached 11:41:00). It splits at the LTP
  request that saw the crossing (the job's last LTP request before its exit order):
  ``poll wait`` = that request - 11:41:00 (between 0 and one poll interval, where the grid happens
  to fall) and ``processing`` = that request to the order in the book (account re-read, intent,
  place_order). The poll interval is ``--poll``, or, when ``--poll``/``--speed`` is under Kite's
  one quote request per wall second, that second (plus the limiter's margin) in simulated seconds.
  The worst case is one interval plus the processing. The job's own ``decided_at`` is not used:
  it is the start of the poll, before the client limiter lets the LTP request go, so at fast
  clocks it can precede the crossing it reacted to;
* API calls per poll in the steady window 11:38-11:41 (broker audit of this user's key):
  LTP calls per poll (the job's own counters) and all calls per poll (positions refreshes every
  5 simulated minutes included);
* start-up: wall seconds from the worker's launch to its first LTP request covering the N
  positions (goal: under 5 s for 50), and the calls it made before it; then the wall seconds
  the 11:15 hourly refresh of N symbols took (Kite allows 3 historical requests a second);
* goal: reaction (and worst case) within one poll interval plus a wall second, and one LTP call
  per poll whatever N.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import date, datetime
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent
if str(PROJECT_ROOT) not in sys.path:
    sys.path.insert(0, str(PROJECT_ROOT))

from kitefleet.clock import IST, write_clock_file  # noqa: E402
from kitefleet.ticks import round_to_tick  # noqa: E402
from workers.ratelimit import PER_SECOND, QUOTE, WINDOW_MARGIN_S  # noqa: E402

DAY = date(2026, 3, 4)
USER = "Bench"
#: issue 20: start-up with 50 positions under 5 wall seconds
STARTUP_GOAL_WALL_S = 5.0
CROSSER = "INFY"


def at(hhmm: str) -> datetime:
    return datetime.combine(DAY, datetime.strptime(hhmm, "%H:%M").time(), IST)


def _symbols(n: int) -> list[tuple[str, float, float]]:
    from kitefleet.sim.universe import nifty50_universe

    pool = [i for i in nifty50_universe() if i.tradable and i.segment == "NSE" and i.tradingsymbol != CROSSER]
    chosen = [next(i for i in nifty50_universe() if i.tradingsymbol == CROSSER), *pool[: n - 1]]
    return [(i.tradingsymbol, i.base_price, i.tick_size) for i in chosen]


def _scenario(symbols: list[tuple[str, float, float]]) -> dict[str, Any]:
    paths = []
    for sym, p, tick in symbols:
        def px(f: float, p: float = p, tick: float = tick) -> float:
            return round_to_tick(p * f, tick, "nearest")
        waypoints = [["09:15", px(1)], ["09:45", px(0.99)], ["10:10", px(1)], ["10:45", px(0.985)], ["11:10", px(1)]]
        if sym == CROSSER:
            waypoints += [["11:30", px(1)], ["11:40", px(0.98)], ["12:30", px(0.99)]]
        else:
            waypoints += [["12:30", px(1)]]
        paths.append({"symbol": sym, "date": DAY.isoformat(), "waypoints": waypoints})
    return {"paths": paths}


def _wait(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.02)


def effective_interval(poll: float, speed: float) -> float:
    """Simulated seconds between polls: the poll setting, unless the client limiter's quote window
    is longer at this clock speed (Kite's one quote request per market second, i.e. per wall
    second divided by a speed above 1, plus the limiter's margin in wall seconds)."""
    return max(float(poll), (1.0 / PER_SECOND[QUOTE] / max(1.0, speed) + WINDOW_MARGIN_S) * speed)


def split_reaction(audit: list[dict[str, Any]], order_id: str, cross: datetime,
                   cross_wall: float) -> dict[str, Any]:
    """Split the reaction to a crossing visible from ``cross`` (wall instant ``cross_wall``) at the
    LTP request that saw it: the last LTP request of the job before the exit order it placed.

    The watchdog's own ``decided_at`` is the start of its poll, taken before the LTP request; when
    the client-side limiter holds that request back (fast clocks), the request, and so the price it
    sees, comes up to a wall second later, so ``decided_at`` can precede the crossing it reacted to.
    The audit's simulated ``time`` is when the broker received the request (the instant its LTP
    describes); ``wall_time`` is when it answered (for the order: when it was in the book).
    """
    rows = sorted(audit, key=lambda r: (r["time"], r["wall_time"]))
    order = next((r for r in rows if r.get("order_id") == order_id and r["method"] == "POST"), None)
    if order is None:
        raise SystemExit(f"order {order_id} is not in the broker's audit")
    seen = [r for r in rows if r["path"] == "/quote/ltp" and r["time"] <= order["time"]]
    if not seen:
        raise SystemExit(f"no LTP request before order {order_id} in the audit")
    saw = seen[-1]
    saw_at, placed = datetime.fromisoformat(saw["time"]), datetime.fromisoformat(order["time"])
    if saw_at < cross:
        raise SystemExit(f"the exit followed an LTP requested at {saw_at:%H:%M:%S}, before the crossing "
                         f"became visible at {cross:%H:%M:%S}: the scenario crossed early")
    return {
        "order_at": placed.strftime("%H:%M:%S"),
        "seen_at": saw_at.strftime("%H:%M:%S"),
        "reaction_sim_s": round((placed - cross).total_seconds(), 1),
        "poll_wait_sim_s": round((saw_at - cross).total_seconds(), 1),
        "processing_sim_s": round((placed - saw_at).total_seconds(), 1),
        "reaction_wall_s": round(order["wall_time"] - cross_wall, 2),
        "poll_wait_wall_s": round(saw["wall_time"] - cross_wall, 2),
        "processing_wall_s": round(order["wall_time"] - saw["wall_time"], 2),
    }


def run_size(n: int, speed: float, poll: int, workdir: Path) -> dict[str, Any]:
    from kitefleet.state import StateStore
    from tests.support.broker import clock_file, start_broker
    from tests.support.homes import VENV_PYTHON, child_env, make_home, write_env

    symbols = _symbols(n)
    home = make_home(workdir / f"home{n}")
    write_env(home, USER)
    scenario = workdir / f"scenario{n}.json"
    scenario.write_text(json.dumps(_scenario(symbols)), encoding="utf-8")
    clock_path = workdir / f"clock{n}"
    value = clock_file(clock_path, at("09:20"))
    broker = start_broker(home, clock=value, scenario=scenario, symbols=[s for s, _, _ in symbols])
    proc: subprocess.Popen[str] | None = None
    try:
        write_env(home, USER, KITE_ROOT=broker.url, WATCHDOG_POLL_SECONDS=poll)
        kite = broker.kite(USER)
        quotes = kite.ltp(*[f"NSE:{s}" for s, _, _ in symbols])
        for sym, _p, tick in symbols:
            ltp = quotes[f"NSE:{sym}"]["last_price"]
            kite.place_order("regular", exchange="NSE", tradingsymbol=sym, transaction_type="BUY", quantity=1,
                             product="CNC", order_type="LIMIT", price=round_to_tick(ltp * 1.01, tick, "ceil"))
        # The bot's shares (MANAGE_SCOPE=own watches only what the ledger owns), as an entry leaves them.
        from workers.ledger import ADOPTED, add_lot, ledger_of, lot

        with StateStore(home, USER, "paper").transaction() as state:
            for sym, _p, _tick in symbols:
                add_lot(ledger_of(state), sym, lot(1, quotes[f"NSE:{sym}"]["last_price"], at("09:20").date(), ADOPTED))
        write_clock_file(clock_path, at("09:21"), speed)
        started_wall = time.time()
        env = child_env(home, TRADER_CLOCK=value, PYTHONPATH=str(PROJECT_ROOT))
        proc = subprocess.Popen([str(VENV_PYTHON), "-m", "workers", "hourly_candle_watchdog", "--user", USER,
                                 "--json"], cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        store = StateStore(home, USER, "paper")

        def first_poll() -> dict[str, Any] | None:
            return next((r for r in broker.audit(since=at("09:21"), api_key=kite.api_key)
                         if r["path"] == "/quote/ltp"), None)

        polled = _wait(first_poll, 120, "the first poll")
        startup_wall = polled["wall_time"] - started_wall
        startup_audit = Counter(r["path"].split("/")[1] if not r["path"].startswith("/instruments/historical")
                                else "historical" for r in broker.audit(since=at("09:21"), api_key=kite.api_key)
                                if r["wall_time"] <= polled["wall_time"])
        refresh_wall = time.time()
        write_clock_file(clock_path, at("11:16"), speed, anchor=refresh_wall)

        def levels_ready() -> bool:
            day = ((store.read().get("watchdog") or {}).get(DAY.isoformat()) or {}).get("symbols") or {}
            return sum(1 for s in day.values() if (s.get("hourly") or {}).get("level")) == n

        _wait(levels_ready, 180, "levels of every symbol")
        levels_wall = time.time() - refresh_wall

        jump_wall = time.time()
        jump_to = at("11:38")
        write_clock_file(clock_path, jump_to, speed, anchor=jump_wall)
        cross = at("11:41")
        cross_wall = jump_wall + (cross - jump_to).total_seconds() / speed

        def exit_sent() -> bool:
            # Watched through the state file, not the order book: the book is read with the same API
            # key, and those reads would count as the job's calls in the audit.
            day = ((store.read().get("watchdog") or {}).get(DAY.isoformat()) or {}).get("symbols") or {}
            return any(e.get("order_id") for e in (day.get(CROSSER) or {}).get("exits") or [])

        _wait(exit_sent, 120, "the exit order")
        day = ((store.read().get("watchdog") or {}).get(DAY.isoformat()) or {}).get("symbols") or {}
        exit_rec = day[CROSSER]["exits"][0]
        audit = broker.audit(since=jump_to, api_key=kite.api_key)
        split = split_reaction(audit, str(exit_rec["order_id"]), cross, cross_wall)
        window = [r for r in audit if r["time"] < cross.isoformat()]
        ltp_calls = sum(1 for r in window if r["path"] == "/quote/ltp")
        proc.send_signal(signal.SIGTERM)
        out, _err = proc.communicate(timeout=30)
        summary = json.loads([line for line in out.splitlines() if line.startswith("{")][-1])
        interval = effective_interval(poll, speed)
        return {
            "positions": n,
            **split,
            # The job's own stamp: the start of the poll that decided (before its LTP request, which
            # the client-side limiter may hold back), so it can precede the crossing; kept as a clue.
            "decided_at": exit_rec["decided_at"][11:19],
            "interval_sim_s": round(interval, 1),
            "worst_case_sim_s": round(interval + max(0.0, split["processing_sim_s"]), 1),
            "goal_sim_s": round(interval + speed, 1),  # one poll interval plus one wall second
            "window_polls": ltp_calls,
            # the job's own counters over its whole run: LTP requests / polls
            "ltp_calls_per_poll": round(summary["calls"].get("market.quote.ltp", 0) / max(1, summary["polls"]), 2),
            "calls_per_poll": round(len(window) / max(1, ltp_calls), 2),
            "window_calls": dict(Counter(r["path"] for r in window)),
            "startup_wall_s": round(startup_wall, 2),
            "startup_calls": dict(startup_audit),
            "levels_wall_s": round(levels_wall, 1),
            "job_polls": summary["polls"],
            "job_calls": summary["calls"],
            "rate_limited": summary["rate_limited"],
        }
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(5)
        broker.stop()


COLUMNS = (  # (header, key, format)
    ("positions", "positions", "d"), ("exit at", "order_at", "s"), ("reaction sim s", "reaction_sim_s", ".1f"),
    ("wall s", "reaction_wall_s", ".2f"), ("poll wait sim s", "poll_wait_sim_s", ".1f"),
    ("processing sim s", "processing_sim_s", ".1f"), ("processing wall s", "processing_wall_s", ".2f"),
    ("interval sim s", "interval_sim_s", ".1f"), ("worst sim s", "worst_case_sim_s", ".1f"),
    ("goal sim s", "goal_sim_s", ".1f"), ("polls 11:38-41", "window_polls", "d"),
    ("LTP calls/poll", "ltp_calls_per_poll", ".2f"), ("calls/poll", "calls_per_poll", ".2f"),
    ("start-up wall s", "startup_wall_s", ".2f"), ("11:15 levels wall s", "levels_wall_s", ".1f"),
    ("verdict", "verdict", "s"),
)


def verdict(res: dict[str, Any]) -> str:
    ok = res["worst_case_sim_s"] <= res["goal_sim_s"] and res["reaction_sim_s"] <= res["goal_sim_s"]
    ok = ok and res["startup_wall_s"] < STARTUP_GOAL_WALL_S
    return "ok" if ok and res["ltp_calls_per_poll"] == 1 else "MISSED"


def table(results: list[dict[str, Any]]) -> list[str]:
    widths = [max(len(h), *(len(format(r[k], f)) for r in results)) for h, k, f in COLUMNS]
    lines = ["  ".join(h.rjust(w) for (h, _, _), w in zip(COLUMNS, widths, strict=True))]
    for r in results:
        lines.append("  ".join(format(r[k], f).rjust(w) for (_, k, f), w in zip(COLUMNS, widths, strict=True)))
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,10,50")
    parser.add_argument("--speed", type=float, default=20.0,
                        help="simulated seconds per wall second (keep poll/speed >= 1: Kite's 1 quote/s)")
    parser.add_argument("--poll", type=int, default=30, help="WATCHDOG_POLL_SECONDS")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="bench_watchdog_") as tmp:
        for n in [int(x) for x in args.sizes.split(",") if x]:
            res = run_size(n, args.speed, args.poll, Path(tmp))
            res["verdict"] = verdict(res)
            results.append(res)
            print(f"N={n}: {res['reaction_sim_s']} sim s, {res['reaction_wall_s']} wall s", file=sys.stderr, flush=True)
    limited = any(r["rate_limited"] for r in results)
    print(f"hourly_candle_watchdog, {CROSSER} crossing visible from 11:41:00 (its 11:40 minute's close); "
          f"WATCHDOG_POLL_SECONDS={args.poll}, clock speed {args.speed:g}"
          + (" (rate-limited: polls as fast as Kite's 1 quote/s allows)" if limited else ""))
    for line in table(results):
        print(line)
    print("reaction = poll wait (11:41:00 to the LTP request that saw the crossing) + processing (that "
          "request to the exit order in the book); worst = interval + processing; goal = interval + 1 wall s")
    for r in results:
        print(f"N={r['positions']}: LTP seen at {r['seen_at']} (poll started {r['decided_at']}), "
              f"calls 11:38-11:41 {r['window_calls']}, start-up calls {r['startup_calls']}")
    if args.json:
        print(json.dumps(results, default=str))


if __name__ == "__main__":
    main()
