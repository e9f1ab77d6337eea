"""bench/run.py's pure parts: the dated section it appends and how a script is selected."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from bench.run import FILE_HEADER, SCRIPTS, Result, Script, append_section, format_section, select
from kitefleet.clock import IST


def _result(script: Script, status: str, stdout: str = "") -> Result:
    return Result(script, ["/x/python", f"bench/{script.name}.py", *script.args], status,
                  0 if status == "ok" else None, 12.3, stdout)


def test_section_has_date_machine_facts_and_each_table(tmp_path: Path) -> None:
    fanout, memory = SCRIPTS[0], SCRIPTS[1]
    results = [_result(fanout, "ok", "job users wall\nwhoami 1 0.23\n"), _result(memory, "missing")]
    facts = {"cores": "2", "python": "CPython 3.11.9"}
    section = format_section(results, facts, datetime(2026, 11, 26, 10, 30, tzinfo=IST))
    assert section.startswith("## 2026-11-26 10:30 IST: 1 of 2 benchmarks\n")
    assert "- cores: 2\n- python: CPython 3.11.9\n" in section
    assert "```text\njob users wall\nwhoami 1 0.23\n```" in section
    assert "`python bench/bench_fanout.py`: ok, 12 s" in section
    assert "bench/bench_memory.py does not exist yet" in section

    path = tmp_path / "BENCHMARKS.md"
    append_section(path, section)
    append_section(path, section.replace("10:30", "11:00"))
    text = path.read_text(encoding="utf-8")
    assert text.startswith(FILE_HEADER)
    assert text.count(FILE_HEADER) == 1
    assert text.index("10:30 IST") < text.index("11:00 IST")  # appended, earlier sections untouched


def test_select_by_name_short_name_or_number() -> None:
    assert [s.name for s in select("state,1,bench_orders.py")] == ["bench_fanout", "bench_state", "bench_orders"]
    assert len(select(None)) == len(SCRIPTS)
    with pytest.raises(SystemExit, match="unknown benchmark"):
        select("nope")
