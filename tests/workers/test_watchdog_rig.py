"""The hourly_candle_watchdog restart rows of docs/restart-behaviour.md, driven in-process through
``Watchdog.poll(now)`` on tests/support/watchdog_rig.py: the real paper broker and the real
kiteconnect client, a manual clock, faults on the client's wire, and "a restart" as a new
Watchdog over the same home and state.

The pinned INFY day (the same as tests/integration/jobs/test_watchdog.py up to 13:40, then a slow slide):
the hourly level from 13:15 is min(1485, 1495) = 1485, the 13:40 minute closes at 1483 (the LTP
from 13:41), so the rule fires at 13:41 at floor(1485 x 0.995, 0.1) = 1477.5, which fills at
once (it is under the LTP).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest

from kitefleet.calendar import load_calendar
from kitefleet.clock import IST
from kitefleet.sim.market import Market
from kitefleet.sim.scenario import ScenarioSet
from tests.support.broker import ensure_calendar
from tests.support.homes import make_home
from tests.support.watchdog_rig import USER, Killed, WatchdogRig, watchdog_rig
from workers.intents import IntentLog, make_tag
from workers.watchdog import JOB
from workers.watchdog_exits import MAX_EXIT_MODIFICATIONS

DAY = date(2026, 3, 4)
INFY_PATH = [["09:15", 1500], ["09:40", 1490], ["10:10", 1500], ["10:45", 1480], ["11:10", 1500],
             ["11:40", 1485], ["12:05", 1500], ["12:30", 1495], ["13:10", 1500], ["13:40", 1483],
             ["13:50", 1480], ["15:29", 1480]]
LEVEL, EXIT_PRICE = 1485.0, 1477.5


def at(hhmm: str) -> datetime:
    fmt = "%H:%M:%S" if hhmm.count(":") == 2 else "%H:%M"
    return datetime.combine(DAY, datetime.strptime(hhmm, fmt).time(), IST)


def tag(purpose: str = "exit", symbol: str = "INFY") -> str:
    return make_tag(USER, JOB, DAY, symbol, purpose)


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[WatchdogRig]:
    with watchdog_rig(tmp_path, {"INFY": INFY_PATH}, DAY, at("09:16")) as rig:
        rig.buy("INFY", 10)
        yield rig


def _placed(rig: WatchdogRig, since: datetime) -> list[dict[str, Any]]:
    return [r for r in rig.audit(since) if r["method"] == "POST" and r["path"] == "/orders/regular"]


def _watch_until_the_level(rig: WatchdogRig, **kwargs: Any) -> Any:
    """A watchdog started at 13:16 that has its 13:15 level (1485) and has not exited."""
    wd = rig.watchdog(**kwargs)
    rig.start(wd, at("13:16"))
    rig.poll(wd, at("13:16"))  # asks the level thread for the 12:15 candle
    rig.poll(wd, at("13:20"))  # applies it
    assert rig.day_state(DAY)["symbols"]["INFY"]["hourly"]["level"] == LEVEL
    # the poll from which the level is used (a replay checked against the session reads it)
    assert rig.day_state(DAY)["symbols"]["INFY"]["hourly"]["applied_at"] == at("13:20").isoformat()
    assert rig.sells("INFY") == []
    return wd


def test_killed_after_the_exit_was_sent_the_restart_adopts_it_and_sends_nothing(rig: WatchdogRig) -> None:
    """Rows "killed after the exit was sent, before its id was recorded" and "restart with the
    current hour's levels in the state"."""
    stop = rig.stop_gtt("INFY", 10, trigger=1400.0, limit=1330.0)
    wd = _watch_until_the_level(rig)
    rig.fault("POST", "/orders/regular", "kill_after")
    with pytest.raises(Killed):
        rig.poll(wd, at("13:41"))
    [order] = rig.sells("INFY")
    assert (order["tag"], order["quantity"], order["price"]) == (tag(), 10, EXIT_PRICE)
    [record] = rig.exits(DAY, "INFY")
    assert (record["status"], record["order_id"]) == ("sending", None)
    hourly = rig.day_state(DAY)["symbols"]["INFY"]["hourly"]

    wd = rig.watchdog()
    rig.start(wd, at("13:42"))
    [record] = rig.exits(DAY, "INFY")
    assert (record["status"], record["order_id"]) == ("sent", order["order_id"])
    assert rig.intent(tag())["status"] == "sent"
    for minute in ("13:42", "13:43", "13:44"):
        rig.poll(wd, at(minute))
    assert [o["order_id"] for o in rig.sells("INFY")] == [order["order_id"]]
    assert _placed(rig, at("13:42")) == []
    assert rig.person.get_gtt(stop)["status"] == "deleted"  # tidied once the adopted exit filled
    assert rig.day_state(DAY)["symbols"]["INFY"]["hourly"] == hourly
    assert [r for r in rig.audit(at("13:42")) if r["path"].startswith("/instruments/historical/")] == []


