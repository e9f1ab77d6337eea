"""The notify job's delivery pass in-process, on a real home's outbox files (kitefleet.outbox):
the files, the lock and the marks are real; the sending itself is tested end to end with Apprise
in tests/integration/workers/test_notify.py."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from kitefleet import clock
from kitefleet import outbox as ob
from kitefleet.clock import SimulatedClock, parse_spec
from kitefleet.home import Home
from tests.support.homes import make_home
from tests.support.sink import Sink
from workers.jobs.notify import build_apprise, deliver

LOG = logging.getLogger("tests.notify")


def test_events_of_a_user_without_notify_urls_are_marked_skipped_and_the_outbox_drains(tmp_path: Path) -> None:
    """The bug: with no URL, ``settled`` took ``all()`` of no targets as settled, so no event was
    ever marked ``skipped`` (the counts said 0 skipped, and compaction would keep them forever)."""
    home = make_home(tmp_path / "home")
    ids = [ob.emit(home, "Som", kind, f"Som: {kind}", key=kind) for kind in ("fill", "exit", "job_failed")]
    assert ob.needs_delivery(home, "Som") and ob.undelivered(home, "Som") == 3
    counts = deliver(home, "Som", None, "trades", 24, LOG)
    assert counts == {"sent": 0, "skipped": 3, "dropped": 0, "failed": 0}
    assert ob.read_done(home, "Som") == {eid: {"*": "skipped"} for eid in ids}
    assert not ob.needs_delivery(home, "Som") and ob.undelivered(home, "Som") == 0
    # a second run finds nothing to do and marks nothing twice
    assert deliver(home, "Som", None, "trades", 24, LOG)["skipped"] == 0
    _, done, _ = ob.paths(home, "Som")
    assert len(done.read_text().splitlines()) == 3


# --- compaction (kitefleet.outbox.compact) -------------------------------------------------------
class Killed(BaseException):
    """Stands in for a SIGKILL at a compaction step: nothing after it runs (every step's files are
    whole when its hook runs, so the files are what a kill would leave)."""


@pytest.fixture
def at() -> Iterator[Callable[[str], None]]:
    """Set the shared clock (the events' ``time``) to an instant."""
    def set_to(iso: str) -> None:
        clock.set_clock(SimulatedClock(parse_spec(iso)))
    yield set_to
    clock.set_clock(None)


OLD, YOUNG, LATER = "2026-10-01T10:00:00+05:30", "2026-11-28T10:00:00+05:30", "2026-12-05T10:00:00+05:30"


def a_month(home: Home, user: str, sink: Sink, at: Callable[[str], None]) -> tuple[list[str], list[str], list[str]]:
    """Old events (sent), young ones (sent; one keyed), and pending ones (the sink down)."""
    ap = build_apprise((sink.url,), "env/Som.env")
    at(OLD)
    old = [ob.emit(home, user, "fill", f"old fill {i}", key=f"fill|old|{i}") for i in range(3)]
    at(YOUNG)
    young = [ob.emit(home, user, "fill", "young fill", key="fill|young"), ob.emit(home, user, "exit", "young exit")]
    assert deliver(home, user, ap, "trades", 24, LOG)["sent"] == 5
    sink.stop()
    at(LATER)
    pending = [ob.emit(home, user, "exit", f"pending exit {i}") for i in range(2)]
    assert deliver(home, user, ap, "trades", 24, LOG)["failed"] == 2
    return [str(e) for e in old], [str(e) for e in young], [str(e) for e in pending]


def test_compaction_keeps_pending_and_young_events_and_drops_old_settled_ones(
        tmp_path: Path, sinks: list[Sink], at: Callable[[str], None]) -> None:
    home = make_home(tmp_path / "home")
    sink = Sink("hook-som-A1")
    sinks.append(sink)
    old, young, pending = a_month(home, "Som", sink, at)
    outbox, done, _ = ob.paths(home, "Som")
    before = outbox.stat().st_size
    assert ob.compact(home, "Som", clock.now(), min_bytes=before + 1) == 0  # below the threshold: untouched
    assert ob.compact(home, "Som", clock.now(), min_bytes=0) == 3
    assert [e["id"] for e in ob.read_events(home, "Som")] == young + pending
    assert set(ob.read_done(home, "Som")) == set(young)
    assert outbox.stat().st_size < before
    cursor = ob.read_cursor(home, "Som")
    assert cursor["offset"] == ob.read_events(home, "Som")[1]["_end"]  # the young ones are the settled prefix
    assert set(cursor["tries"]) == set(pending) and cursor["next_try"] is not None
    # a re-run of the job that told the young fill tells it no second time (it is still in the outbox)
    assert ob.emit(home, "Som", "fill", "young fill", key="fill|young") == young[0]
    assert len(ob.read_events(home, "Som")) == 4
    # nothing old to drop: a second compaction changes nothing
    raw = outbox.read_bytes(), done.read_bytes()
    assert ob.compact(home, "Som", clock.now(), min_bytes=0) == 0
    assert (outbox.read_bytes(), done.read_bytes()) == raw
    sink.start()
    ap = build_apprise((sink.url,), "x")
    assert deliver(home, "Som", ap, "trades", 24, LOG, wall=cursor["next_try"])["sent"] == 2
    assert sink.ids() == old + young + pending  # each once


@pytest.mark.parametrize("point", ob.COMPACT_STEPS)
def test_a_kill_at_each_compaction_step_loses_nothing_and_sends_nothing_settled_again(
        tmp_path: Path, sinks: list[Sink], at: Callable[[str], None], point: str) -> None:
    """The user adds a second URL after the kill: a settled event that lost its per-URL marks'
    meaning (the cursor reset) would go to the new URL; step 1's ``"*"`` marks keep it settled."""
    home = make_home(tmp_path / "home")
    sink, second = Sink("hook-som-A1"), Sink("hook-som-B2")
    sinks += [sink, second]
    old, young, pending = a_month(home, "Som", sink, at)

    def kill(name: str) -> None:
        if name == point:
            raise Killed(name)

    with pytest.raises(Killed):
        ob.compact(home, "Som", clock.now(), min_bytes=0, step=kill)
    assert [e["id"] for e in ob.read_events(home, "Som")][-2:] == pending  # nothing undelivered lost
    sink.start()
    wall = ob.read_cursor(home, "Som")["next_try"]
    assert ob.needs_delivery(home, "Som", wall=wall)
    counts = deliver(home, "Som", build_apprise((sink.url, second.url), "x"), "trades", 24, LOG, wall=wall)
    assert counts["sent"] == 4 and counts["failed"] == 0
    assert sink.ids() == old + young + pending and second.ids() == pending
    # the next compaction finishes the job (the old events are already gone from a rewritten outbox)
    gone = point in ("outbox_written", "done_written")
    assert ob.compact(home, "Som", clock.now(), min_bytes=0) == (0 if gone else 3)
    assert [e["id"] for e in ob.read_events(home, "Som")] == young + pending
    assert set(ob.read_done(home, "Som")) == set(young + pending)
    assert not ob.needs_delivery(home, "Som")


def test_an_event_no_service_took_for_notify_give_up_hours_is_dropped_with_a_warning_a_younger_one_kept(
        tmp_path: Path, sinks: list[Sink], caplog: pytest.LogCaptureFixture) -> None:
    """Real Apprise to a sink that is down (its port closed); the wall time of each pass is injected."""
    home = make_home(tmp_path / "home")
    sink = Sink("hook-som-A1")
    sinks.append(sink)
    sink.stop()
    ap = build_apprise((sink.url,), "env/Som.env")
    first = 1_780_000_000.0
    older = str(ob.emit(home, "Som", "exit", "sold 10 INFY @ 1490"))
    assert deliver(home, "Som", ap, "trades", 24, LOG, wall=first)["failed"] == 1
    younger = ob.emit(home, "Som", "exit", "sold 5 TCS @ 3200")
    assert deliver(home, "Som", ap, "trades", 24, LOG, wall=first + 23.9 * 3600)["dropped"] == 0  # not yet
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger=LOG.name):
        counts = deliver(home, "Som", ap, "trades", 24, LOG, wall=first + 24 * 3600)
    assert counts == {"sent": 0, "skipped": 0, "dropped": 1, "failed": 1}
    dropped = [r for r in caplog.records if r.levelno == logging.WARNING and "dropped" in r.getMessage()]
    assert len(dropped) == 1 and older in dropped[0].getMessage()
    assert ob.read_done(home, "Som") == {older: {"*": "dropped"}}
    cursor = ob.read_cursor(home, "Som")
    assert set(cursor["tries"]) == {younger} and ob.needs_delivery(home, "Som", wall=cursor["next_try"])
    sink.start()
    assert deliver(home, "Som", ap, "trades", 24, LOG, wall=cursor["next_try"])["sent"] == 1
    assert sink.ids() == [younger]
