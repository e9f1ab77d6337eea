"""The sides stay apart: the orchestrator, the workers and the paper broker share only kitefleet/.

An on-disk or naming contract that two sides read (the pause flag, the heartbeat, the job names)
lives in kitefleet/; a side importing another would pull the other's dependencies and let its
internals become a contract nobody wrote down. Imports are read with ``ast``, so a function-level
import counts as much as a top-level one.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.homes import PROJECT_ROOT

#: (files, packages they must not import). Paths are relative to the project root.
BOUNDARIES: list[tuple[str, tuple[str, ...]]] = [
    ("fleet", ("workers", "paper_broker")),
    ("orchestrator.py", ("workers", "paper_broker")),
    ("workers", ("fleet", "paper_broker")),
    ("paper_broker", ("workers", "fleet")),
    ("kitefleet", ("workers", "fleet", "paper_broker")),
]


def python_files(relative: str) -> list[Path]:
    path = PROJECT_ROOT / relative
    return [path] if path.is_file() else sorted(path.rglob("*.py"))


def imported_modules(source: str, filename: str) -> Iterator[tuple[int, str]]:
    """(line, module) of every absolute import in ``source``; ``from a import b`` gives ``a.b``
    as well as ``a``, so ``from workers import pause`` names ``workers``."""
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module is not None:
            yield node.lineno, node.module


def crossings(relative: str, forbidden: tuple[str, ...]) -> list[str]:
    found = []
    for path in python_files(relative):
        for line, module in imported_modules(path.read_text(encoding="utf-8"), str(path)):
            if module.split(".")[0] in forbidden:
                found.append(f"{path.relative_to(PROJECT_ROOT)}:{line}: {module}")
    return found


@pytest.mark.parametrize(("relative", "forbidden"), BOUNDARIES, ids=[b[0] for b in BOUNDARIES])
def test_side_imports_nothing_of_the_other_sides(relative: str, forbidden: tuple[str, ...]) -> None:
    assert python_files(relative), f"{relative}: no Python files (moved? update BOUNDARIES)"
    assert crossings(relative, forbidden) == []


def test_an_import_across_the_boundary_is_seen() -> None:
    """The reader catches each form of import, top-level or inside a function."""
    source = (
        "import workers.pause\n"
        "from workers import heartbeat\n"
        "def f():\n"
        "    from workers.__main__ import JOBS\n"
        "from kitefleet import pause\n"
        "from . import sibling\n"
    )
    assert sorted(m for _, m in imported_modules(source, "x.py")) == [
        "kitefleet", "workers", "workers.__main__", "workers.pause",
    ]
