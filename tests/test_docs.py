"""Every row of docs/restart-behaviour.md names a test that exists (issue 14's "Done means").

The test column's shorthand, as the file defines it:
- `tests/path.py::name[param]` a test function in that file (param: one of its parametrize ids);
- `::name` the same file as the reference before it in that row (or in the row above);
- `same test` and `...[param]` the row above's test (with another param);
- `T_MAIN`, `T_RESTART`, `T_FAIL`, `T_RIG::name` the aliases defined in the watchdog section.
A row with no reference, or one that says "not covered", fails.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "restart-behaviour.md"

WATCHDOG = "tests/integration/jobs/test_watchdog.py"
ALIASES: dict[str, tuple[str, str | None]] = {
    "T_MAIN": (WATCHDOG, "test_exits_at_the_expected_hour_and_price_per_user_and_tidies_the_gtt"),
    "T_RESTART": (WATCHDOG, "test_restart_mid_session_resumes_levels_and_places_no_second_exit"),
    "T_FAIL": (WATCHDOG, None),  # the module fixture `failures` and one test per user (named in the prose)
}
RIG = "tests/workers/test_watchdog_rig.py"

# Rows the lead knows have no test yet; delete an entry once its test lands.
KNOWN_UNCOVERED: set[str] = set()

REF = re.compile(r"(T_RIG|T_MAIN|T_RESTART|T_FAIL|tests/[\w/]+\.py)?::(\w+)(\[[\w:-]+\])?|\b(T_MAIN|T_RESTART|T_FAIL)\b"
                 r"|(tests/[\w/]+\.py)\b(?!::)")


def _rows() -> list[tuple[int, str, str]]:
    rows: list[tuple[int, str, str]] = []
    for number, line in enumerate(DOC.read_text().splitlines(), 1):
        if not line.startswith("|") or set(line) <= set("|- "):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells[-1] == "test":
            continue
        rows.append((number, cells[0], cells[-1]))
    return rows


def _defined(path: str, name: str | None, param: str | None) -> str | None:
    """What is wrong with the reference, or None."""
    file = ROOT / path
    if not file.is_file():
        return f"{path} does not exist"
    text = file.read_text()
    if name is None:
        return None if "def failures(" in text else f"{path} has no fixture `failures`"
    if not re.search(rf"^(async )?def {re.escape(name)}\(", text, re.M):
        return f"{path} defines no {name}"
    if param and param.strip("[]") not in text:
        return f"{path}::{name} has no parameter {param}"
    return None


def _problems() -> list[str]:
    problems: list[str] = []
    previous: tuple[str, str | None] | None = None
    for number, scenario, cell in _rows():
        where = f"docs/restart-behaviour.md:{number} ({scenario[:50]})"
        if "not covered" in cell.lower() or not (REF.search(cell) or "same test" in cell or "...[" in cell):
            if scenario not in KNOWN_UNCOVERED:
                problems.append(f"{where}: names no test")
            continue
        path: str | None = previous[0] if previous else None
        found: tuple[str, str | None] | None = None
        if "same test" in cell or cell.startswith("`...["):
            if previous is None:
                problems.append(f"{where}: 'same test' with no row above")
                continue
            found = previous
            for param in re.findall(r"\.\.\.(\[[\w:-]+\])", cell):
                if (error := _defined(previous[0], previous[1], param)) is not None:
                    problems.append(f"{where}: {error}")
        for m in REF.finditer(cell):
            prefix, name, param, alias, bare = m.groups()
            if bare:
                if not (ROOT / bare).is_file():
                    problems.append(f"{where}: {bare} does not exist")
                path = bare
                continue
            if alias:
                path, name = ALIASES[alias]
            elif prefix == "T_RIG":
                path = RIG
            elif prefix in ALIASES:
                path = ALIASES[prefix][0]
            elif prefix:
                path = prefix
            if path is None:
                problems.append(f"{where}: ::{name} with no file before it")
                continue
            if (error := _defined(path, name, param)) is not None:
                problems.append(f"{where}: {error}")
            found = found or (path, name)
        previous = found or previous
    return problems


def test_every_restart_row_names_a_test_that_exists() -> None:
    assert _problems() == []


def test_the_checker_catches_a_stale_path_and_an_uncovered_row(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    doc = tmp_path / "restart.md"
    doc.write_text(
        "| scenario | outcome | test |\n|---|---|---|\n"
        "| a | b | `tests/jobs/test_gone.py::test_x` |\n"
        "| c | d | not covered by a test |\n"
        f"| e | f | `{RIG}::test_no_such_test` |\n")
    monkeypatch.setattr(sys.modules[__name__], "DOC", doc)
    problems = _problems()
    assert len(problems) == 3, problems
    assert "tests/jobs/test_gone.py does not exist" in problems[0]
    assert "names no test" in problems[1]
    assert "defines no test_no_such_test" in problems[2]
