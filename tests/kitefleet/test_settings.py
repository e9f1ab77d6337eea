"""Every bad env file is refused with one line naming the file and the keys, exit code 4, and
the file is left as it was."""

from __future__ import annotations

from pathlib import Path

import pytest

from kitefleet.errors import ConfigError, UsageError
from kitefleet.settings import SCHEMA, api_key_fingerprint, example_env_text, load_settings
from tests.support.homes import PROJECT_ROOT, make_home, write_env

GOOD = "TRADER_MODE=paper\nKITE_API_KEY=abcd1234\nKITE_API_SECRET=s3cr3t-value\n"

BAD_FILES: list[tuple[str, bytes, int, list[str]]] = [
    ("typo", (GOOD + "KITE_API_KEYY=x\n").encode(), 0o600,
     ["line 4: unknown key KITE_API_KEYY", "KITE_API_KEY?"]),
    ("missing", b"TRADER_MODE=paper\nKITE_API_KEY=abcd\n", 0o600, ["missing required key KITE_API_SECRET"]),
    ("badmode", GOOD.replace("paper", "demo").encode(), 0o600, ["TRADER_MODE (line 1) must be one of paper, live"]),
    ("badint", (GOOD + "MIN_SCORE=high\n").encode(), 0o600, ["MIN_SCORE (line 4) must be an integer"]),
    # issue 18: the ownership and limit keys
    ("badscope", (GOOD + "MANAGE_SCOPE=mine\n").encode(), 0o600, ["MANAGE_SCOPE (line 4) must be one of own, all"]),
    ("pos0", (GOOD + "MAX_POSITION_PERCENT=0\n").encode(), 0o600, ["MAX_POSITION_PERCENT (line 4) must be > 0"]),
    ("loss150", (GOOD + "MAX_DAILY_LOSS_PERCENT=150\n").encode(), 0o600,
     ["MAX_DAILY_LOSS_PERCENT (line 4) must be <= 100"]),
    ("entries0", (GOOD + "MAX_NEW_ENTRIES_PER_DAY=0\n").encode(), 0o600,
     ["MAX_NEW_ENTRIES_PER_DAY (line 4) must be >= 1"]),
    ("capital0", (GOOD + "MAX_CAPITAL=-5\n").encode(), 0o600, ["MAX_CAPITAL (line 4) must be > 0"]),
    ("range", (GOOD + "MIN_SCORE=9\nCAPITAL_DEPLOYMENT_PERCENT=0\n").encode(), 0o600,
     ["MIN_SCORE (line 4) must be <= 7", "CAPITAL_DEPLOYMENT_PERCENT (line 5) must be > 0"]),
    ("space", b"TRADER_MODE=paper\nKITE_API_KEY=ab cd\nKITE_API_SECRET=x\n", 0o600,
     ["KITE_API_KEY (line 2) contains whitespace"]),  # the API key's value is never shown whole
    ("liveroot", GOOD.replace("paper", "live").encode() + b"KITE_ROOT=http://127.0.0.1:1\n", 0o600,
     ["KITE_ROOT (line 4) is not allowed with TRADER_MODE=live"]),
    ("perms", GOOD.encode(), 0o644, ["readable by group or others", "chmod 600"]),
    ("binary", b"TRADER_MODE=paper\nKITE_API_KEY=\xff\xfe\n", 0o600, ["not valid UTF-8"]),
    ("empty", b"", 0o600, ["empty env file"]),
    ("comments", b"# nothing here\n\n", 0o600, ["empty env file"]),
    ("badline", (GOOD + "this is a bad line\n").encode(), 0o600, ["line 4 does not parse"]),
]


@pytest.mark.parametrize(("user", "content", "mode", "needles"), BAD_FILES, ids=[b[0] for b in BAD_FILES])
def test_bad_env_file_is_refused_in_process(tmp_path: Path, user: str, content: bytes, mode: int,
                                            needles: list[str]) -> None:
    home = make_home(tmp_path)
    path = home.env_file(user)
    path.write_bytes(content)
    path.chmod(mode)
    with pytest.raises(ConfigError) as err:
        load_settings(home, user)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"env/{user}.env: ")
    for needle in needles:
        assert needle in message
    assert "s3cr3t-value" not in message
    assert path.read_bytes() == content


def test_every_offending_key_is_named_in_one_line(tmp_path: Path) -> None:
    home = make_home(tmp_path)
    write_env(home, "Som", KITE_API_KEYY="x", LOG_LEVEL="LOUD", WATCHDOG_POLL_SECONDS="0")
    with pytest.raises(ConfigError) as err:
        load_settings(home, "Som")
    for needle in ("KITE_API_KEYY", "LOG_LEVEL", "WATCHDOG_POLL_SECONDS"):
        assert needle in str(err.value)


def test_missing_file_and_bad_names(tmp_path: Path) -> None:
    home = make_home(tmp_path)
    with pytest.raises(ConfigError, match="no such env file"):
        load_settings(home, "Nobody")
    for name in ("../x", "x/y", "", "1abc", "a" * 33, "example", "with space"):
        with pytest.raises(UsageError):
            load_settings(home, name)


def test_secret_value_never_in_error(tmp_path: Path) -> None:
    home = make_home(tmp_path)
    write_env(home, "Som", api_secret="bad secret with spaces")
    with pytest.raises(ConfigError) as err:
        load_settings(home, "Som")
    assert "KITE_API_SECRET (line 3) contains whitespace" in str(err.value)
    assert "bad secret" not in str(err.value)


def test_good_file_typed_defaults_and_repr(tmp_path: Path) -> None:
    home = make_home(tmp_path)
    write_env(home, "Som", api_key="abcd1234", MIN_SCORE="6", PAPER_STARTING_CASH="250_000")
    s = load_settings(home, "Som")
    assert s.mode == "paper" and s.is_paper
    assert s["MIN_SCORE"] == 6 and s["PAPER_STARTING_CASH"] == 250000.0
    assert s["MAX_CNC_POSITIONS"] == 10 and s["WATCHDOG_RULE"] == "hourly_low"
    assert s.kite_root == "http://127.0.0.1:8765"
    assert s.file_keys == {"TRADER_MODE", "KITE_API_KEY", "KITE_API_SECRET", "MIN_SCORE", "PAPER_STARTING_CASH"}
    assert s.fingerprint == api_key_fingerprint("abcd1234") and s.fingerprint.startswith("abcd:")
    assert "secret" not in repr(s) and "abcd1234" not in repr(s)


def test_live_mode_defaults(tmp_path: Path) -> None:
    home = make_home(tmp_path)
    write_env(home, "Liv", mode="live")
    s = load_settings(home, "Liv")
    assert s.kite_root == "https://api.kite.trade"
    assert s["SCHEDULE_PLACE_ORDERS_DAILY"] is None  # real-money entries are opted into
    assert s.data_source == "live"


def test_example_env_is_in_sync_with_schema_and_usable(tmp_path: Path) -> None:
    example = (PROJECT_ROOT / "env" / "example.env").read_text()
    assert example == example_env_text() + "\n" or example == example_env_text(), (
        "env/example.env is out of date: regenerate it from kitefleet.settings.example_env_text()"
    )
    for key in SCHEMA:
        assert key.name in example
    home = make_home(tmp_path)
    for user in ("Som", "Sai"):
        path = home.env_file(user)
        path.write_text(example)
        path.chmod(0o600)
        assert load_settings(home, user).mode == "paper"
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
