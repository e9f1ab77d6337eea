"""Issue 15 item 1, the cost of the account check: ``run``/``run-all``/``exec`` started one
``whoami`` per user before anything ran (N^2 probes when supervisord starts N users). Each user's
own process now records its key's fingerprint with the env file's identity
(``data/<User>/key_fingerprint.json``), and the check probes only users whose env file changed
since. Probes are counted in the real per-user logs (``logs/<User>/whoami.log``)."""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path

import pytest

from kitefleet import key_fingerprint
from kitefleet.exitcodes import ExitCode
from kitefleet.home import Home
from kitefleet.settings import api_key_fingerprint
from tests.support.fleet import fleet_home, orchestrator

USERS = ("Som", "Sai", "Ravi")
PAIR = "env/Sai.env and env/Som.env are one Kite account"


def whoami_runs(home: Home, user: str) -> int:
    log = home.user_logs_dir(user) / "whoami.log"
    return log.read_text().count("whoami: pid") if log.exists() else 0


def let_env_files_settle(home: Home) -> None:
    """A record is written only for an env file older than a timestamp tick (racy edits): wait out
    the rest of that margin, computed from the files' own timestamps."""
    newest = max(max(os.lstat(home.env_file(u)).st_mtime_ns, os.lstat(home.env_file(u)).st_ctime_ns)
                 for u in USERS)
    wait_ns = newest + key_fingerprint.RACY_MARGIN_NS - time.time_ns()
    if wait_ns > 0:
        time.sleep(wait_ns / 1e9 + 0.01)


@pytest.fixture
def warm(tmp_path: Path) -> tuple[Home, str | None]:
    """Three users whose processes have each run once since their env files were written."""
    home, clock = fleet_home(tmp_path / "home", {u: {} for u in USERS})
    let_env_files_settle(home)
    out = orchestrator(home, "run-all", "whoami", clock=clock)
    assert out.returncode == ExitCode.OK, out.stdout + out.stderr
    return home, clock


def test_each_users_process_writes_its_key_fingerprint_record(warm: tuple[Home, str | None]) -> None:
    home, _ = warm
    for user in USERS:
        path = home.key_fingerprint_file(user)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        doc = json.loads(path.read_text())
        assert doc["user"] == user
        assert doc["api_key_fingerprint"] == api_key_fingerprint(f"key{user.lower()}0001")
        assert doc["env_file"]["ino"] == os.lstat(home.env_file(user)).st_ino
        assert "S3CR3T" not in path.read_text() and f"key{user.lower()}0001" not in path.read_text()


def test_a_fresh_record_means_no_probe(warm: tuple[Home, str | None]) -> None:
    home, clock = warm
    before = {u: whoami_runs(home, u) for u in USERS}
    out = orchestrator(home, "run", "Som", "whoami", clock=clock)
    assert out.returncode == ExitCode.OK, out.stderr
    out = orchestrator(home, "run-all", "whoami", "--users", "Sai", clock=clock)
    assert out.returncode == ExitCode.OK, out.stderr
    # Only the jobs themselves ran: no account probe of anybody.
    assert {u: whoami_runs(home, u) - before[u] for u in USERS} == {"Som": 1, "Sai": 1, "Ravi": 0}


