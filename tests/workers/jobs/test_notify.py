"""The notify job's delivery pass in-process, on a real home's outbox files (kitefleet.outbox):
the files, the lock and the marks are real; the sending itself is tested end to end with Apprise
in tests/integration/workers/test_notify.py."""

from __future__ import annotations

import logging
from pathlib import Path

from kitefleet import outbox as ob
from tests.support.homes import make_home
from workers.jobs.notify import deliver

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
