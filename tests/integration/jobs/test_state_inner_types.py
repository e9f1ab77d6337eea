"""Issue 15, item 12: a state file whose top level is valid but whose inner types are not (``"stops":
[1, 2]``, an intent that is a string, 100,000-deep nesting, a directory where the file should be)
crashed update_cnc_stoploss with a traceback (exit 1) while doctor said "state ok". Now every load
validates the whole document (kitefleet.state_schema): a real update_cnc_stoploss process exits 4
with one error line naming the place inside the document, the file and its ``.bak`` stay
byte-identical, and doctor fails the state row with the same problem. Real worker processes, the
real paper broker, real files."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from kitefleet.clock import IST
from kitefleet.exitcodes import ExitCode
from kitefleet.state import validation_problem
from tests.support.broker import RunningBroker, broker_factory  # noqa: F401 (fixture)
from tests.support.desk import Desk, open_desk

JOB = "update_cnc_stoploss"
SYMBOLS = ["INFY", "TCS"]


def _hostile(good: dict[str, Any]) -> list[tuple[str, bytes | None, str]]:
    """(name, file bytes or None for a directory, the text the one error line must carry)."""
    head = json.dumps({k: good[k] for k in ("schema_version", "user", "mode")})[:-1]
    bad_gtt = json.loads(json.dumps(good))
    bad_gtt["stops"]["INFY"]["gtt_id"] = "x"
    return [
        ("stops as a list", json.dumps({**good, "stops": [1, 2]}).encode(),
         "stops: expected an object, got a list"),
        ("an intent that is a string",
         json.dumps({**good, "intents": {**good["intents"], "ST0000000000000000XX": "sent"}}).encode(),
         'intents.ST0000000000000000XX: expected an object, got "sent"'),
        ("a gtt id that is text", json.dumps(bad_gtt).encode(),
         'stops.INFY.gtt_id: expected an integer or null, got "x"'),
        ("100,000-deep nesting", (head + ', "stops": ' + "[" * 100_000 + "]" * 100_000 + "}").encode(),
         "stops[0][0][0]"),
        ("a directory", None, "is a directory, not a file"),
    ]


def _put(path: Path, content: bytes | None) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()
    if content is None:
        path.mkdir()
        (path / "inside.txt").write_text("left alone\n")
    else:
        path.write_bytes(content)


def _snapshot(path: Path) -> bytes | dict[str, bytes]:
    if path.is_dir():
        return {p.name: p.read_bytes() for p in path.iterdir()}
    return path.read_bytes()


def _doctor_state_row(desk: Desk) -> tuple[int, dict[str, str]]:
    proc = desk.orchestrator("doctor", "--json")
    rows = json.loads(proc.stdout)["rows"]
    by_check = {r["check"]: r for r in rows if r["user"] == "Som"}
    assert by_check["intents"]["status"] == "n/a" and by_check["drift"]["status"] == "n/a", by_check
    return proc.returncode, by_check["state"]


def test_state_inner_types_are_validated_on_load(
        tmp_path: Path, broker_factory: Callable[..., RunningBroker]) -> None:  # noqa: F811
    desk = open_desk(tmp_path, broker_factory, {"Som": {}}, datetime(2026, 3, 4, 10, 5, tzinfo=IST), SYMBOLS)
    pick = tmp_path / "pick.json"
    pick.write_text(json.dumps(SYMBOLS), encoding="utf-8")
    desk.ok("Som", "place_orders_daily", "--from", str(pick))
    out = desk.ok("Som", JOB)
    # The entry run placed each stop at the fill (issue 19); the stop run keeps managing them.
    assert {a["symbol"] for a in out["actions"] if a.get("gtt_id")} == set(SYMBOLS)
    state_file = desk.home.state_file("Som")
    backup = state_file.with_name(state_file.name + ".bak")
    good_bytes = state_file.read_bytes()
    good = json.loads(good_bytes)
    assert validation_problem(good) is None  # what a real stop run writes passes the schema
    backup.write_bytes(good_bytes)

    for name, content, text in _hostile(good):
        _put(state_file, content)
        before, before_bak = _snapshot(state_file), backup.read_bytes()
        proc = desk.run("Som", JOB)
        assert proc.returncode == ExitCode.CONFIG == 4, (name, proc.returncode, proc.stderr)
        assert "Traceback" not in proc.stderr, (name, proc.stderr)
        errors = [line for line in proc.stderr.splitlines() if f"{JOB}: error:" in line]
        assert len(errors) == 1 and text in errors[0] and str(state_file) in errors[0], (name, proc.stderr)
        assert "\n" not in errors[0]
        assert _snapshot(state_file) == before and backup.read_bytes() == before_bak, name

        rc, row = _doctor_state_row(desk)
        assert rc == 1 and row["status"] == "fail" and text in row["detail"] and row["fix"], (name, row)
        assert _snapshot(state_file) == before and backup.read_bytes() == before_bak, name

    # Put back as it was: the job runs again, nothing to change.
    _put(state_file, good_bytes)
    assert desk.ok("Som", JOB)["sent"] == 0
