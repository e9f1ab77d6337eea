from __future__ import annotations

import shutil
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def legacy_copy(tmp_path: Path) -> Path:
    """A private copy of the composed legacy tree (trading_state.json, Current_Orders/...)."""
    dest = tmp_path / "legacy"
    shutil.copytree(FIXTURES / "legacy", dest)
    return dest
