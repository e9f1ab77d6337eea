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

A replay exit within ``margin`` of the end of what the jobs ran (a bounded demo stops mid-session),
or decided while the jobs' watchdog was not polling (its recorded ``poll_gaps``: a starved process
under an accelerated clock), or on a minute's close the jobs never read with their level in effect
(the watchdog decides on a fresh quote before it sells and keeps those quotes; at 900x the few wall
milliseconds between a poll's LTP read and that quote, or a level's fetch, can be a minute of market
time), is not required of the jobs: they could not have sold on it. An entry the
job sent in a later minute than it planned it in met that minute's book, where the replay plans and
sends in one: a note, not a difference. Notes are listed so that a run full of them shows.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
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
    planned_at: datetime | None = None  # when its run read the LTPs and sized it
    sent_at: datetime | None = None  # when its order was priced and sent


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
    level_at: datetime | None = None  # from when the jobs compared prices with this level


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
        if j.planned_at is not None and j.sent_at is not None and _minute(j.planned_at) != _minute(j.sent_at):
            # the replay plans and sends in one minute (a job's run takes a second or so at real speed)
            report.notes.append(f"entry {j.symbol} on {j.session}: planned at {j.planned_at:%H:%M:%S}, sent at "
                                f"{j.sent_at:%H:%M:%S}, a later minute's book: {j.quantity} @ {j.price} (jobs) vs "
                                f"{r.quantity} @ {r.price} (replay) not compared")
            continue
        if j.quantity != r.quantity:
            report.differences.append(f"entry {j.symbol} on {j.session}: quantity {j.quantity} (jobs) vs "
                                      f"{r.quantity} (replay)")
        if _off_by_ticks(j.price, r.price, ticks[j.symbol]) > 1 + 1e-9:
            report.differences.append(f"entry {j.symbol} on {j.session}: limit {j.price} (jobs) vs {r.price} "
                                      f"(replay), more than one tick ({ticks[j.symbol]}) apart")


def _minute(when: datetime) -> datetime:
    return when.replace(second=0, microsecond=0)


def _in_gap(when: datetime, gaps: Iterable[tuple[datetime, datetime]]) -> tuple[datetime, datetime] | None:
    return next(((a, b) for a, b in gaps if a < when < b), None)


Reads = Mapping[tuple[date, str], Sequence[datetime]]


def _unseen(key: tuple[date, str], when: datetime, opening: datetime, reads: Reads | None,
            since: datetime | None) -> bool:
    """True when none of the fresh quotes the jobs decided ``key``'s symbol on returned the close
    the replay decided on at ``when`` (the same last completed minute), from ``since`` (their
    level) on. None ``reads``: unknown, so not unseen."""
    if reads is None:
        return False
    minute = _minute_seen(when, opening)
    return not any(_minute_seen(t, opening) == minute and (since is None or t >= since) for t in reads.get(key, ()))


def _minute_seen(when: datetime, opening: datetime) -> int:
    """The index from the open of the last minute completed at ``when`` (-1: none yet)."""
    return int((when - opening).total_seconds() // 60) - 1


def compare_exits(job: Iterable[JobExit], replay: Iterable[OrderRow], ticks: Mapping[str, float],
                  report: Report, *, openings: Mapping[date, datetime], until: datetime, poll_seconds: int,
                  levels: Mapping[tuple[date, str], float | None] | None = None,
                  gaps: Iterable[tuple[datetime, datetime]] = (), reads: Reads | None = None,
                  margin: timedelta = timedelta(minutes=2)) -> None:
    """``levels``: the replay's level of each exit by (session, symbol), when it knows it.
    ``gaps``: when the jobs' watchdog did not poll (its ``poll_gaps``); ``reads``: per (session,
    symbol), when the jobs read the fresh quotes their watchdog decides on before it sells (its
    ``quotes``). A replay exit decided inside a gap, or on a minute's close none of those quotes
    returned (with the level in effect), is a note, not a difference: the watchdog could not have
    sold on it."""
    gaps = list(gaps)
    mine = {(e.session, e.symbol): e for e in job if e.decided_at is None or e.decided_at <= until}
    theirs = {(o.time.date(), o.symbol): o for o in replay
              if o.side == "SELL" and o.purpose in ("exit", "stop") and o.time <= until}
    late = {k for k, o in theirs.items() if o.time > until - margin}
    for key in sorted(mine.keys() - theirs.keys()):
        report.differences.append(f"exit {key[1]} on {key[0]}: sold by the jobs ({mine[key].rule}), "
                                  "not by the replay")
    for key in sorted(theirs.keys() - mine.keys()):
        if (gap := _in_gap(theirs[key].time, gaps)) is not None:
            report.notes.append(f"exit {key[1]} at {theirs[key].time:%H:%M:%S}: the jobs' watchdog did not poll "
                                f"from {gap[0]:%H:%M:%S} to {gap[1]:%H:%M:%S}; not required of them")
            continue
        if _unseen(key, theirs[key].time, openings[key[0]], reads, None):
            report.notes.append(f"exit {key[1]} at {theirs[key].time:%H:%M:%S}: the jobs never read the close it "
                                "was decided on; not required of them")
            continue
        if key in late:
            report.notes.append(f"exit {key[1]} at {theirs[key].time:%H:%M:%S}: within {margin} of the end of "
                                "the jobs' run; not required of them")
            continue
        report.differences.append(f"exit {key[1]} on {key[0]}: sold by the replay ({theirs[key].reason}) at "
                                  f"{theirs[key].time:%H:%M:%S}, not by the jobs")
    for key in sorted(mine.keys() & theirs.keys()):
        report.exits += 1
        _compare_exit(mine[key], theirs[key], ticks[key[1]], report, openings[key[0]], poll_seconds,
                      (levels or {}).get(key), gaps, reads)


def _compare_exit(j: JobExit, r: OrderRow, tick: float, report: Report, opening: datetime, poll_seconds: int,
                  level: float | None, gaps: list[tuple[datetime, datetime]], reads: Reads | None) -> None:
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
    if r.time <= j.previous_poll_at and (gap := _in_gap(r.time, gaps)) is not None:
        report.notes.append(f"{what}: decided by the replay at {r.time:%H:%M:%S}, while the jobs' watchdog did not "
                            f"poll ({gap[0]:%H:%M:%S} to {gap[1]:%H:%M:%S}); the jobs decided at "
                            f"{j.quoted_at:%H:%M:%S}; limit {j.price} vs {r.price} not compared")
        return
    if r.time <= j.previous_poll_at and _unseen((j.session, j.symbol), r.time, opening, reads, j.level_at):
        report.notes.append(f"{what}: decided by the replay at {r.time:%H:%M:%S} on a close the jobs never read "
                            f"with their level in effect (from {j.level_at:%H:%M:%S}); the jobs decided at "
                            f"{j.quoted_at:%H:%M:%S}; limit {j.price} vs {r.price} not compared"
                            if j.level_at is not None else
                            f"{what}: decided by the replay at {r.time:%H:%M:%S} on a close the jobs never read; "
                            f"the jobs decided at {j.quoted_at:%H:%M:%S}; limit {j.price} vs {r.price} not compared")
        return
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
