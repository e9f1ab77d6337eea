"""No module over ~400 lines without a reason written at the top of its docstring (issue 14).

The reason is a sentence in the module docstring that says "over 400 lines" (or "over ~400 lines")
and why: several things that belong together, a contract written out in full, a split not yet made.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("kitefleet", "workers", "fleet", "paper_broker")
LIMIT = 400
REASON = re.compile(r"over ~?400 lines", re.I)

# Modules let off the rule for now (none: every long module says why at its top).
KNOWN: set[str] = set()


def _unexplained(root: Path, packages: tuple[str, ...] = PACKAGES) -> list[str]:
    out: list[str] = []
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            lines = len(path.read_text().splitlines())
            name = path.relative_to(root).as_posix()
            if lines <= LIMIT or name in KNOWN:
                continue
            doc = ast.get_docstring(ast.parse(path.read_text())) or ""
            if not REASON.search(doc):
                out.append(f"{name}: {lines} lines and no 'Over 400 lines because ...' in its docstring")
    return out


def test_every_module_over_400_lines_says_why() -> None:
    assert _unexplained(ROOT) == []


def test_a_long_module_without_a_reason_is_named(tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    body = "x = 1\n" * (LIMIT + 1)
    (tmp_path / "pkg" / "long.py").write_text('"""Does things."""\n' + body)
    (tmp_path / "pkg" / "ok.py").write_text('"""Does things.\n\nOver 400 lines because it must."""\n' + body)
    (tmp_path / "pkg" / "short.py").write_text('"""Short."""\nx = 1\n')
    assert [p.split(":")[0] for p in _unexplained(tmp_path, ("pkg",))] == ["pkg/long.py"]
