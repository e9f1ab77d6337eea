"""Helpers and data shared by the tests (one convention: tests import from ``tests.support``)."""

from pathlib import Path

#: Fixture files: legacy trees, a config.ini, state files written by earlier code.
DATA = Path(__file__).parent / "data"
