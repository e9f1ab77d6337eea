"""hourly_candle_watchdog under MANAGE_SCOPE (issue 18): the watchdog watches and sells only the
shares the bot owns. One replay of the sliding INFY day (tests/integration/jobs/test_watchdog.py's SLIDE_PATH:
the 13:40 close at 1483 crosses the 1485 level, then the price slides to 1440) with real worker
processes, the real kiteconnect client and the real paper broker:

    Som  own    40 bought by hand the day before the bot started: never tracked, never sold
    Sai  all    the same 40: sold (the legacy scope)
    Ana  own    10 owned + 40 by hand, a bot stop of 10 and a person's stop of 40: the exit sells
                the 10; the bot stop is deleted, the person's left as it is
    Raj  own    40 by hand; 15 of them handed to the bot (a ledger lot) while the watchdog runs:
                seen within one poll, and the exit sells 15
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from kitefleet.state import StateStore
from tests.integration.jobs.test_watchdog import (
    DAY,
    JOB,
    PREV_DAY,
    SLIDE_PATH,
    SPEED,
    Paper,
    _level,
    _paper,
    at,
    papers,  # noqa: F401 (fixture)
    wait_for,
)
from tests.support.broker import RunningBroker, broker_factory  # noqa: F401 (fixture)
from workers.intents import make_tag
from workers.ledger import ADOPTED, add_lot, ledger_of, lot, owned_quantities
from workers.portfolio import held_quantities, snapshot
from workers.watchdog_scope import exit_quantity, gtt_target

USERS: dict[str, dict[str, object]] = {"Som": {}, "Sai": {"MANAGE_SCOPE": "all"}, "Ana": {}, "Raj": {}}


def _orders_posted(paper: Paper, user: str, since: Any) -> list[dict[str, Any]]:
    return [r for r in paper.broker.audit(since=since, api_key=paper.api_key(user))
            if r["method"] in ("POST", "PUT", "DELETE") and r["path"].startswith(("/orders", "/gtt"))]


def test_the_watchdog_sells_only_the_bots_shares_through_a_falling_day(
        tmp_path: Path, broker_factory: Callable[..., RunningBroker], papers: list[Paper]) -> None:  # noqa: F811
    paper = _paper(tmp_path, broker_factory, USERS, {"INFY": SLIDE_PATH}, at("14:00", PREV_DAY))
    papers.append(paper)
    for user in USERS:  # long-term shares bought in the app before the bot started
        paper.buy(user, "INFY", 40, owned=False)
    paper.set_time(at("09:20"))
    paper.buy("Ana", "INFY", 10)
    bot_stop = paper.stop_gtt("Ana", "INFY", 10)
    persons_stop = paper.stop_gtt("Ana", "INFY", 40)
    with StateStore(paper.home, "Ana", "paper").transaction() as state:
        state.setdefault("stops", {})["INFY"] = {"gtt_id": bot_stop, "quantity": 10}

    started = at("13:16")
    paper.set_time(started, SPEED)
    for user in USERS:
        paper.start(user)
    for user in ("Sai", "Ana"):
        wait_for(lambda u=user: _level(paper, u, "INFY")[1] == 1485.0, 30, f"{user}'s 13:15 level")
    # Raj's watchdog tracks nothing; 15 of his shares are handed to the bot just after a
    # positions refresh (every 300 s from the start), so only the per-poll look at the state sees it.
    paper.wait_until(at("13:27:30"))
    with StateStore(paper.home, "Raj", "paper").transaction() as state:
        add_lot(ledger_of(state), "INFY", lot(15, 1500.0, DAY, ADOPTED))
    adopted_at = paper.broker.now()

    tags = {u: make_tag(u, JOB, DAY, "INFY", "exit") for u in USERS}
    exits: dict[str, dict[str, Any]] = {}
    for user in ("Sai", "Ana", "Raj"):
        exits[user] = wait_for(lambda u=user: next((o for o in paper.sells(u, "INFY") if o["tag"] == tags[u]
                                                    and o["status"] == "COMPLETE"), None), 60, f"{user}'s exit")
    assert {u: o["quantity"] for u, o in exits.items()} == {"Sai": 40, "Ana": 10, "Raj": 15}
    raj_polls = [r for r in paper.broker.audit(since=started, api_key=paper.api_key("Raj"))
                 if r["path"] == "/quote/ltp"]
    assert adopted_at < at("13:30") and raj_polls, "the adopt came too late to show the per-poll look"
    assert adopted_at.isoformat() <= raj_polls[0]["time"] < at("13:30").isoformat(), raj_polls[0]
    wait_for(lambda: paper.kite("Ana").get_gtt(bot_stop)["status"] == "deleted", 30, "Ana's bot stop deleted")
    paper.set_time(at("15:29:45"), SPEED)
    results = {user: paper.finish(user) for user in USERS}
    for user, (code, summary, err) in results.items():
        assert code == 0 and summary["outcome"] == "closed", (user, err[-2000:])

    # Som: through the whole slide nothing was sold, no GTT touched; the 40 are still held.
    assert paper.sells("Som", "INFY") == []
    assert _orders_posted(paper, "Som", started) == []
    assert "not managing 40 INFY shares" in results["Som"][2]
    assert "MANAGE_SCOPE=all" in results["Sai"][2]
    held = {u: held_quantities(snapshot(paper.kite(u))).get("INFY", 0) for u in USERS}
    assert held == {"Som": 40, "Sai": 0, "Ana": 40, "Raj": 25}
    # Ana: the person's stop of 40 is left exactly as it was; the ledger followed the exit's fill.
    person = paper.kite("Ana").get_gtt(persons_stop)
    assert person["status"] == "active" and [o["quantity"] for o in person["orders"]] == [40]
    assert [w["path"] for w in _orders_posted(paper, "Ana", started) if w["path"].startswith("/gtt")] == \
        [f"/gtt/triggers/{bot_stop}"]
    assert owned_quantities(StateStore(paper.home, "Ana", "paper").read()["ledger"]) == {}
    assert owned_quantities(StateStore(paper.home, "Raj", "paper").read()["ledger"]) == {}


def test_exit_quantity_covers_owned_only_net_of_open_sells() -> None:
    def sell(qty: int, oid: str, status: str = "OPEN", filled: int = 0) -> dict[str, Any]:
        return {"order_id": oid, "tradingsymbol": "INFY", "transaction_type": "SELL", "product": "CNC",
                "exchange": "NSE", "status": status, "quantity": qty, "filled_quantity": filled,
                "pending_quantity": qty - filled}

    # 10 owned of 50 held, nothing open: the 10
    assert exit_quantity("own", "INFY", 10, 50, [], ()) == 10
    # the bot's exit of 10 is 4 filled (owned now 6), 6 still open: nothing more to sell
    assert exit_quantity("own", "INFY", 6, 46, [sell(10, "B1", filled=4)], {"B1"}) == 0
    # a person's open SELL of 45 of the 50 leaves 5 for the bot's 10
    assert exit_quantity("own", "INFY", 10, 50, [sell(45, "P1")], {"B1"}) == 5
    # legacy scope: every held share, net of every open sell
    assert exit_quantity("all", "INFY", 0, 50, [sell(45, "P1")], ()) == 5
    assert exit_quantity("own", "INFY", 0, 50, [], ()) == 0
    assert gtt_target("own", 3, 40) == 3 and gtt_target("own", 10, 4) == 4 and gtt_target("all", 0, 40) == 40
