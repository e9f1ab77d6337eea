"""The local notification sink lives in demo/sink.py (``make demo`` uses it too); tests import it here,
with the ``sinks`` fixture that stops every sink a test made."""

from collections.abc import Iterator

import pytest

from demo.sink import ID, Sink

__all__ = ["ID", "Sink", "sinks"]


@pytest.fixture
def sinks() -> Iterator[list[Sink]]:
    made: list[Sink] = []
    yield made
    for s in made:
        s.release.set()
        s.stop()
