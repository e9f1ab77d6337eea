from __future__ import annotations

import os

import pytest

from kitefleet import clock


@pytest.fixture(autouse=True)
def _isolate_process_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never inherit a TRADER_CLOCK or KITEFLEET_HOME from the developer's shell."""
    monkeypatch.delenv("TRADER_CLOCK", raising=False)
    monkeypatch.delenv("KITEFLEET_HOME", raising=False)
    clock.set_clock(None)


def soak_enabled() -> bool:
    return os.environ.get("KITEFLEET_SOAK") == "1"
