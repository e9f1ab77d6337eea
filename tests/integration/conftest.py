"""Tests that start real processes (worker jobs through the launcher, the orchestrator CLI, the paper
broker as a server, supervisord, writers killed by SIGKILL). Every test collected under this
folder gets the ``integration`` marker; ``make test-fast`` leaves the folder out."""

from __future__ import annotations

from pathlib import Path

import pytest

_HERE = Path(__file__).parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if _HERE in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.integration)
