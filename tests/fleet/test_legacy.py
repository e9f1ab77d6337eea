"""Pure attribution and parsing rules of fleet.legacy and fleet.legacy_config, on plain data."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleet.legacy import OrderIndex, attribute, parse_legacy_state, record_keys
from fleet.legacy_config import read_legacy_config
from kitefleet.errors import ConfigError
from tests.support import DATA

FIXTURES = DATA


def _index() -> OrderIndex:
    index = OrderIndex(users=["Sai", "Som"])
    index.add("Sai", ["111"], ["AAA", "BOTH"])
    index.add("Som", ["SYNC_BOTH_1"], ["BBB", "BOTH"])
    return index


def test_order_id_wins_over_an_ambiguous_ticker() -> None:
    att = attribute("BOTH", {"confirmation": "SYNC_BOTH_1"}, _index(), [])
    assert (att.user, att.by) == ("Som", "order_id")


def test_ticker_in_two_users_is_not_guessed() -> None:
    att = attribute("BOTH", {"confirmation": "999"}, _index(), [])
    assert att.user is None and att.ambiguous and att.candidates == ("Sai", "Som")
    assert "merged" in att.evidence


def test_ticker_in_exactly_one_user() -> None:
    assert attribute("aaa", {}, _index(), []).user == "Sai"


def test_in_no_file_is_unassigned_unless_exactly_one_holder() -> None:
    assert attribute("CCC", {}, _index(), []).user is None
    att = attribute("CCC", {}, _index(), [], holdings={"Sai": {"CCC"}, "Som": set()})
    assert (att.user, att.by) == ("Sai", "broker")
    assert attribute("CCC", {}, _index(), [], holdings={"Sai": {"CCC"}, "Som": {"CCC"}}).user is None


def test_explicit_user_field_comes_first() -> None:
    att = attribute("BOTH", {"account": "som"}, _index(), ["Sai", "Som"])
    assert (att.user, att.by) == ("Som", "field")
    assert attribute("AAA", {"user": "Nobody"}, _index(), ["Sai"]).user is None


def test_server_sync_record_keys() -> None:
    ids, tickers = record_keys({"order_id": "SYNC_X_1", "tradingsymbol": "x", "data_source": "server_sync"})
    assert ids == {"SYNC_X_1"} and tickers == {"X"}


@pytest.mark.parametrize("raw", [b"", b"[1,2]", b'{"meta": {}}', b'{"positions": []}', b'{"positions": {"A": 1}}',
                                 b'{"positions": {'])
def test_unusable_legacy_state(raw: bytes) -> None:
    with pytest.raises(ConfigError):
        parse_legacy_state(Path("trading_state.json"), raw)


def test_legacy_config_inheritance_and_no_secret_in_repr() -> None:
    cfg = read_legacy_config(FIXTURES / "config.ini")
    users = {u.name: u for u in cfg.users}
    assert set(users) == {"Sai", "Som", "Mom"}
    # legacy max_cnc_positions capped new stocks per run: MAX_NEW_ENTRIES_PER_DAY (issue 18)
    assert users["Som"].settings["MAX_NEW_ENTRIES_PER_DAY"] == "5"  # own value beats [DEFAULT]
    assert users["Sai"].settings == {"MAX_NEW_ENTRIES_PER_DAY": "2", "CAPITAL_DEPLOYMENT_PERCENT": "1.0",
                                     "LOG_LEVEL": "INFO"}
    assert not users["Mom"].complete
    assert "SaiSecret" not in repr(users["Sai"])
    assert cfg.other_sections == ["TWILIO_CREDENTIALS", "System", "Trading"]
    assert "profit_target_exits" in cfg.ignored_defaults


def test_ini_parse_error_does_not_quote_the_line(tmp_path: Path) -> None:
    bad = tmp_path / "config.ini"
    bad.write_text("[API_CREDENTIALS_Sai]\napi_key = k\nthis line leaks SECRETVALUE\n", encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        read_legacy_config(bad)
    assert "SECRETVALUE" not in str(err.value) and "line" in str(err.value)
