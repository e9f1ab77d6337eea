"""Is the backtest the jobs? (issue 21) The replay's orders against what the real jobs did over the
same sessions (``make demo``: its seed, scenario and settings), one line per difference.

Pure: plain rows in, lines out. The jobs' side is read by the caller (the demo's report: each entry
order, each watchdog exit record with its ``decided_at``, ``previous_poll_at`` and ``quoted_at``,
workers.watchdog); the replay's side is its :class:`~workers.backtest.model.OrderRow` list.

What must agree, and why each tolerance:

* **entries**: the same symbols on the same sessions, the same quantity, the limit within one tick
  (both price at the ask of the book of the minute the order is sent in; a send that crosses into
  the next minute meets that minute's book);
* **exits by the watchdog**: the same symbols, the same rule and level, and the replay's poll that
  decided lies after the job's poll before the deciding one (that poll saw nothing to do) and no
  later than one poll interval after the deciding poll's quote (the replay polls on a grid from
  the job's start; the job's polls drift with its work). When both decided on the same completed
  minute (the replay's poll and the job's quote see the same last close), the limit is within one
  tick; when the job's polls were further apart than the grid (an accelerated replay clock) and it
  saw a later minute, the price is its own and only the window is checked (a limit more than a tick
  away is then a note, :attr:`Report.notes`);
* **exits by a stop GTT**: the same symbols.

A replay exit within ``margin`` of the end of what the jobs ran (a bounded demo stops mid-session)
is not required of the jobs: they may not have polled again before they were stopped.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from workers.backtest.model import OrderRow

#: the watchdog's rule of an exit sold by the bot's stop GTT (workers.exit_records.adopted_child)
GTT_RULE = "gtt"
#: the replay's reason for the same (workers.backtest.engine: the GTT trigger)
STOP_REASON = "stop"


@dataclass(frozen=True)
class JobEntry:
    session: date
    symbol: str
    quantity: int
    price: float  # the order's limit


@dataclass(frozen=True)
class JobExit:
    session: date
    symbol: str
    rule: str
    level: float | None
    price: float  # the order's limit
    decided_at: datetime | None
    previous_poll_at: datetime | None = None
    quoted_at: datetime | None = None


@dataclass
class Report:
    differences: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    entries: int = 0  # pairs compared
    exits: int = 0

    @property
    def same(self) -> bool:
        return not self.differences


def _off_by_ticks(a: float, b: float, tick: float) -> float:
    return abs(a - b) / tick


def compare_entries(job: Iterable[JobEntry], replay: Iterable[OrderRow], ticks: Mapping[str, float],
                    report: Report) -> None:
    mine = {(e.session, e.symbol): e for e in job}
    theirs = {(o.time.date(), o.symbol): o for o in replay if o.purpose == "entry"}
    for key in sorted(mine.keys() - theirs.keys()):
        report.differences.append(f"entry {key[1]} on {key[0]}: sent by the jobs, not by the replay")
    for key in sorted(theirs.keys() - mine.keys()):
        report.differences.append(f"entry {key[1]} on {key[0]}: sent by the replay, not by the jobs")
    for key in sorted(mine.keys() & theirs.keys()):
        j, r = mine[key], theirs[key]
        report.entries += 1
        if j.quantity != r.quantity:
            report.differences.append(f"entry {j.symbol} on {j.session}: quantity {j.quantity} (jobs) vs "
                                      f"{r.quantity} (replay)")
        if _off_by_ticks(j.price, r.price, ticks[j.symbol]) > 1 + 1e-9:
            report.differences.append(f"entry {j.symbol} on {j.session}: limit {j.price} (jobs) vs {r.price} "
                                      f"(replay), more than one tick ({ticks[j.symbol]}) apart")


def _minute_seen(when: datetime, opening: datetime) -> int:
    """The index from the open of the last minute completed at ``when`` (-1: none yet)."""
    return int((when - opening).total_seconds() // 60) - 1


def compare_exits(job: Iterable[JobExit], replay: Iterable[OrderRow], ticks: Mapping[str, float],
                  report: Report, *, openings: Mapping[date, datetime], until: datetime, poll_seconds: int,
                  levels: Mapping[tuple[date, str], float | None] | None = None,
                  margin: timedelta = timedelta(minutes=2)) -> None:
    """``levels``: the replay's level of each exit by (session, symbol), when it knows it."""
    mine = {(e.session, e.symbol): e for e in job if e.decided_at is None or e.decided_at <= until}
    theirs = {(o.time.date(), o.symbol): o for o in replay
              if o.side == "SELL" and o.purpose in ("exit", "stop") and o.time <= until}
    late = {k for k, o in theirs.items() if o.time > until - margin}
    for key in sorted(mine.keys() - theirs.keys()):
        report.differences.append(f"exit {key[1]} on {key[0]}: sold by the jobs ({mine[key].rule}), "
                                  "not by the replay")
    for key in sorted(theirs.keys() - mine.keys()):
        if key in late:
            report.notes.append(f"exit {key[1]} at {theirs[key].time:%H:%M:%S}: within {margin} of the end of "
                                "the jobs' run; not required of them")
            continue
        report.differences.append(f"exit {key[1]} on {key[0]}: sold by the replay ({theirs[key].reason}) at "
                                  f"{theirs[key].time:%H:%M:%S}, not by the jobs")
    for key in sorted(mine.keys() & theirs.keys()):
        report.exits += 1
        _compare_exit(mine[key], theirs[key], ticks[key[1]], report, openings[key[0]], poll_seconds,
                      (levels or {}).get(key))


