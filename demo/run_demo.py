"""``python -m demo [--home DIR] [--day YYYY-MM-DD] [--speed X] [--entry-speed X] [--until HH:MM] [--json FILE]``

Two paper users, Som and Sai, through an accelerated trading day under supervisord, then a
per-user report and the paper broker's isolation audit. The sequence:

1. the demo home (demo.home): refused if anything in it is live; else wiped and rebuilt;
2. the paper broker on a free port (a scenario pins INFY), a notification sink on 127.0.0.1
   (demo.sink, standing in for Som's service: Som's env file gets ``NOTIFY_URLS=json://...``,
   Sai's none), the users' env files, ``orchestrator.py users`` and ``login --all``;
3. the day before (P), 10:00: both users enter yesterday's picks at once (``run-all
   place_orders_daily --from``), so they hold positions overnight;
4. ``supervisor-conf``, then supervisord from P 15:35: the schedulers catch up the day's stop
   update (GTT stops) and run the evening scan (pattern_daily, 16:00);
5. the replay day (D): the morning ``login --all`` at 08:45, then the schedulers run the day
   by the clock: update_cnc_stoploss 09:00, the watchdog from the open, place_orders_daily
   09:20 (from the evening's scan), INFY's fall near 11:45 (watchdog exits), the 14:00 stop
   update, the close, pattern_daily 16:00;
6. the notify jobs deliver what is left in the outboxes; supervisord is stopped (it stops the
   schedulers, which stop their jobs), the report is printed with what Som's sink received, the
   broker and the sink are stopped, and the demo checks that no process naming its home is left.
   Ctrl-C or SIGTERM at any point stops everything the same way and exits 130 or 143.

Exit code: 0 when every check passed, 1 when one failed (or the run broke), 4 when the home was
refused, 130/143 when interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from types import FrameType

import requests

from demo import consistency as dconsistency
from demo import home as dhome
from demo import report as dreport
from demo.procs import Procs, kill_leftovers, leftovers
from demo.replay import Replay, idle, job_done
from demo.sink import Sink
from fleet import supervisor
from kitefleet import outbox
from kitefleet.clock import Clock
from kitefleet.home import Home

SEED = 7
SUPERVISOR_TIMINGS = ("--startsecs", "1", "--startretries", "3", "--stopwaitsecs", "10")
#: around 09:20: slow enough that the scheduled run plans and sends within its minute, as at real
#: time (its start costs a second or two of wall time), so the backtest of the same days
#: (demo.consistency) prices the same entries
ENTRY_SPEED = 10.0
#: the entry window run at --entry-speed: the scheduled 09:20 run's start, plan and sends
ENTRY_WINDOW = ("09:19:30", "09:22")
#: who gets a notification service (the demo's sink); the others have no NOTIFY_URLS
NOTIFIED = ("Som",)
SINK_PATH = "som-demo-hook"


class Interrupted(Exception):
    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise(signum: int, frame: FrameType | None) -> None:
    raise Interrupted(signum)


def _note(signum: int, frame: FrameType | None) -> None:
    print(f"\n{signal.Signals(signum).name}: already stopping everything; please wait", flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m demo",
                                description="Two paper users' accelerated trading day under supervisord.")
    p.add_argument("--home", type=Path, default=dhome.DEFAULT_ROOT,
                   help=f"the demo's own home, wiped at each run (default {dhome.DEFAULT_ROOT})")
    p.add_argument("--day", type=date.fromisoformat, default=None,
                   help="the replay day (default: the last NSE session completed before today)")
    p.add_argument("--speed", type=float, default=300.0,
                   help="simulated seconds per wall second outside the entry window (default 300)")
    p.add_argument("--entry-speed", type=float, default=ENTRY_SPEED,
                   help=f"speed from {ENTRY_WINDOW[0]} to {ENTRY_WINDOW[1]}, around the entries (default "
                        f"{ENTRY_SPEED:g}; at 10 or less the 09:20 run sends within its minute, as at real time)")
    p.add_argument("--until", default=None, metavar="HH:MM",
                   help="end the replay day at this time (default: after the post-close scan)")
    p.add_argument("--json", type=Path, default=None, help="also write the report as JSON to this file")
    return p.parse_args(argv)


def say(text: str = "") -> None:
    print(text, flush=True)


def show(text: str, indent: str = "    ") -> None:
    for line in text.rstrip().splitlines():
        say(indent + line)


@dataclass
class Demo:
    home: Home
    args: argparse.Namespace
    wall0: float
    procs: Procs | None = None
    url: str | None = None
    sink: Sink | None = None

    def orchestrator(self, *args: str) -> str:
        assert self.procs is not None
        result = self.procs.orchestrator(*args)
        show(result.stdout)
        if result.returncode != 0:
            show(result.stderr)
            raise RuntimeError(f"orchestrator.py {' '.join(args)} failed with exit code {result.returncode}")
        return result.stdout

    def run(self) -> int:
        home, args = self.home, self.args
        real_today = Clock().now().date()  # the real date picks the replay day; the replay has its own clock
        calendar = dhome.export_nse_calendar(home, real_today)
        previous, day = dhome.pick_days(calendar, real_today, args.day)
        users = tuple(u.name for u in dhome.USERS)
        replay = Replay(home, home.root / "clock", users, wall_start=self.wall0)
        replay.set(dhome.at(previous, "09:40"), 1.0)
        self.procs = procs = Procs(home, replay.value)
        fast = args.speed
        say(f"  replay: {previous:%a %d %b %Y} (the day before), then {day:%a %d %b %Y}; clock file {replay.path}")

        say("\n== paper broker and users")
        scenario = dhome.write_scenario(home, previous, day)
        _, self.url = procs.start_broker(scenario, SEED)
        say(f"  paper broker at {self.url} (scenario {scenario.relative_to(home.root)} pins {dhome.PINNED})")
        self.sink = sink = Sink(SINK_PATH)
        # the URL is a secret like any NOTIFY_URLS entry: only the sink's address is printed
        say(f"  notification sink (a JSON webhook) on 127.0.0.1:{sink.port} for {', '.join(NOTIFIED)}")
        dhome.write_users(home, self.url, secrets={u: {"NOTIFY_URLS": sink.url} for u in NOTIFIED})
        reload = requests.post(f"{self.url}/paper/reload-accounts", timeout=10).json()["data"]
        say(f"  env/Som.env (with NOTIFY_URLS), env/Sai.env (without) written; "
            f"paper accounts: {reload['active']} active")
        self.orchestrator("users")
        self.orchestrator("login", "--all")

        say(f"\n== {previous:%a %d %b} 10:00: yesterday's entries ({', '.join(dhome.YESTERDAY_PICKS)}), both users "
            "at once: run-all place_orders_daily --from demo/yesterday.json")
        replay.set(dhome.at(previous, "10:00"), 1.0)
        self.orchestrator("run-all", "place_orders_daily", "--", "--from", str(dhome.write_yesterday_picks(home)))
        replay.speed(args.entry_speed)
        self._wait_for_holdings(users, dhome.YESTERDAY_PICKS, replay)
        self._buy_by_hand(replay)

        say("\n== supervisord")
        replay.set(dhome.at(previous, "15:35"), 60.0)
        # The demo runs its own broker (free port, scenario): supervisord must not start another.
        self.orchestrator("supervisor-conf", "--external-broker", *SUPERVISOR_TIMINGS)
        procs.start_supervisord()
        pids = self._wait_running(users)
        say(f"  supervisord ({supervisor.socket_path(home)}) started "
            + ", ".join(f"trader:{u} (pid {pids[u]})" for u in users))

        say(f"\n== {previous:%a %d %b} evening: the stop update caught up, then the evening scan")
        replay.run_until(dhome.at(previous, "16:00"), speed=fast,
                         until=lambda b: job_done(b, "pattern_daily", previous) and idle(b), max_wall=120,
                         what="the evening scan")

        say(f"\n== {day:%a %d %b}: the morning login, then the session")
        replay.set(dhome.at(day, "08:45"), 1.0)
        self.orchestrator("login", "--all")
        replay.set(dhome.at(day, "08:55"), fast)
        end = dhome.at(day, args.until) if args.until else None
        segments = [(dhome.at(day, ENTRY_WINDOW[0]), fast),
                    (dhome.at(day, ENTRY_WINDOW[1]), min(fast, args.entry_speed)),
                    (dhome.at(day, "15:30"), fast)]
        for target, speed in segments:
            if end is not None and target >= end:
                replay.run_until(end, speed=speed, max_wall=300)
                break
            replay.run_until(target, speed=speed, max_wall=300)
        else:
            replay.run_until(dhome.at(day, "16:00"), speed=fast,
                             until=lambda b: job_done(b, "pattern_daily", day) and idle(b), max_wall=120,
                             what="the post-close scan")
        replay.progress(replay.observe(), force=True)
        sim_end = replay.now()
        replay.speed(1.0)
        self._wait_delivered(users, replay)

        say("\n== stopping supervisord (SIGTERM: it stops trader:Som and trader:Sai, which stop their jobs)")
        procs.stop_supervisord()
        replay.observe()
        self._deliver_rest(users)
        specs = {u.name: {"api_key": u.api_key, **u.settings} for u in dhome.USERS}
        data = dreport.collect(home, self.url, specs, replay.runs, previous, day, sim_end,
                               time.monotonic() - self.wall0)
        assert self.sink is not None
        data["notifications"] = dreport.collect_notifications(home, users, NOTIFIED, self.sink.messages(),
                                                              f"127.0.0.1:{self.sink.port}")
        data["checks"] = dreport.checks(data)
        data["checks_passed"] = all(c["ok"] for c in data["checks"])
        data["consistency"] = dconsistency.compare_all(home, SEED, data)
        say()
        say(dreport.render(data))
        say()
        say("\n".join(dconsistency.render(data["consistency"])))
        if args.json:
            args.json.write_text(json.dumps(data, indent=2, default=str), encoding="utf-8")
        return 0 if data["checks_passed"] else 1

    def _buy_by_hand(self, replay: Replay, timeout: float = 30.0) -> None:
        """A person's order through the plain client (not the bot: no tag, no intent, no ledger lot)."""
        from kiteconnect import KiteConnect

        from workers.session_file import read_session

        user, symbol, qty = dhome.HAND_HELD
        spec = next(u for u in dhome.USERS if u.name == user)
        kite = KiteConnect(api_key=spec.api_key, root=self.url)
        kite.set_access_token(str((read_session(self.home, user) or {})["access_token"]))
        ltp = float(kite.ltp(f"NSE:{symbol}")[f"NSE:{symbol}"]["last_price"])
        kite.place_order(variety="regular", exchange="NSE", tradingsymbol=symbol, transaction_type="BUY",
                         quantity=qty, product="CNC", order_type="LIMIT", price=round(ltp * 1.01, 1))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(h["tradingsymbol"] == symbol for h in kite.holdings()):
                say(f"  {user} buys {symbol} x {qty} by hand (a plain client order, not the bot's) "
                    f"by {replay.now():%H:%M}")
                return
            time.sleep(0.2)
        say(f"  warning: {user}'s hand-bought {symbol} did not fill within {timeout:.0f}s")

    def _wait_for_holdings(self, users: tuple[str, ...], symbols: tuple[str, ...], replay: Replay,
                           timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        held: dict[str, set[str]] = {}
        while time.monotonic() < deadline:
            with contextlib.suppress(requests.RequestException, ValueError, KeyError):
                accounts = requests.get(f"{self.url}/paper/accounts", timeout=10).json()["data"]
                held = {a["user_name"]: {h["tradingsymbol"] for h in a.get("holdings") or []} for a in accounts}
                if all(set(symbols) <= held.get(u, set()) for u in users):
                    say(f"  filled by {replay.now():%H:%M}: "
                        + "; ".join(f"{u} holds {', '.join(sorted(held[u]))}" for u in users))
                    return
            time.sleep(0.2)
        say(f"  warning: not every entry of the day before filled within {timeout:.0f}s: {held}")

    def _wait_delivered(self, users: tuple[str, ...], replay: Replay, timeout: float = 30.0) -> None:
        """The schedulers start a notify job when an outbox has undelivered events: let them empty
        the outboxes before supervisord stops them (a later run would deliver the rest anyway)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            beats = replay.observe()
            busy = any("notify" in ((b or {}).get("current_jobs") or {}) for b in beats.values())
            if not busy and all(outbox.undelivered(self.home, u) == 0 for u in users):
                return
            time.sleep(0.2)
        left = {u: outbox.undelivered(self.home, u) for u in users}
        say(f"  warning: notifications not all delivered within {timeout:.0f}s: {left}")

    def _deliver_rest(self, users: tuple[str, ...]) -> None:
        """An event told while supervisord was stopping (a watchdog exit in its last seconds) has no
        scheduler left to deliver it: one notify run, as the next start of the trader would do."""
        for user in users:
            left = outbox.undelivered(self.home, user)
            if left:
                say(f"  {user}: {left} notification(s) told while stopping: orchestrator.py run {user} notify")
                self.orchestrator("run", user, "notify")

    def _wait_running(self, users: tuple[str, ...], timeout: float = 30.0) -> dict[str, int]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            infos = supervisor.process_infos(self.home) or {}
            states = {u: infos.get(supervisor.namespec(u)) or {} for u in users}
            if all(s.get("statename") == "RUNNING" for s in states.values()):
                return {u: int(s["pid"]) for u, s in states.items()}
            time.sleep(0.2)
        raise RuntimeError("trader:Som and trader:Sai did not reach RUNNING; see logs/<User>/scheduler.out.log")



def shut_down(demo: Demo | None, home: Home) -> list[tuple[int, str]]:
    """Stop what the demo started (newest first: supervisord, which stops its programs by group,
    then the broker); then kill by group anything still naming the demo home. Returns what is
    left (nothing, normally)."""
    if demo is not None and demo.procs is not None:
        demo.procs.stop_all()
    if demo is not None and demo.sink is not None:
        demo.sink.stop()
    killed = kill_leftovers(home)
    for pid, cmd in killed:
        say(f"  killed leftover {pid}: {cmd[:110]}")
    remaining = leftovers(home)
    say(f"  processes left naming {home.root}: {len(remaining)}")
    for pid, cmd in remaining:
        say(f"    {pid}: {cmd[:110]}")
    return remaining


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    wall0 = time.monotonic()
    root = args.home.expanduser().absolute()
    previous_handlers = {s: signal.signal(s, _raise) for s in (signal.SIGINT, signal.SIGTERM)}
    demo: Demo | None = None
    owned = False
    code = 1
    try:
        say(f"kitefleet demo: two paper users, one accelerated trading day. Demo home: {root}")
        try:
            dhome.check(root)
            owned = True  # from here on the home is the demo's: its processes may be stopped
            if root.exists():  # a demo killed with SIGKILL leaves its processes behind
                for pid, cmd in kill_leftovers(Home(root.resolve())):
                    say(f"  stopped {pid}, left by an earlier demo: {cmd[:100]}")
            home = dhome.prepare(root)
        except dhome.DemoRefused as exc:
            say(f"demo: {exc}")
            return 4
        demo = Demo(home, args, wall0)
        code = demo.run()
    except Interrupted as exc:
        say(f"\n{exc}: stopping everything the demo started")
        code = 128 + exc.signum
    except Exception as exc:  # the demo must still stop everything it started
        say(f"\ndemo failed: {type(exc).__name__}: {exc}")
        code = 1
    finally:
        for s in previous_handlers:
            signal.signal(s, _note)
        if owned and root.exists():
            say("\n== shutting down")
            if shut_down(demo, Home(root.resolve())) and code == 0:
                code = 1
        for s, handler in previous_handlers.items():
            signal.signal(s, handler)
    say(f"demo finished in {time.monotonic() - wall0:.0f} s (wall); exit {code}")
    return code

