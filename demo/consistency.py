"""The backtest over the demo's own two days, compared with what the jobs did (issue 21).

The replay is the backtest's engine (workers.backtest.engine) on the paper market the demo's broker
served (the demo's seed, scenario and NSE calendar file), with each user's demo settings and the
demo's sequence of runs:

* the day before: the person's pick (demo/yesterday.json, ``place_orders_daily --from``) entered at
  10:00, before supervisord starts (so no watchdog and no stop job during that session; the stop
  at the fill, as place_orders_daily places it);
* the replay day: the user's schedule (the stop job, the watchdog, the 09:20 entries from the
  previous evening's scan).

Each entry run is replayed in the minute the demo's run actually started (its run record), which
is 10:00 and 09:20 unless the demo's scheduler was late. What the accelerated clock keeps the jobs
from seeing (their watchdog's poll gaps; a minute's close none of the fresh quotes its decisions
were made on returned: it decides again on a fresh quote before it sells, and keeps those quotes) and entries
sent in a later minute than planned are notes, not differences (workers.backtest.compare).

The initial cash is the user's PAPER_STARTING_CASH less what a person bought by hand before the
bot ran (demo.home.HAND_HELD, at its average price; the bot never manages it). What the jobs did
comes from the demo's report (demo.report: the entry orders, the watchdog's exit records with their
poll times); workers.backtest.compare says where the two differ.
"""

from __future__ import annotations

import dataclasses
from datetime import date, datetime
from typing import Any

from demo import home as dhome
from kitefleet.calendar import read_calendar
from kitefleet.home import Home
from workers.backtest import engine
from workers.backtest.compare import JobEntry, JobExit, Report, compare_entries, compare_exits
from workers.backtest.model import BacktestSpec, RuleResult
from workers.backtest.paper import PaperSource
from workers.backtest.timing import session_times
from workers.entry_input import read_manual

#: when the demo runs yesterday's picks (demo.run_demo: ``run-all place_orders_daily --from``)
YESTERDAY_ENTRIES_AT = "10:00"