def test_killed_after_the_intent_before_the_send_the_restart_sends_the_same_tag_once(rig: WatchdogRig) -> None:
    wd = _watch_until_the_level(rig)
    rig.fault("POST", "/orders/regular", "kill_before")
    with pytest.raises(Killed):
        rig.poll(wd, at("13:41"))
    assert rig.sells("INFY") == []
    assert rig.intent(tag())["status"] == "pending"
    assert [e["status"] for e in rig.exits(DAY, "INFY")] == ["sending"]

    wd = rig.watchdog()
    rig.start(wd, at("13:42"))
    assert rig.intent(tag())["status"] == "failed"
    assert [e["status"] for e in rig.exits(DAY, "INFY")] == ["not_sent"]
    rig.poll(wd, at("13:42"))
    rig.poll(wd, at("13:43"))
    [order] = rig.sells("INFY")
    assert (order["tag"], order["quantity"], order["status"]) == (tag(), 10, "COMPLETE")
    assert [(e["tag"], e["status"]) for e in rig.exits(DAY, "INFY")] == [(tag(), "sent")]
    assert rig.intent(tag())["status"] == "sent"


def test_killed_during_the_reconcile_read_before_the_intent_it_is_given_up_after_the_grace(
        rig: WatchdogRig) -> None:
    # An open intent of another job (place_orders_daily killed after recording a TCS entry) makes
    # the exit's send read the book before it records its own intent; the process dies in that read.
    entry = make_tag(USER, "place_orders_daily", DAY, "TCS", "entry")
    IntentLog(rig.store()).record(entry, "order", "TCS", "entry",
                                  {"variety": "regular", "tradingsymbol": "TCS", "transaction_type": "BUY",
                                   "quantity": 1}, job="place_orders_daily", session=DAY)
    wd = _watch_until_the_level(rig)
    exit_without_intent = lambda: (  # noqa: E731
        [e.get("status") for e in rig.exits(DAY, "INFY")] == ["sending"] and not rig.intent(tag()))
    rig.fault("GET", "/orders", "kill_before", when=exit_without_intent)
    with pytest.raises(Killed):
        rig.poll(wd, at("13:41"))
    assert rig.fired == [("kill_before", "GET", "/orders")]
    assert rig.sells("INFY") == [] and rig.intent(tag()) == {}

    wd = rig.watchdog(settle_grace_s=3600.0)  # within the grace: the record still blocks a send
    rig.start(wd, at("13:42"))
    rig.poll(wd, at("13:42"))
    assert [e["status"] for e in rig.exits(DAY, "INFY")] == ["sending"]
    assert rig.sells("INFY") == []
    wd.settle_grace_s = 0.0  # the grace has passed
    rig.poll(wd, at("13:43"))
    [order] = rig.sells("INFY")
    assert (order["tag"], order["quantity"]) == (tag(), 10)
    assert [(e["tag"], e["status"]) for e in rig.exits(DAY, "INFY")] == [(tag(), "sent")]


def test_an_exit_refused_unprocessed_is_sent_again_under_the_same_tag(rig: WatchdogRig) -> None:
    wd = _watch_until_the_level(rig)
    rig.fault("POST", "/orders/regular", "answer", times=5, status=429, error_type="NetworkException",
              message="Too many requests")
    rig.poll(wd, at("13:41"))
    assert len(rig.fired) == 5  # the client's five attempts, none reached the broker
    assert rig.sells("INFY") == []
    assert [e["status"] for e in rig.exits(DAY, "INFY")] == ["not_sent"]
    assert rig.intent(tag())["status"] == "failed"
    rig.poll(wd, at("13:42"))
    [order] = rig.sells("INFY")
    assert order["tag"] == tag()
    assert [(e["tag"], e["status"]) for e in rig.exits(DAY, "INFY")] == [(tag(), "sent")]
    assert rig.intent(tag())["status"] == "sent"


def test_an_exit_whose_answer_is_lost_is_found_in_the_book_and_not_resent(rig: WatchdogRig) -> None:
    wd = _watch_until_the_level(rig)
    rig.fault("POST", "/orders/regular", "lost_answer")
    rig.poll(wd, at("13:41"))
    [order] = rig.sells("INFY")
    assert order["tag"] == tag()
    [record] = rig.exits(DAY, "INFY")
    assert (record["status"], record["order_id"]) == ("sent", order["order_id"])
    assert rig.intent(tag())["status"] == "sent"
    rig.poll(wd, at("13:42"))
    rig.poll(wd, at("13:43"))
    assert len(_placed(rig, at("09:16"))) == 2  # the buy and the one exit
    assert [o["order_id"] for o in rig.sells("INFY")] == [order["order_id"]]