def _compare_exit(j: JobExit, r: OrderRow, tick: float, report: Report, opening: datetime, poll_seconds: int,
                  level: float | None) -> None:
    what = f"exit {j.symbol} on {j.session}"
    if j.rule == GTT_RULE or r.reason == STOP_REASON:
        if not (j.rule == GTT_RULE and r.reason == STOP_REASON):
            report.differences.append(f"{what}: {j.rule} (jobs) vs {r.reason} (replay)")
        return
    if j.rule != r.reason:
        report.differences.append(f"{what}: rule {j.rule} (jobs) vs {r.reason} (replay)")
        return
    if level is not None and j.level is not None and _off_by_ticks(j.level, level, tick) > 1e-9:
        report.differences.append(f"{what}: level {j.level} (jobs) vs {level} (replay)")
    if j.decided_at is None or j.quoted_at is None or j.previous_poll_at is None:
        report.differences.append(f"{what}: the jobs' record lacks its poll times (decided_at, "
                                  "previous_poll_at, quoted_at)")
        return
    latest = j.quoted_at + timedelta(seconds=poll_seconds)
    if not j.previous_poll_at < r.time <= latest:
        report.differences.append(
            f"{what}: decided by the replay at {r.time:%H:%M:%S}, outside the jobs' polls "
            f"({j.previous_poll_at:%H:%M:%S}, the poll before; {j.quoted_at:%H:%M:%S}, the deciding quote, "
            f"+ {poll_seconds} s)")
        return
    seen_job, seen_replay = _minute_seen(j.quoted_at, opening), _minute_seen(r.time, opening)
    if seen_job == seen_replay:
        if _off_by_ticks(j.price, r.price, tick) > 1 + 1e-9:
            report.differences.append(f"{what}: limit {j.price} (jobs) vs {r.price} (replay) on the same "
                                      f"minute's close, more than one tick ({tick}) apart")
    elif _off_by_ticks(j.price, r.price, tick) > 1 + 1e-9:
        report.notes.append(f"{what}: the jobs decided on the close of minute {seen_job} from the open, the "
                            f"replay on minute {seen_replay} (the jobs' polls were further apart than "
                            f"{poll_seconds} s); limit {j.price} vs {r.price} not compared")