def test_an_edited_env_file_is_caught_at_once_despite_an_old_record(warm: tuple[Home, str | None]) -> None:
    home, clock = warm
    path = home.env_file("Sai")
    old = os.lstat(path)
    # The nastiest edit: Som's key, same length, same file, same size, old mtime put back; only
    # the ctime (which no user call can set) tells.
    path.write_text(path.read_text().replace("keysai0001", "keysom0001"))
    os.utime(path, ns=(old.st_atime_ns, old.st_mtime_ns))
    now = os.lstat(path)
    assert (now.st_ino, now.st_size, now.st_mtime_ns) == (old.st_ino, old.st_size, old.st_mtime_ns)
    before = {u: whoami_runs(home, u) for u in USERS}
    out = orchestrator(home, "run", "Som", "whoami", clock=clock)
    assert out.returncode == ExitCode.CONFIG, out.stdout + out.stderr
    assert PAIR in out.stderr
    # Sai was probed (its old record no longer matches), nobody else was.
    assert {u: whoami_runs(home, u) - before[u] for u in USERS} == {"Som": 0, "Sai": 1, "Ravi": 0}
    # Later checks use the record that probe wrote (or probe again while the edit is too fresh).
    for argv in (("run", "Sai", "whoami"), ("run-all", "whoami")):
        out = orchestrator(home, *argv, clock=clock)
        assert out.returncode == ExitCode.CONFIG, out.stdout + out.stderr
        assert PAIR in out.stderr
    assert whoami_runs(home, "Ravi") == before["Ravi"]  # no job of the refused run-all ran
    out = orchestrator(home, "run", "Ravi", "whoami", clock=clock)  # Ravi is not part of it
    assert out.returncode == ExitCode.OK, out.stderr


def test_a_record_that_does_not_match_or_parse_means_a_probe(warm: tuple[Home, str | None]) -> None:
    home, _ = warm
    assert key_fingerprint.recorded_fingerprint(home, "Sai") == api_key_fingerprint("keysai0001")
    record = home.key_fingerprint_file("Sai")
    good = record.read_text()
    for bad in ("{", "[]", good.replace('"Sai"', '"Som"'), good.replace('"version": 1', '"version": 2'),
                good.replace(api_key_fingerprint("keysai0001"), "keys\nm:0123456789ab"), "x" * 10_000):
        record.write_text(bad)
        assert key_fingerprint.recorded_fingerprint(home, "Sai") is None, bad
    record.unlink()
    assert key_fingerprint.recorded_fingerprint(home, "Sai") is None


def test_an_env_file_replaced_by_a_link_is_not_matched_by_its_old_record(warm: tuple[Home, str | None]) -> None:
    home, clock = warm
    home.env_file("Sai").unlink()
    os.symlink("Som.env", home.env_file("Sai"))
    assert key_fingerprint.recorded_fingerprint(home, "Sai") is None
    out = orchestrator(home, "run", "Som", "whoami", clock=clock)
    assert out.returncode == ExitCode.CONFIG and PAIR in out.stderr


def test_a_tampered_record_is_trusted_while_the_stat_matches(warm: tuple[Home, str | None]) -> None:
    """The documented decision (kitefleet/key_fingerprint.py): only the fleet's OS user can write
    data/<User>/, and that user can edit env/ just as well."""
    home, _ = warm
    record = home.key_fingerprint_file("Sai")
    doc = json.loads(record.read_text())
    doc["api_key_fingerprint"] = api_key_fingerprint("keysom0001")
    record.write_text(json.dumps(doc))
    assert key_fingerprint.recorded_fingerprint(home, "Sai") == api_key_fingerprint("keysom0001")


def test_supervisor_conf_leaves_every_record_fresh_so_a_start_probes_nobody(tmp_path: Path) -> None:
    """supervisord starting N programs (``exec``) after ``supervisor-conf`` costs no probe at all:
    its ``summary --settings-only`` processes are the users' own and write their records (``run`` is
    checked here: ``exec`` runs the same check, then becomes the scheduler)."""
    home, clock = fleet_home(tmp_path / "home", {u: {} for u in USERS})
    let_env_files_settle(home)
    assert orchestrator(home, "supervisor-conf").returncode == ExitCode.OK
    assert all(key_fingerprint.recorded_fingerprint(home, u) for u in USERS)
    out = orchestrator(home, "run", "Som", "whoami", clock=clock)
    assert out.returncode == ExitCode.OK, out.stderr
    assert {u: whoami_runs(home, u) for u in USERS} == {"Som": 1, "Sai": 0, "Ravi": 0}
