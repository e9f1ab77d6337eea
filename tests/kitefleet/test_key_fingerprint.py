"""kitefleet/key_fingerprint.py: a record is not written for an env file edited within a timestamp tick."""

from __future__ import annotations

import os
from pathlib import Path

from kitefleet import key_fingerprint
from kitefleet.home import Home
from kitefleet.settings import api_key_fingerprint
from tests.support.homes import write_env


def test_no_record_for_an_env_file_edited_within_a_timestamp_tick(tmp_path: Path) -> None:
    home = Home(tmp_path)
    path = write_env(home, "Som")
    st = os.lstat(path)
    fp = api_key_fingerprint("keysom0001")
    read_now = max(st.st_mtime_ns, st.st_ctime_ns)
    assert not key_fingerprint.write_record(home, "Som", fp, st, read_now)
    assert not home.key_fingerprint_file("Som").exists()
    later = read_now + key_fingerprint.COARSE_MARGIN_NS + 1
    assert key_fingerprint.write_record(home, "Som", fp, st, later)
    assert key_fingerprint.recorded_fingerprint(home, "Som") == fp
    assert not key_fingerprint.write_record(home, "Som", fp, st, later)  # unchanged: not rewritten
    # The file changed between the stat and the end of the read: no record for either version.
    write_env(home, "Som", api_key="keysai0001")
    assert not key_fingerprint.write_record(home, "Som", api_key_fingerprint("keysai0001"), st, later)
    assert key_fingerprint.recorded_fingerprint(home, "Som") is None
