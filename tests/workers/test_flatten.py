"""The flatten's pure rules (workers/flatten.py), on plain data: which of the bot's open SELLs are
repriced, why a share is still open, and how two processes' exit records merge."""

from __future__ import annotations

from pathlib import Path

import pytest

from workers.exit_records import merge_exit_records
from workers.flatten import flatten_reprices, why_open


def test_flatten_reprices_only_the_bots_open_sells_above_the_target() -> None:
    exits = [{"tag": "A", "status": "sent", "order_id": "1", "order_status": "OPEN", "price": 1510.0},
             {"tag": "B", "status": "sent", "order_id": "2", "order_status": "COMPLETE", "price": 1510.0},
             {"tag": "C", "status": "sent", "order_id": "3", "order_status": "OPEN", "price": 1480.0},
             {"tag": "D", "status": "sent", "order_id": "4", "order_status": "OPEN", "price": 1520.0,
              "modifications": 10}]
    plans = flatten_reprices(exits, 1492.5)
    assert [(p.tag, p.price, p.capped) for p in plans] == [("A", 1492.5, False), ("D", 1492.5, True)]
    assert "queued at the lower circuit 1480.0" in why_open(exits[2:3], 1400.0, 1480.0, 1480.0)
    assert "no exit attempt left" in why_open(
        [{"tag": t, "purpose": p, "status": "sent", "order_status": "CANCELLED"} for t, p in
         (("x", "exit"), ("y", "exit2"), ("z", "exit3"))], 1500.0, None, 1492.5)


def test_two_processes_keep_each_others_exit_records() -> None:
    mine = {"symbols": {"INFY": {"exits": [{"tag": "W", "modifications": 1}]}}}
    theirs = {"symbols": {"INFY": {"exits": [{"tag": "W", "modifications": 3}, {"tag": "F", "rule": "flatten"}]},
                          "TCS": {"exits": [{"tag": "T"}]}}}
    assert merge_exit_records(mine, theirs)
    assert [e["tag"] for e in mine["symbols"]["INFY"]["exits"]] == ["W", "F"]
    assert mine["symbols"]["INFY"]["exits"][0]["modifications"] == 3  # a count never goes back
    assert [e["tag"] for e in mine["symbols"]["TCS"]["exits"]] == ["T"]
    assert not merge_exit_records(mine, theirs)


def test_loss_limit_action_is_halt_by_default_or_flatten(tmp_path: Path) -> None:
    from kitefleet.errors import ConfigError
    from kitefleet.settings import load_settings
    from tests.support.homes import make_home, write_env

    home = make_home(tmp_path / "home")
    write_env(home, "Som")
    write_env(home, "Sai", LOSS_LIMIT_ACTION="flatten")
    write_env(home, "Ana", LOSS_LIMIT_ACTION="sell")
    assert load_settings(home, "Som")["LOSS_LIMIT_ACTION"] == "halt"
    assert load_settings(home, "Sai")["LOSS_LIMIT_ACTION"] == "flatten"
    with pytest.raises(ConfigError) as err:
        load_settings(home, "Ana")
    assert "LOSS_LIMIT_ACTION" in str(err.value) and "halt, flatten" in str(err.value)