def test_an_exit_of_unknown_outcome_not_in_the_book_is_given_up_and_the_next_tag_sent(rig: WatchdogRig) -> None:
    wd = _watch_until_the_level(rig)
    rig.fault("POST", "/orders/regular", "answer", status=500)  # never reached the broker
    rig.poll(wd, at("13:41"))
    assert [e["status"] for e in rig.exits(DAY, "INFY")] == ["unknown"]
    assert rig.intent(tag())["status"] == "unknown"
    rig.poll(wd, at("13:42"))  # not in the book after the grace: lost, then exit2
    [order] = rig.sells("INFY")
    assert order["tag"] == tag("exit2")
    assert [(e["tag"], e["status"]) for e in rig.exits(DAY, "INFY")] == [(tag(), "lost"), (tag("exit2"), "sent")]
    assert rig.intent(tag())["status"] == "failed"


def test_an_exit_given_up_as_lost_that_arrives_after_all_is_adopted_as_sent(rig: WatchdogRig) -> None:
    wd = _watch_until_the_level(rig)
    rig.fault("POST", "/orders/regular", "hold")  # the client sees a 500; the request is stuck
    rig.poll(wd, at("13:41"))
    assert rig.sells("INFY") == [] and [e["status"] for e in rig.exits(DAY, "INFY")] == ["unknown"]
    # At 13:42 the record is given up (lost); the stuck request reaches the broker just after,
    # before the poll reads the LTP and decides.
    lost = lambda: [e.get("status") for e in wd.sym("INFY")["exits"]] == ["lost"]  # noqa: E731
    rig.fault("GET", "/quote/ltp", "before", run=rig.deliver_held, when=lost)
    rig.poll(wd, at("13:42"))
    assert ("before", "GET", "/quote/ltp") in rig.fired
    [order] = rig.sells("INFY")
    assert (order["tag"], order["status"]) == (tag(), "COMPLETE")
    [record] = rig.exits(DAY, "INFY")
    assert (record["status"], record["order_id"], record["filled"]) == ("sent", order["order_id"], 10)
    assert rig.intent(tag())["status"] == "sent"
    rig.poll(wd, at("13:43"))
    assert len(rig.sells("INFY")) == 1  # nothing left to sell: no exit2


def test_a_stop_gtt_that_fired_while_the_watchdog_was_down_is_not_sold_again(rig: WatchdogRig) -> None:
    wd = _watch_until_the_level(rig)
    assert wd.tracked == {"INFY": 10}
    # placed after the morning dips (10:45 closed at 1480): only the 13:40 minute reaches 1484
    rig.stop_gtt("INFY", 6, trigger=1484.0, limit=1470.0)
    rig.close_watchdogs()  # down from 13:20; the 13:40 minute (1483) fires the GTT meanwhile
    wd = rig.watchdog()
    rig.start(wd, at("13:45"))
    gtt_sells = [o for o in rig.sells("INFY") if o["status"] == "COMPLETE"]
    assert [o["quantity"] for o in gtt_sells] == [6], rig.sells("INFY")
    assert wd.tracked == {"INFY": 4}
    rig.poll(wd, at("13:45"))
    rig.poll(wd, at("13:46"))
    exits = [o for o in rig.sells("INFY") if o["tag"] == tag()]
    assert [(o["quantity"], o["status"]) for o in exits] == [(4, "COMPLETE")]
    assert sum(o["filled_quantity"] for o in rig.sells("INFY")) == 10


# --- the modification cap ------------------------------------------------------------------------
def _lower_circuit(tmp_path: Path, symbol: str, opening: float) -> float:
    """INFY-like arithmetic for TCS: the lower circuit of DAY when the pinned day opens at
    ``opening`` (the paper market rebases the earlier days on the first waypoint)."""
    home = make_home(tmp_path / "circuit")
    ensure_calendar(home, DAY)
    scenario = ScenarioSet.from_json({"paths": [{"symbol": symbol, "date": DAY.isoformat(),
                                                 "waypoints": [["09:15", opening]]}]})
    market = Market(load_calendar(home.calendar_file, DAY), seed=1, scenarios=scenario, symbols=[symbol])
    inst = market.instrument(f"NSE:{symbol}")
    assert inst is not None
    return market.circuit_limits(int(inst.instrument_token), DAY)[0]


