"""Settings' typed reads: the schema's default where a key is absent, one clear error otherwise."""
from __future__ import annotations

from datetime import time
from pathlib import Path

import pytest

from kitefleet.settings import KEYS, Settings


def _settings(**values: object) -> Settings:
    return Settings(user="Som", env_file=Path("Som.env"), values={"TRADER_MODE": "paper", **values})


def test_typed_reads_return_the_value_or_the_schema_default() -> None:
    s = _settings(GTT_LIMIT_BUFFER_PERCENT=2.5, MIN_SCORE=6)
    assert s.number("GTT_LIMIT_BUFFER_PERCENT") == 2.5
    assert s.integer("MIN_SCORE") == 6
    assert s.number("PAPER_STARTING_CASH") == KEYS["PAPER_STARTING_CASH"].default
    assert s.text("NOTIFY_LEVEL") == "trades"
    assert s.time_of_day("ENTRY_CUTOFF") == time(11, 0)
    assert s.optional_number("MAX_CAPITAL") is None


def test_a_key_the_schema_does_not_list_is_an_error_not_a_default() -> None:
    with pytest.raises(KeyError):
        _settings().number("GTT_LIMIT_BUFER_PERCENT")


def test_a_value_of_the_wrong_type_names_the_key() -> None:
    with pytest.raises(TypeError, match="MIN_SCORE"):
        _settings(MIN_SCORE="6").integer("MIN_SCORE")
    with pytest.raises(TypeError, match="MAX_CAPITAL"):
        _settings(MAX_CAPITAL=True).number("MAX_CAPITAL")
