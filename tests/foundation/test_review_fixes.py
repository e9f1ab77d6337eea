"""Review findings on secrets and isolation, each pinned by a test that fails without its fix:

* an env file's errors never echo a line that may be a secret (a token pasted alone, an unknown
  key that is no typo) nor the API key's value (at most its first 4 characters);
* job arguments cannot switch the user a process serves (a second ``--user``, ``--user=``, an
  abbreviation such as ``--us``), neither through the launcher nor at the worker itself;
* a ``KITEFLEET_HOME`` that is not a folder is a configuration error (exit 4), never created;
* ``describe()`` redacts before it truncates.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kitefleet.errors import ConfigError, UsageError
from kitefleet.exitcodes import ExitCode
from kitefleet.home import PROJECT_ROOT as HOME_PROJECT_ROOT
from kitefleet.home import Home
from kitefleet.launcher import build_child_env, worker_argv
from kitefleet.settings import load_settings
from tests.support.homes import PROJECT_ROOT, child_env, make_home, write_env

GOOD = "TRADER_MODE=paper\nKITE_API_KEY=abcd1234\nKITE_API_SECRET=s3cr3t-value\n"
PASTED = "SECRETPASTEDALONE999"


def _refusal(tmp_path: Path, text: str, user: str = "Som") -> str:
    home = make_home(tmp_path)
    path = home.env_file(user)
    path.write_text(text)
    path.chmod(0o600)
    with pytest.raises(ConfigError) as err:
        load_settings(home, user)
    message = str(err.value)
    assert "\n" not in message
    return message


# --- 1. env-file errors never echo what may be a secret --------------------------------------------
def test_a_token_pasted_alone_on_a_line_is_not_echoed(tmp_path: Path) -> None:
    message = _refusal(tmp_path, GOOD + PASTED + "\n")
    assert PASTED not in message
    assert "line 4: no '='" in message and "not shown" in message


def test_an_unknown_key_is_named_only_when_it_is_a_typo(tmp_path: Path) -> None:
    text = GOOD + "KITE_API_KEYY=x\nkite_api_secrt=y\nAbCdEf0123456789XyZ=zz\nTOKEN_abcdef0123456=1\n"
    message = _refusal(tmp_path, text)
    assert "line 4: unknown key KITE_API_KEYY (did you mean KITE_API_KEY?)" in message
    assert "line 5: unknown key kite_api_secrt (did you mean KITE_API_SECRET?)" in message
    assert "line 6: unknown key (not shown: it may be a secret)" in message
    assert "line 7: unknown key (not shown: it may be a secret)" in message
    assert "AbCdEf0123456789XyZ" not in message and "abcdef0123456" not in message


def test_a_bare_line_that_looks_like_a_typo_is_still_not_echoed(tmp_path: Path) -> None:
    # Without '=' the line is the whole text the person pasted: never shown, even if key-like.
    message = _refusal(tmp_path, GOOD + "KITE_API_KEYY\n")
    assert "KITE_API_KEYY" not in message and "line 4: no '='" in message


def test_the_api_key_value_is_never_shown(tmp_path: Path) -> None:
    message = _refusal(tmp_path, "TRADER_MODE=paper\nKITE_API_KEY=FULL KEYBBBB2222\nKITE_API_SECRET=x\n")
    assert "KITE_API_KEY (line 2) contains whitespace (value not shown)" in message
    assert "FULL" not in message and "KEYBBBB2222" not in message
    short = _refusal(tmp_path / "short", "TRADER_MODE=paper\nKITE_API_KEY=ab cd\nKITE_API_SECRET=x\n")
    assert "KITE_API_KEY (line 2) contains whitespace" in short and "ab cd" not in short


def test_secret_values_are_never_shown(tmp_path: Path) -> None:
    message = _refusal(tmp_path, "TRADER_MODE=live\nKITE_API_KEY=abcd1234\nKITE_API_SECRET=sec ret9999\n"
                                 "KITE_ACCESS_TOKEN=tok en8888\n")
    assert "KITE_API_SECRET (line 3) contains whitespace" in message
    assert "KITE_ACCESS_TOKEN (line 4) contains whitespace" in message
    assert "9999" not in message and "8888" not in message


def test_the_worker_and_users_never_print_a_pasted_token(tmp_path: Path) -> None:
    home = make_home(tmp_path)
    write_env(home, "Som")
    with home.env_file("Som").open("a") as f:
        f.write(PASTED + "\nAbCdEf0123456789XyZ=zz\n")
    worker = subprocess.run([sys.executable, "-m", "workers", "whoami", "--user", "Som"], cwd=PROJECT_ROOT,
                            env=child_env(home), capture_output=True, text=True, timeout=60)
    assert worker.returncode == ExitCode.CONFIG
    users = subprocess.run([sys.executable, str(PROJECT_ROOT / "orchestrator.py"), "users"],
                           env=child_env(home), capture_output=True, text=True, timeout=60)
    assert users.returncode == ExitCode.CONFIG
    for proc in (worker, users):
        out = proc.stdout + proc.stderr
        assert "env/Som.env" in out and "not shown" in out
        assert PASTED not in out and "AbCdEf0123456789XyZ" not in out


# --- 3. job arguments cannot switch the user --------------------------------------------------------
@pytest.fixture
def two_users(tmp_path: Path) -> Home:
    home = make_home(tmp_path / "home")
    write_env(home, "Som", api_key="somkey11111")
    write_env(home, "Sai", api_key="saikey22222")
    return home


SWITCHES = [["--user", "Sai"], ["--user=Sai"], ["--us", "Sai"], ["--use=Sai"]]


def _never_sai(proc: subprocess.CompletedProcess[str]) -> None:
    out = proc.stdout + proc.stderr
    assert '"user":"Sai"' not in out and "saik" not in out and "Traceback" not in out


@pytest.mark.parametrize("switch", SWITCHES, ids=["space", "equals", "abbrev", "abbrev-equals"])
def test_the_worker_refuses_a_second_user(two_users: Home, switch: list[str]) -> None:
    proc = subprocess.run([sys.executable, "-m", "workers", "whoami", "--user", "Som", *switch],
                          cwd=PROJECT_ROOT, env=build_child_env(child_env(two_users)), capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == ExitCode.USAGE, proc.stdout + proc.stderr
    _never_sai(proc)
    if switch[0].startswith("--user"):
        assert "given twice (Som and Sai)" in proc.stderr


@pytest.mark.parametrize("switch", SWITCHES[:3], ids=["space", "equals", "abbrev"])
def test_run_with_job_args_naming_a_user_exits_2(two_users: Home, switch: list[str]) -> None:
    proc = subprocess.run([sys.executable, str(PROJECT_ROOT / "orchestrator.py"), "run", "Som", "whoami",
                           "--", *switch], env=child_env(two_users), capture_output=True, text=True, timeout=60)
    assert proc.returncode == ExitCode.USAGE, proc.stdout + proc.stderr
    _never_sai(proc)


def test_run_all_with_job_args_naming_a_user_runs_nobody_as_someone_else(two_users: Home) -> None:
    proc = subprocess.run([sys.executable, str(PROJECT_ROOT / "orchestrator.py"), "run-all", "whoami",
                           "--", "--user", "Sai"], env=child_env(two_users), capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode != 0
    _never_sai(proc)
    assert not any(line.startswith("Som | {") for line in proc.stdout.splitlines())


def test_job_args_still_reach_the_job(two_users: Home) -> None:
    proc = subprocess.run([sys.executable, str(PROJECT_ROOT / "orchestrator.py"), "run", "Som", "whoami",
                           "--", "--hold", "0", "--dry-run"], env=child_env(two_users), capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1])["user"] == "Som"


def test_worker_argv_puts_the_user_first_and_refuses_job_args_naming_one() -> None:
    argv = worker_argv("Som", "whoami", ["--dry-run", "--note", "--use the force", "--", "--user"])
    assert argv[3:6] == ["whoami", "--user", "Som"]
    assert argv[6:] == ["--dry-run", "--note", "--use the force", "--", "--user"]
    for bad in (["--user", "Sai"], ["--user=Sai"], ["--u", "Sai"], ["--dry-run", "--use=Sai"]):
        with pytest.raises(UsageError, match="may not name a user"):
            worker_argv("Som", "whoami", bad)


# --- 4. a KITEFLEET_HOME that is not a folder ------------------------------------------------------
def test_home_resolve_refuses_a_missing_or_non_folder_home(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(ConfigError, match=r"KITEFLEET_HOME=.*nope is not a folder; create it or unset"):
        Home.resolve({"KITEFLEET_HOME": str(missing)})
    a_file = tmp_path / "file"
    a_file.write_text("")
    with pytest.raises(ConfigError, match="is not a folder"):
        Home.resolve({"KITEFLEET_HOME": str(a_file)})
    assert not missing.exists()
    assert Home.resolve({"KITEFLEET_HOME": str(tmp_path)}).root == tmp_path.resolve()
    assert Home.resolve({}).root == HOME_PROJECT_ROOT == Home.resolve({"KITEFLEET_HOME": ""}).root


@pytest.mark.parametrize("command", [["users"], ["supervisor-conf"], ["run", "Som", "whoami"]],
                         ids=["users", "supervisor-conf", "run"])
def test_commands_refuse_a_missing_home_with_one_line(tmp_path: Path, command: list[str]) -> None:
    missing = tmp_path / "typo-home"
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "HOME", "TMPDIR")}
    env["KITEFLEET_HOME"] = str(missing)
    proc = subprocess.run([sys.executable, str(PROJECT_ROOT / "orchestrator.py"), *command], env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == ExitCode.CONFIG, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and f"KITEFLEET_HOME={missing} is not a folder" in lines[0]
    assert not missing.exists()


def test_the_worker_refuses_a_missing_home_with_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "typo-home"
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "HOME", "TMPDIR")}
    env["KITEFLEET_HOME"] = str(missing)
    proc = subprocess.run([sys.executable, "-m", "workers", "whoami", "--user", "Som"], cwd=PROJECT_ROOT,
                          env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == ExitCode.CONFIG
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "is not a folder" in lines[0]
    assert not missing.exists()


# --- 5. describe() redacts before truncating ------------------------------------------------------
def test_describe_redacts_a_key_straddling_the_cut(monkeypatch: pytest.MonkeyPatch) -> None:
    from workers import logs
    from workers.broker_errors import describe

    monkeypatch.setattr(logs, "_secrets", {})
    api_key, secret = "straddlekey0123456789", "straddlesecretABCDEFGH"
    logs.register_secret(api_key, keep=4)
    logs.register_secret(secret)
    for prefix in range(185, 201):
        text = describe(RuntimeError("x" * prefix + api_key + " and " + secret))
        assert "straddlekey0" not in text and "straddlesecret" not in text
        # a cut prefix of the key is never left: at most its 4 kept characters
        assert "strad" not in text
