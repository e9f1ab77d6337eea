from __future__ import annotations

import os

import pytest

from kitefleet import clock
from workers.context import TEST_MARKER_ENV

# Fault injection (KITEFLEET_FAULT) is honoured only in a paper worker that also sees this marker;
# every process the tests start inherits it (tests/support/homes.py child_env passes it on).
os.environ[TEST_MARKER_ENV] = "pytest"


@pytest.fixture(autouse=True)
def _isolate_process_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never inherit a TRADER_CLOCK or KITEFLEET_HOME from the developer's shell."""
    monkeypatch.delenv("TRADER_CLOCK", raising=False)
    monkeypatch.delenv("KITEFLEET_HOME", raising=False)
    clock.set_clock(None)


def soak_enabled() -> bool:
    return os.environ.get("KITEFLEET_SOAK") == "1"


# Fixtures that tests in several folders use, made available everywhere.
from tests.support.legacy import legacy_copy  # noqa: E402, F401 (fixture)
from tests.support.sink import sinks  # noqa: E402, F401 (fixture)
