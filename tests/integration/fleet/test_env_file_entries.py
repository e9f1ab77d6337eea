"""Issue 15 item 17: user names match the whole string (``env/Som\\n.env`` became a user); a FIFO,
folder or dangling symlink named ``env/<U>.env`` gets a row in ``users`` and a (FATAL) program in
``supervisor-conf`` as README promises for a broken file, instead of vanishing; an env file over
the size cap is refused with one line before it is read."""

from __future__ import annotations

import json
import os
from pathlib import Path

from kitefleet.exitcodes import ExitCode
from kitefleet.home import Home
from kitefleet.users import ENV_FILE_MAX_BYTES, list_users
from tests.support.fleet import fleet_home, orchestrator


def test_env_file_named_with_a_trailing_newline_is_not_a_user(tmp_path: Path) -> None:
    home, _ = fleet_home(tmp_path / "home", {"Som": {}})
    (home.env_dir / "Som.env").rename(home.env_dir / "Som\n.env")
    out = orchestrator(home, "users", "--json")
    assert out.returncode == ExitCode.CONFIG
    (row,) = json.loads(out.stdout)
    assert row["user"] == "Som\n" and row["valid"] is False and "invalid user name 'Som\\n'" in row["error"]
    out = orchestrator(home, "run", "Som\n", "whoami")
    assert out.returncode == ExitCode.USAGE and "invalid user name" in out.stderr


def _broken_entries(home: Home) -> dict[str, str]:
    os.mkfifo(home.env_file("Fifo"))
    home.env_file("Folder").mkdir()
    os.symlink("nowhere.env", home.env_file("Dangling"))
    return {"Fifo": "env/Fifo.env: is a FIFO, not a regular file",
            "Folder": "env/Folder.env: is a folder, not a regular file",
            "Dangling": "env/Dangling.env: is a symbolic link"}


def test_fifo_folder_and_dangling_symlink_env_files_get_a_users_row(tmp_path: Path) -> None:
    home, _ = fleet_home(tmp_path / "home", {"Som": {}})
    expected = _broken_entries(home)
    assert list_users(home) == sorted(["Som", *expected])
    out = orchestrator(home, "users", "--json")  # a FIFO must not hang it
    assert out.returncode == ExitCode.CONFIG
    rows = {r["user"]: r for r in json.loads(out.stdout)}
    assert rows["Som"]["valid"] is True
    for user, start in expected.items():
        assert rows[user]["valid"] is False and rows[user]["error"].startswith(start), rows[user]
        assert "\n" not in rows[user]["error"] and rows[user]["exit_code"] == ExitCode.CONFIG


def test_fifo_folder_and_dangling_symlink_env_files_get_a_program(tmp_path: Path) -> None:
    home, _ = fleet_home(tmp_path / "home", {"Som": {}})
    expected = _broken_entries(home)
    out = orchestrator(home, "supervisor-conf")
    assert out.returncode == ExitCode.OK, out.stderr
    conf = (home.generated_conf_dir / "trader.conf").read_text()
    for user, start in expected.items():
        assert f"[program:{user}]" in conf
        assert f"warning: {user}: {start}" in out.stderr
    out = orchestrator(home, "run", "Fifo", "whoami")
    assert out.returncode == ExitCode.CONFIG and expected["Fifo"] in out.stderr


def test_env_file_over_the_size_cap_is_refused(tmp_path: Path) -> None:
    home, _ = fleet_home(tmp_path / "home", {"Som": {}})
    with home.env_file("Som").open("a") as f:
        f.write("# padding\n" * (ENV_FILE_MAX_BYTES // 10 + 1))
    out = orchestrator(home, "run", "Som", "whoami")
    assert out.returncode == ExitCode.CONFIG
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "env/Som.env: " in lines[0] and "more than the 64 KiB" in lines[0]
