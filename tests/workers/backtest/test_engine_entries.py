"""The backtest's entry runs decide as place_orders_daily decides (workers.strategy.entries, one set
of functions): MAX_NEW_ENTRIES_PER_DAY, MAX_CAPITAL, the bot's equity at the entry's LTP, a symbol
sold earlier that session, and a later entry slot completing the first slot's plan."""

from __future__ import annotations

from datetime import date

import pytest

from kitefleet.calendar import NseCalendar, build_from_library
from tests.workers.backtest.test_engine_session import FLAT, _dip, _session, _spec
from workers.backtest.model import OrderRow
from workers.strategy.patterns import ScanResult


@pytest.fixture(scope="module")
def calendar() -> NseCalendar:
    return build_from_library(date(2025, 1, 1), date(2027, 12, 31))[0]


def _entries(orders: list[OrderRow]) -> list[tuple[str, int]]:
    return [(o.symbol, o.quantity) for o in orders if o.purpose == "entry"]


SCAN = [ScanResult(s, 9, entry=100.0, stop_loss=95.0, risk_reward=2.0) for s in ("BBB", "CCC", "DDD")]
CLOSES = {"AAA": FLAT, "BBB": FLAT, "CCC": FLAT, "DDD": FLAT}


def test_backtest_honours_max_new_entries_per_day(calendar: NseCalendar) -> None:
    free = _session(calendar, _spec(SCHEDULE_PLACE_ORDERS_DAILY="10:00"), CLOSES, scan=SCAN, held=False)
    assert [s for s, _ in _entries(free.result.orders)] == ["BBB", "CCC", "DDD"]
    # two entry slots, two new entries a day: the second slot completes the first one's plan,
    # which the cap left at two symbols; DDD is never entered that day
    capped = _session(calendar, _spec(SCHEDULE_PLACE_ORDERS_DAILY="10:00,11:00", MAX_NEW_ENTRIES_PER_DAY=2),
                      CLOSES, scan=SCAN, held=False)
    assert [s for s, _ in _entries(capped.result.orders)] == ["BBB", "CCC"]
    assert sorted(capped.positions) == ["BBB", "CCC"]


def test_backtest_honours_max_capital(calendar: NseCalendar) -> None:
    # AAA held: 1000 at 100 (100,000 at cost), cash 100,000; MAX_CAPITAL 130,000 leaves 30,000,
    # which the one entry may use (MAX_POSITION_PERCENT 20 % of equity 200,000 would allow 40,000):
    # 300 shares planned at 100, 299 at the ask 100.05 (300 would be 30,015, over the room)
    spec = _spec(SCHEDULE_PLACE_ORDERS_DAILY="10:00", MAX_CAPITAL=130_000.0)
    (entry,) = _entries(_session(calendar, spec, CLOSES, scan=SCAN[:1]).result.orders)
    assert entry == ("BBB", 299)
    without = _session(calendar, _spec(SCHEDULE_PLACE_ORDERS_DAILY="10:00"), CLOSES, scan=SCAN[:1])
    assert _entries(without.result.orders) == [("BBB", 399)]
    # the room is used up entry by entry: 60,000 left, BBB's 50,000 budget fits (499 shares at
    # the ask 100.05), CCC gets the 10,000 it left (100 shares planned at 100)
    spec = _spec(SCHEDULE_PLACE_ORDERS_DAILY="10:00", MAX_CAPITAL=160_000.0, MAX_POSITION_PERCENT=100,
                 CAPITAL_DEPLOYMENT_PERCENT=100)
    assert _entries(_session(calendar, spec, CLOSES, scan=SCAN[:2]).result.orders) == [("BBB", 499), ("CCC", 100)]


def test_backtest_sizes_on_the_equity_at_the_entrys_ltp(calendar: NseCalendar) -> None:
    # AAA (1000 held) trades at 110 by 10:00: equity = cash 100,000 + 110,000, not the previous
    # close's 200,000; MAX_POSITION_PERCENT 20 % of 210,000 = 42,000 -> 419 shares at 100.05
    risen = {**CLOSES, "AAA": [110.0] * 375}
    (entry,) = _entries(_session(calendar, _spec(SCHEDULE_PLACE_ORDERS_DAILY="10:00"), risen,
                                 scan=SCAN[:1]).result.orders)
    assert entry == ("BBB", 419)


def test_backtest_does_not_buy_back_a_symbol_sold_earlier_that_session(calendar: NseCalendar) -> None:
    # AAA (held) is sold by the hourly-low rule at 11:20; the 13:00 entry run must not buy it back
    scan = [ScanResult("AAA", 9, entry=100.0, stop_loss=95.0, risk_reward=2.0)]
    acct = _session(calendar, _spec(SCHEDULE_PLACE_ORDERS_DAILY="13:00"), {"AAA": _dip(124)}, scan=scan)
    assert [t.exit_reason for t in acct.result.trades] == ["hourly_low"]
    assert _entries(acct.result.orders) == [] and "AAA" not in acct.positions


def test_a_later_entry_slot_completes_the_first_slots_plan(calendar: NseCalendar) -> None:
    # CCC is gapped up at 10:00 (LTP 104, 4 % above its entry: skipped, not sent) and back at 100
    # by 11:00: the 11:00 slot sends it sized with the 10:00 basis (three selected), not a fresh
    # selection of one; BBB and DDD, sent at 10:00, are not sent again
    ccc = [104.0] * 60 + [100.0] * 315
    acct = _session(calendar, _spec(SCHEDULE_PLACE_ORDERS_DAILY="10:00,11:00", MAX_POSITION_PERCENT=100),
                    {**CLOSES, "CCC": ccc}, scan=SCAN, held=False)
    entries = _entries(acct.result.orders)
    assert [s for s, _ in entries] == ["BBB", "DDD", "CCC"]
    # 100,000 x 50 % / 3 = 16,666.67 a symbol: 166 shares at the ask 100.05; CCC keeps the
    # quantity the 10:00 plan sized at its LTP 104 (160), as a rerun of the job does; a fresh
    # selection of one at 11:00 would have bought 499
    assert dict(entries) == {"BBB": 166, "DDD": 166, "CCC": 160}
    (ccc_order,) = [o for o in acct.result.orders if o.symbol == "CCC"]
    assert ccc_order.time.strftime("%H:%M") == "11:00"