def _when(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def initial_cash(user: dhome.DemoUser, holdings: list[dict[str, Any]]) -> float:
    cash = float(user.settings.get("PAPER_STARTING_CASH") or engine.DEFAULT_INITIAL_CASH)
    hand_user, hand_symbol, hand_qty = dhome.HAND_HELD
    if user.name == hand_user:
        held = next((h for h in holdings if h["symbol"] == hand_symbol), None)
        if held is not None:
            cash -= hand_qty * float(held["average_price"])
    return round(cash, 2)


def run_minutes(entries: list[dict[str, Any]]) -> dict[date, datetime]:
    """Per session, when the jobs' entry run planned (its run record's start, to the minute): the
    replay runs its entries then, so both size on the same minute's close even when the demo's
    scheduler started the run a little late."""
    out: dict[date, datetime] = {}
    for e in entries:
        planned = _when(e.get("planned_at"))
        if planned is not None:
            day = date.fromisoformat(e["session"])
            out[day] = min(out.get(day, planned), planned)
    return out


def replay_demo(home: Home, seed: int, user: dhome.DemoUser, previous: date, day: date,
                holdings: list[dict[str, Any]], runs: dict[date, datetime] | None = None
                ) -> tuple[RuleResult, engine.Replay]:
    """The engine over the demo's two sessions for ``user``; ``runs``: when the jobs' entry run of
    each session started (default: 10:00 the day before, the user's schedule on the day)."""
    runs = runs or {}
    calendar = read_calendar(home.calendar_file)
    scenario = home.root / "demo" / "scenario.json"
    settings: dict[str, Any] = {k: v for k, v in user.settings.items() if k != "PAPER_STARTING_CASH"}
    if day in runs:
        settings["SCHEDULE_PLACE_ORDERS_DAILY"] = f"{runs[day]:%H:%M}"
    rule = str(settings.get("WATCHDOG_RULE") or "hourly_low")
    spec = BacktestSpec(user=user.name, start=previous, end=day, rules=(rule,), source="paper", seed=seed,
                        scenario=str(scenario), initial_cash=initial_cash(user, holdings), settings=settings)
    replay = engine.Replay(spec, PaperSource(calendar, seed, scenario, None), calendar)
    acct = replay.account(rule)
    picks, scored = read_manual(home.root / "demo" / "yesterday.json")
    before = session_times(replay.plan, calendar, previous)
    started = runs.get(previous, dhome.at(previous, YESTERDAY_ENTRIES_AT))
    slot = int((started - before.opening).total_seconds() // 60)
    # supervisord starts after that session's close: only the person's entry run happens in it
    before = dataclasses.replace(before, entries=(slot,), stops=(), polls={}, watched=False)
    replay.session(acct, rule, previous, picks, replay.minutes_of(previous), before, manual=True, scored=scored)
    replay.session(acct, rule, day, replay.scan(previous), replay.minutes_of(day),
                   session_times(replay.plan, calendar, day))
    return acct.result, replay


def compare_user(home: Home, seed: int, user: dhome.DemoUser, report: dict[str, Any]) -> Report:
    previous, day = date.fromisoformat(report["previous_day"]), date.fromisoformat(report["day"])
    mine = report["users"][user.name]
    activity = mine["activity"]
    result, replay = replay_demo(home, seed, user, previous, day, mine["holdings"], run_minutes(activity["entries"]))
    out = Report()
    compare_entries([JobEntry(date.fromisoformat(e["session"]), e["symbol"], int(e["quantity"]), float(e["price"]),
                              _when(e.get("planned_at")), _when(e.get("sent_at")))
                     for e in activity["entries"]], result.orders, replay.ticks, out)
    exits = [JobExit(date.fromisoformat(x["session"]), x["symbol"], str(x["rule"]), x.get("level"),
                     float(x["price"] or 0.0), _when(x.get("decided_at")), _when(x.get("previous_poll_at")),
                     _when(x.get("quoted_at")), _when(x.get("level_at")))
             for x in activity["exits"] if x.get("order_id")]  # the exits that reached the broker
    openings = {d: replay.calendar.session_bounds(d)[0] for d in (previous, day)}
    gaps = [(datetime.fromisoformat(a), datetime.fromisoformat(b))
            for pairs in (activity.get("poll_gaps") or {}).values() for a, b in pairs]
    reads = {(date.fromisoformat(session), sym): [datetime.fromisoformat(t) for t, _ltp in quotes]
             for session, symbols in (activity.get("quotes") or {}).items() for sym, quotes in symbols.items()}
    compare_exits(exits, result.orders, replay.ticks, out, openings=openings,
                  until=datetime.fromisoformat(report["simulated_end"]), poll_seconds=replay.plan.poll_seconds,
                  gaps=gaps, reads=reads)
    return out


def compare_all(home: Home, seed: int, report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per user: entries and exits compared, the differences (none when the two agree) and notes."""
    out: dict[str, dict[str, Any]] = {}
    for user in dhome.USERS:
        if user.name not in report.get("users", {}):
            continue
        try:
            r = compare_user(home, seed, user, report)
        except Exception as exc:  # the demo reports it; it must still stop everything it started
            out[user.name] = {"entries": 0, "exits": 0, "differences": [f"the replay failed: {exc!r}"], "notes": []}
            continue
        out[user.name] = {"entries": r.entries, "exits": r.exits, "differences": r.differences, "notes": r.notes}
    return out


def render(consistency: dict[str, dict[str, Any]]) -> list[str]:
    lines = ["==== the backtest over the same two days (workers.backtest.engine, same seed, scenario, settings)"]
    for user, c in consistency.items():
        verdict = "the same" if not c["differences"] else f"{len(c['differences'])} difference(s)"
        lines.append(f"  {user}: {c['entries']} entries and {c['exits']} exits compared: {verdict}")
        lines += [f"    differs: {d}" for d in c["differences"]]
        lines += [f"    note: {n}" for n in c["notes"]]
    return lines