def test_an_exit_resting_above_a_market_locked_at_the_lower_circuit_stops_at_the_modification_cap(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """TCS falls to its lower circuit while the exit is in flight: the exit rests at the level x
    0.995 and the watchdog reprices it down (clamped to the circuit, issue 20). Here the exchange
    refuses every modification (an RMS refusal the rig answers for the broker), and each refused
    attempt counts. After MAX_EXIT_MODIFICATIONS the watchdog leaves the order alone (one ERROR;
    the GTT stays the backstop), also after a restart."""
    lower = _lower_circuit(tmp_path, "TCS", 3100.0)
    path = [["09:15", 3100], ["13:39", 3100], ["13:40", 3090], ["13:45", lower], ["15:29", lower]]
    with watchdog_rig(tmp_path / "cap", {"TCS": path}, DAY, at("09:16")) as rig:
        rig.buy("TCS", 5)
        wd = rig.watchdog()
        rig.start(wd, at("13:16"))
        rig.poll(wd, at("13:16"))
        rig.poll(wd, at("13:20"))
        assert rig.day_state(DAY)["symbols"]["TCS"]["hourly"]["level"] == 3100.0
        # the market drops to the circuit while the exit is on its way
        rig.fault("POST", "/orders/regular", "move_to", to=at("13:46"))
        rig.poll(wd, at("13:41"))
        [order] = rig.sells("TCS")
        assert (order["tag"], order["price"], order["status"]) == (tag(symbol="TCS"), 3084.5, "OPEN")
        assert rig.ltp("TCS") == lower

        caplog.set_level(logging.WARNING, logger="rig.watchdog")
        rig.fault("PUT", "/orders/regular/", "answer", times=None, status=400, error_type="OrderException",
                  message="Order price is lesser than the lower circuit limit.")
        for n in range(MAX_EXIT_MODIFICATIONS + 3):
            rig.poll(wd, at(f"13:{47 + n}"))
        modifies = [f for f in rig.fired if f[1] == "PUT"]
        assert len(modifies) == MAX_EXIT_MODIFICATIONS
        refused = [r.getMessage() for r in caplog.records if "not repriced" in r.getMessage()]
        assert len(refused) == MAX_EXIT_MODIFICATIONS and "lower circuit" in refused[0]
        capped = [r for r in caplog.records if r.levelno == logging.ERROR and "modified 10 times" in r.getMessage()]
        assert len(capped) == 1
        [record] = rig.exits(DAY, "TCS")
        assert (record["status"], record["modifications"]) == ("sent", MAX_EXIT_MODIFICATIONS)
        [order] = rig.sells("TCS")
        assert (order["price"], order["status"]) == (3084.5, "OPEN")  # left resting; no second exit

        wd = rig.watchdog()  # a restart does not reset the count
        rig.start(wd, at("14:05"))
        rig.poll(wd, at("14:05"))
        rig.poll(wd, at("14:06"))
        assert [r for r in rig.audit(at("14:05")) if r["method"] in ("PUT", "POST")] == []
        assert len([f for f in rig.fired if f[1] == "PUT"]) == MAX_EXIT_MODIFICATIONS
        assert len(rig.sells("TCS")) == 1


def test_a_gap_between_polls_is_recorded_and_logged(rig: WatchdogRig, caplog: pytest.LogCaptureFixture) -> None:
    """Polls 30 s apart, then none for 20 minutes (a busy machine): the session records the gap, so a
    trader (and the backtest's comparison, workers.backtest.compare) can tell what the watchdog
    could not have seen; polls 30 s to 90 s apart are no gap."""
    wd = rig.watchdog()
    rig.start(wd, at("10:00"))
    with caplog.at_level(logging.WARNING):
        for moment in ("10:00", "10:00:30", "10:02", "10:22", "10:22:30"):
            rig.poll(wd, at(moment))
    assert rig.day_state(DAY)["poll_gaps"] == [[at("10:02").isoformat(), at("10:22").isoformat()]]
    assert [r.getMessage() for r in caplog.records if "no poll from" in r.getMessage()] == [
        "no poll from 10:02:00 to 10:22:00 (1200 s; one every 30 s expected): only the GTT stops watched the "
        "positions meanwhile"]


def test_the_fresh_quote_an_exit_was_decided_on_is_kept(rig: WatchdogRig) -> None:
    """The poll's LTP says sell; the watchdog decides again on a fresh quote() and keeps it (time,
    price) with the symbol, and the exit record names its poll times."""
    wd = _watch_until_the_level(rig)
    rig.poll(wd, at("13:41"))
    [order] = rig.sells("INFY")
    assert order["price"] == EXIT_PRICE
    rec = rig.day_state(DAY)["symbols"]["INFY"]
    assert rec["quotes"] == [[at("13:41").isoformat(), 1483.0]]
    [record] = rec["exits"]
    assert (record["decided_at"], record["quoted_at"], record["previous_poll_at"]) == (
        at("13:41").isoformat(), at("13:41").isoformat(), at("13:20").isoformat())
