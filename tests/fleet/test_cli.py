"""Operator mistakes get one clear line and exit 2, the same way in every command, before anything
starts: unknown users, unknown jobs, job arguments without ``--``, misnamed env files."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from fleet import cli
from fleet.validate import job_args_hint, misnamed_env_warnings, require_job, require_user, select_users
from kitefleet.errors import UsageError
from kitefleet.exitcodes import ExitCode
from kitefleet.home import Home
from tests.support.homes import make_home, write_env

UNKNOWN = "unknown user 'Nobody': no env/Nobody.env; users: Sai, Som"


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Home:
    home = make_home(tmp_path / "home")
    write_env(home, "Som")
    write_env(home, "Sai")
    monkeypatch.setenv("KITEFLEET_HOME", str(home.root))
    return home


def main(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = cli.main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


# --- unknown users ---------------------------------------------------------------------------------
@pytest.mark.parametrize("argv", [
    ("run", "Nobody", "whoami"),
    ("run-all", "--users", "Nobody"),
    ("run-all", "whoami", "--users", "Som,Nobody"),
    ("pause", "Nobody"),
    ("resume", "Nobody"),
    ("login", "Nobody"),
    ("stop", "Nobody"),
    ("doctor", "--users", "Nobody"),
    ("resolve-intent", "Nobody"),
    ("exec", "Nobody"),
])
def test_every_command_refuses_an_unknown_user_alike(home: Home, capsys: pytest.CaptureFixture[str],
                                                     argv: tuple[str, ...]) -> None:
    rc, out, err = main(capsys, *argv)
    assert rc == ExitCode.USAGE
    assert err.startswith(f"orchestrator: error: {UNKNOWN}")
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert out == ""
    assert not home.user_data_dir("Nobody").exists() and not home.user_logs_dir("Nobody").exists()


def test_select_users_order_duplicates_and_all_unknown_names_at_once(home: Home) -> None:
    assert select_users(home, None) == ["Sai", "Som"]
    assert select_users(home, " Som, Sai ,Som") == ["Som", "Sai"]
    with pytest.raises(UsageError, match=r"unknown users 'A', 'B': no env/A.env or env/B.env; users: Sai, Som"):
        select_users(home, "A,Som,B")
    with pytest.raises(UsageError, match="--users names no user"):
        select_users(home, " , ")
    with pytest.raises(UsageError, match="invalid user name"):
        select_users(home, "../etc")
    with pytest.raises(UsageError, match=r"did you mean Som\?"):
        require_user(home, "som")


def test_a_broken_env_file_is_a_known_user_and_no_users_says_how_to_add_one(home: Home, tmp_path: Path) -> None:
    home.env_file("Som").write_text("TRADER_MODE=bogus\n", encoding="utf-8")
    assert require_user(home, "Som") == "Som"
    home.env_file("Sai").unlink()
    home.env_file("Sai").symlink_to(tmp_path / "gone.env")  # dangling: the worker says what is wrong
    assert require_user(home, "Sai") == "Sai"
    empty = make_home(tmp_path / "empty")
    with pytest.raises(UsageError, match=r"there are no users yet .*copy env/example\.env"):
        select_users(empty, None)
    with pytest.raises(UsageError, match=r"unknown user 'Som'.*no users yet"):
        require_user(empty, "Som")


def test_misnamed_env_files_are_left_out_with_a_warning(home: Home, capsys: pytest.CaptureFixture[str]) -> None:
    (home.env_dir / "bad name.env").write_text("TRADER_MODE=paper\n", encoding="utf-8")
    assert select_users(home, None) == ["Sai", "Som"]
    [warning] = misnamed_env_warnings(home)
    assert warning.startswith("env/bad name.env: 'bad name' is not a valid user name") and "rename" in warning
    rc, out, err = main(capsys, "pause")  # used to fail on the misnamed file
    assert rc == 0 and "Sai" in out and "Som" in out and "bad name" not in out
    assert "env/bad name.env" in err
    rc, out, err = main(capsys, "pause", "--all", "--json")
    assert rc == 0 and '"Sai"' in out and "env/bad name.env" in err
    assert not (home.data_dir / "bad name").exists()


# --- jobs and their arguments ----------------------------------------------------------------------
@pytest.mark.parametrize("argv", [("run", "Som", "nojob"), ("run-all", "nojob"),
                                  ("run-all", "nojob", "--users", "Som")])
def test_unknown_job_is_refused_before_any_process_starts(home: Home, capsys: pytest.CaptureFixture[str],
                                                          argv: tuple[str, ...]) -> None:
    rc, out, err = main(capsys, *argv)
    assert rc == ExitCode.USAGE and out == ""
    assert err.startswith("orchestrator: error: unknown job 'nojob'; jobs: ") and "whoami" in err
    assert not home.user_logs_dir("Som").exists()
    assert require_job("whoami") == "whoami"


@pytest.mark.parametrize(("argv", "suggestion"), [
    (("run", "Som", "whoami", "--hold", "1"), "orchestrator.py run Som whoami -- --hold 1"),
    (("run-all", "whoami", "--max-parallel", "1", "--hold", "1"),
     "orchestrator.py run-all whoami --max-parallel 1 -- --hold 1"),
    (("run", "Som", "pattern_daily", "--top", "5", "--", "--dry-run"),
     "orchestrator.py run Som pattern_daily -- --top 5 --dry-run"),
])
def test_job_arguments_without_dashes_get_the_command_to_type(home: Home, capsys: pytest.CaptureFixture[str],
                                                             argv: tuple[str, ...], suggestion: str) -> None:
    rc, out, err = main(capsys, *argv)
    assert rc == ExitCode.USAGE and out == ""
    assert err.strip().endswith(f"job arguments go after --: {suggestion}")
    assert len(err.strip().splitlines()) == 1
    # The suggestion parses cleanly.
    words = shlex.split(suggestion)[1:]
    _args, extras = cli.build_parser().parse_known_args(words[: words.index("--")])
    assert extras == []


def test_other_commands_keep_argparse_s_message(home: Home, capsys: pytest.CaptureFixture[str]) -> None:
    rc, _out, err = main(capsys, "users", "--bogus")
    assert rc == ExitCode.USAGE and "unrecognized arguments: --bogus" in err and "go after --" not in err
    assert job_args_hint("users", ["users", "--bogus"], ["--bogus"]) is None


def test_run_all_max_parallel_must_be_positive(home: Home, capsys: pytest.CaptureFixture[str]) -> None:
    rc, _out, err = main(capsys, "run-all", "whoami", "--max-parallel", "0")
    assert rc == ExitCode.USAGE and "--max-parallel 0" in err


# --- login -----------------------------------------------------------------------------------------
def test_login_request_token_help_and_usage(home: Home, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["login", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "visible in ps and the shell history" in text and "'-'" in text
    rc, _out, err = main(capsys, "login", "Som", "--request-token", " ")
    assert rc == ExitCode.USAGE and "--request-token is empty" in err
    rc, _out, err = main(capsys, "login", "--all", "--request-token", "tok")
    assert rc == ExitCode.USAGE and "--request-token - " in err
