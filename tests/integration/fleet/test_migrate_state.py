"""migrate-state end to end on the composed legacy fixtures, through the real CLI entry, real files,
real StateStore locks. Fixture story (tests/support/data/legacy):

    ABCLTD      ticker only in Sai's orders file                      -> Sai
    EPL         ticker only in Sai's *consolidated* orders file       -> Sai
    XYZIND      ticker only in Som's orders; unknown key custom_note  -> Som, every field kept
    SYNCCO      ticker in Sai's (failed) and Som's files, but its confirmation is the order id of
                Som's server-sync record                              -> Som, by order id
    JAGSNPHARM  the 2025-05-29 merged record: in Sai's and Som's      -> unassigned (two users)
    ORPHAN      in no order file                                      -> unassigned (none)
    MOMSTOCK    only in Mom's orders, but Mom has no env file         -> unassigned (no env file)
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from fleet.cli import main
from kitefleet.exitcodes import ExitCode
from kitefleet.home import Home
from kitefleet.state import StateStore
from tests.support.homes import make_home, write_env
from tests.support.legacy import migrate, snapshot


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Home:
    h = make_home(tmp_path / "home")
    write_env(h, "Sai", mode="live")
    write_env(h, "Som", mode="paper")
    write_env(h, "Ravi", mode="paper")  # a user with no legacy positions: must stay untouched
    monkeypatch.setenv("KITEFLEET_HOME", str(h.root))
    return h


def test_attribution_backup_and_unassigned(home: Home, legacy_copy: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    legacy_file = legacy_copy / "trading_state.json"
    before = legacy_file.read_bytes()
    mtime = legacy_file.stat().st_mtime_ns
    rc, report, _ = migrate(legacy_copy, capsys)
    assert rc == ExitCode.OK, report
    assert (report["positions_read"], report["written"], report["unassigned"], report["conflicts"]) == (7, 4, 3, 0)
    assert report["conservation_ok"] is True

    sai = StateStore(home, "Sai", "live").read()
    som = StateStore(home, "Som", "paper").read()
    assert (sai["user"], sai["mode"], som["user"], som["mode"]) == ("Sai", "live", "Som", "paper")
    assert set(sai["positions"]) == {"ABCLTD", "EPL"}
    assert set(som["positions"]) == {"XYZIND", "SYNCCO"}
    assert som["positions"]["SYNCCO"]["legacy_migration"]["attributed_by"] == "order_id"
    assert sai["positions"]["EPL"]["legacy_migration"]["attributed_by"] == "ticker"
    # Every legacy field is kept, known or not.
    legacy = json.loads(before)
    for ticker, user_state in (("XYZIND", som), ("ABCLTD", sai)):
        kept = {k: v for k, v in user_state["positions"][ticker].items() if k != "legacy_migration"}
        assert kept == legacy["positions"][ticker]
    assert som["positions"]["XYZIND"]["custom_note"].startswith("hand-added")
    assert not home.state_file("Ravi").exists()

    # The legacy file is untouched; its byte-for-byte copy sits in data/migration.
    assert legacy_file.read_bytes() == before and legacy_file.stat().st_mtime_ns == mtime
    backups = list((home.data_dir / "migration").glob("trading_state.legacy-*.json"))
    assert len(backups) == 1 and backups[0].read_bytes() == before
    assert backups[0].name[len("trading_state.legacy-"):-5].replace("_", "").isdigit()

    unassigned_files = list((home.data_dir / "migration").glob("unassigned_*.json"))
    assert len(unassigned_files) == 1
    doc = json.loads(unassigned_files[0].read_text())
    assert set(doc["positions"]) == {"JAGSNPHARM", "ORPHAN", "MOMSTOCK"}
    assert doc["positions"]["JAGSNPHARM"]["candidates"] == ["Sai", "Som"]
    assert "no valid env file" in doc["positions"]["MOMSTOCK"]["reason"]
    assert "no user's order records" in doc["positions"]["ORPHAN"]["reason"]
    assert doc["positions"]["ORPHAN"]["record"] == legacy["positions"]["ORPHAN"]
    assert doc["legacy_top_level"]["unknown_legacy_key"] == {"written_by": "some other tool"}
    assert doc["legacy_sha256"] == hashlib.sha256(before).hexdigest()
    assert os.stat(unassigned_files[0]).st_mode & 0o077 == 0


def test_second_run_changes_nothing(home: Home, legacy_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert migrate(legacy_copy, capsys)[0] == ExitCode.OK
    first = snapshot(home.data_dir)
    rc, report, _ = migrate(legacy_copy, capsys)
    assert rc == ExitCode.OK
    assert (report["written"], report["already_migrated"], report["unassigned"]) == (0, 4, 3)
    assert report["conservation_ok"] is True
    assert snapshot(home.data_dir) == first


def test_second_run_after_a_worker_updated_a_migrated_position(home: Home, legacy_copy: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    assert migrate(legacy_copy, capsys)[0] == ExitCode.OK
    with StateStore(home, "Sai", "live").transaction() as state:
        state["positions"]["ABCLTD"]["stop_loss"] = 490.0  # the new system moved the stop since
    rc, report, _ = migrate(legacy_copy, capsys)
    assert rc == ExitCode.OK and report["written"] == 0 and report["conflicts"] == 0
    assert StateStore(home, "Sai", "live").read()["positions"]["ABCLTD"]["stop_loss"] == 490.0


def test_dry_run_writes_nothing(home: Home, legacy_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = snapshot(home.root)
    rc, report, _ = migrate(legacy_copy, capsys, "--dry-run")
    assert rc == ExitCode.OK and report["dry_run"] is True and report["written"] == 4
    assert snapshot(home.root) == before


def test_existing_newer_entries_are_kept_as_conflicts(home: Home, legacy_copy: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    with StateStore(home, "Som", "paper").transaction() as state:
        state["positions"]["XYZIND"] = {"type": "LONG", "quantity": 1, "product_type": "CNC"}
        state["positions"]["NEWONE"] = {"type": "LONG", "quantity": 7, "product_type": "CNC"}
        state["custom_top_level"] = {"keep": True}
    rc, report, _ = migrate(legacy_copy, capsys)
    assert rc == ExitCode.OK and report["conservation_ok"] is True
    assert report["conflicts"] == 1 and report["written"] == 3
    som = StateStore(home, "Som", "paper").read()
    assert som["positions"]["XYZIND"] == {"type": "LONG", "quantity": 1, "product_type": "CNC"}
    assert som["positions"]["NEWONE"]["quantity"] == 7 and som["custom_top_level"] == {"keep": True}
    assert "SYNCCO" in som["positions"]
    doc = json.loads(next((home.data_dir / "migration").glob("unassigned_*.json")).read_text())
    assert doc["positions"]["XYZIND"]["status"] == "conflict"


def test_state_of_another_mode_stops_before_any_write(home: Home, legacy_copy: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    with StateStore(home, "Som", "live").transaction():
        pass  # Som's state file now says live, while env/Som.env says paper
    before = snapshot(home.root)
    rc, _, err = migrate(legacy_copy, capsys)
    assert rc == ExitCode.CONFIG and "nothing was written" in err
    assert snapshot(home.root) == before


def test_table_report(home: Home, legacy_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["migrate-state", "--legacy", str(legacy_copy / "trading_state.json"),
               "--orders-dir", str(legacy_copy / "Current_Orders")])
    out = capsys.readouterr().out
    assert rc == ExitCode.OK
    assert "conservation: OK" in out and "unassigned: JAGSNPHARM" in out
    assert "positions read" in out and "conflicts" in out


def test_migrate_state_output_is_owned_by_the_bot(home: Home, legacy_copy: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 18: what migrate-state brings in is the bot's (``migrated`` lots), so its stops and
    exits keep covering it under MANAGE_SCOPE=own; a second run adds no second lot."""
    rc, _, _ = migrate(legacy_copy, capsys)
    assert rc == ExitCode.OK
    som = StateStore(home, "Som", "paper").read()
    lots = som["ledger"]["lots"]
    held = {s for s, p in som["positions"].items() if int(p.get("quantity") or 0) > 0}
    assert set(lots) == held == {"XYZIND", "SYNCCO"}
    for sym, (lot,) in lots.items():
        assert lot["source"] == "migrated" and lot["quantity"] == int(som["positions"][sym]["quantity"])
    migrate(legacy_copy, capsys)
    assert StateStore(home, "Som", "paper").read()["ledger"]["lots"] == lots
