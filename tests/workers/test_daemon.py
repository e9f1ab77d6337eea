"""workers/daemon.py in one process: a second scheduler in the same process is refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from kitefleet.home import Home
from kitefleet.locks import instance_lock


def test_a_second_scheduler_in_the_same_process_is_refused(tmp_path: Path) -> None:
    home = Home(tmp_path)
    with instance_lock(home, "Som"):
        from kitefleet.errors import AlreadyRunning

        with pytest.raises(AlreadyRunning):
            instance_lock(home, "Som").acquire()
