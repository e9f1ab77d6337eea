"""The engine's session replay on small synthetic candles: the jobs at the user's schedule, the
watchdog's poll interval, the daily loss limit (halt, flatten), positions open at the range's end."""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta

import pytest

from kitefleet.calendar import NseCalendar, build_from_library
from kitefleet.clock import IST
from kitefleet.sim.book import Book, Level, to_ticks
from workers.backtest import engine, timing
from workers.backtest.metrics import side_by_side, summarize
from workers.backtest.model import BacktestSpec, EquityRow
from workers.jobs.backtest import _plain
from workers.strategy.patterns import Candle, ScanResult

DAY = date(2026, 11, 3)  # a Tuesday session
PREVIOUS = date(2026, 11, 2)
TICK = 0.05


@pytest.fixture(scope="module")
def calendar() -> NseCalendar:
    return build_from_library(date(2025, 1, 1), date(2027, 12, 31))[0]


class FakeSource:
    """A CandleSource on plain lists: minute closes per symbol (375 a session), a flat daily
    history at ``prev_close``, a deep book one tick either side of each minute's open."""

    name = "paper"

    def __init__(self, calendar: NseCalendar, closes: dict[str, list[float]], prev_close: float = 100.0) -> None:
        self.calendar = calendar
        self.closes = closes
        self.prev_close = prev_close

    def symbols(self) -> list[str]:
        return sorted(self.closes)

    def tick(self, symbol: str) -> float:
        return TICK

    def daily(self, symbol: str, start: date, end: date) -> list[Candle] | None:
        days = [d for d in self.calendar.trading_days if start <= d <= min(end, PREVIOUS)]
        p = self.prev_close
        return [Candle(d, p, p + 1, p - 1, p, 100_000) for d in days]

    def minutes(self, symbol: str, day: date) -> list[Candle] | None:
        opening = datetime.combine(day, time(9, 15), IST)
        out, prev = [], self.prev_close
        for i, c in enumerate(self.closes[symbol]):
            out.append(Candle(opening + timedelta(minutes=i), prev, max(prev, c), min(prev, c), c, 10_000))
            prev = c
        return out

    def circuit(self, symbol: str, day: date) -> tuple[float, float] | None:
        return None

    def book(self, symbol: str, day: date, minute: int) -> Book | None:
        path = self.minutes(symbol, day) or []
        last = to_ticks(path[minute].open, TICK)
        return Book(TICK, last, (Level(last - 1, 10**6, 10),), (Level(last + 1, 10**6, 10),), 0, 10**9, 10**8)


def _spec(**settings: object) -> BacktestSpec:
    base: dict[str, object] = {"SCHEDULE_UPDATE_CNC_STOPLOSS": "off", "SCHEDULE_PLACE_ORDERS_DAILY": "off",
                               "WATCHDOG_POLL_SECONDS": 60, "MAX_DAILY_LOSS_PERCENT": 100}
    base.update(settings)
    return BacktestSpec(user="Som", start=DAY, end=DAY, rules=("hourly_low",), initial_cash=100_000.0,
                        settings=base)


def _held(replay: engine.Replay, rule: str, symbol: str = "AAA", quantity: int = 1000) -> engine._Account:
    """An account holding ``quantity`` shares bought the session before at the previous close."""
    acct = replay.account(rule)
    acct.cash = 100_000.0
    entered = datetime.combine(PREVIOUS, time(9, 20), IST)
    acct.positions[symbol] = engine._Position(symbol, quantity, entered, 100.0, PREVIOUS, 0.0, None, TICK, 1)
    acct.result.equity.append(EquityRow(rule, PREVIOUS, 100_000.0, 100_000.0, 200_000.0, 0.0, 0.5))
    return acct


def _session(calendar: NseCalendar, spec: BacktestSpec, closes: dict[str, list[float]], rule: str = "hourly_low",
             scan: list[ScanResult] | None = None, held: bool = True) -> engine._Account:
    replay = engine.Replay(spec, FakeSource(calendar, closes), calendar)
    acct = _held(replay, rule) if held else replay.account(rule)
    times = timing.session_times(replay.plan, calendar, DAY)
    replay.session(acct, rule, DAY, scan or [], replay.minutes_of(DAY), times)
    return acct


FLAT = [100.0] * 375


# --- the schedule from the user's settings --------------------------------------------------------
def test_the_job_times_come_from_the_users_schedule_settings(calendar: NseCalendar) -> None:
    spec = _spec(SCHEDULE_PLACE_ORDERS_DAILY="10:00", SCHEDULE_UPDATE_CNC_STOPLOSS="09:00,13:30",
                 SCHEDULE_HOURLY_CANDLE_WATCHDOG="11:00", WATCHDOG_POLL_SECONDS=45)
    times = timing.session_times(timing.plan_of(spec), calendar, DAY)
    assert times.entries == (45,)  # 10:00
    assert times.stops == (0, 255)  # 09:00 runs at the open, 13:30
    polls = [s for c in sorted(times.polls) for s, _ in times.polls[c]]
    assert polls[0] == 105 * 60 and polls[1] - polls[0] == 45  # from the watchdog's slot, every 45 s
    assert [w.time() for _, w in times.polls[105] + times.polls[106]] == [time(11, 0), time(11, 0, 45),
                                                                          time(11, 1, 30)]
    # the job hands the scheduler's text form over, "off" included; the engine parses it back
    assert _plain("SCHEDULE_UPDATE_CNC_STOPLOSS", (time(9, 0), time(14, 0))) == "09:00,14:00"
    assert _plain("SCHEDULE_HOURLY_CANDLE_WATCHDOG", None) == "off"
    off = timing.session_times(timing.plan_of(_spec(SCHEDULE_HOURLY_CANDLE_WATCHDOG="off")), calendar, DAY)
    assert not off.watched and off.polls == {} and off.stops == () and off.entries == ()
    with pytest.raises(ValueError, match="SCHEDULE_PLACE_ORDERS_DAILY"):
        timing.plan_of(_spec(SCHEDULE_PLACE_ORDERS_DAILY="9am"))


def test_entries_are_sent_at_the_users_entry_slot(calendar: NseCalendar) -> None:
    row = ScanResult("BBB", 9, entry=100.0, stop_loss=95.0)
    for slot, sent in (("10:00", time(10, 0)), ("13:05", time(13, 5))):
        acct = _session(calendar, _spec(SCHEDULE_PLACE_ORDERS_DAILY=slot), {"AAA": FLAT, "BBB": FLAT},
                        scan=[row], held=False)
        (entry,) = [o for o in acct.result.orders if o.purpose == "entry"]
        assert entry.symbol == "BBB" and entry.filled > 0 and entry.time.time() == sent


# --- the poll interval ----------------------------------------------------------------------------
def _dip(minute: int) -> list[float]:
    """Flat at 100 (every hourly low 100), one minute closing at 98, back at 100 the next minute."""
    path = list(FLAT)
    path[minute] = 98.0
    return path


def test_a_poll_interval_that_skips_the_minute_misses_its_exit(calendar: NseCalendar) -> None:
    # minute 124 (11:19) closes at 98, below the hourly-low level 100; polls every 60 s see it at
    # 11:20:00; polls every 90 s fall at 11:19:30 and 11:21:00 and never see that close
    path = _dip(124)
    seen = _session(calendar, _spec(WATCHDOG_POLL_SECONDS=60), {"AAA": path})
    (trade,) = seen.result.trades
    assert trade.exit_reason == "hourly_low" and trade.quantity == 1000
    (exit_,) = [o for o in seen.result.orders if o.purpose == "exit"]
    assert exit_.time == datetime(2026, 11, 3, 11, 20, tzinfo=IST)
    missed = _session(calendar, _spec(WATCHDOG_POLL_SECONDS=90), {"AAA": path})
    assert missed.result.trades == [] and missed.positions["AAA"].quantity == 1000
    # seen by the 90 s grid one minute later (11:20 closes at 98 too: seen at 11:21:00)
    later = _session(calendar, _spec(WATCHDOG_POLL_SECONDS=90), {"AAA": [*_dip(124)[:125], 98.0, *FLAT[126:]]})
    (exit_,) = [o for o in later.result.orders if o.purpose == "exit"]
    assert exit_.time == datetime(2026, 11, 3, 11, 21, tzinfo=IST)


def test_no_watchdog_no_rule_exit(calendar: NseCalendar) -> None:
    acct = _session(calendar, _spec(SCHEDULE_HOURLY_CANDLE_WATCHDOG="off"), {"AAA": _dip(124)})
    assert acct.result.trades == [] and acct.positions["AAA"].quantity == 1000


# --- the daily loss limit -------------------------------------------------------------------------
def _crash(minute: int = 30, to: float = 90.0) -> list[float]:
    """AAA at the previous close until ``minute`` (09:45), then at ``to`` for the rest of the day."""
    return [100.0] * minute + [to] * (375 - minute)


ENTRY = [ScanResult("BBB", 9, entry=100.0, stop_loss=95.0)]


def test_loss_limit_trips_and_blocks_the_next_entries(calendar: NseCalendar) -> None:
    closes = {"AAA": _crash(), "BBB": FLAT}
    # 1000 AAA fall 10: day P&L -10,000 on a base of 200,000 (-5 %)
    free = _session(calendar, _spec(SCHEDULE_PLACE_ORDERS_DAILY="10:00"), closes, scan=ENTRY)
    assert [o.symbol for o in free.result.orders if o.purpose == "entry"] == ["BBB"]
    assert free.result.halts == []
    limited = _session(calendar, _spec(SCHEDULE_PLACE_ORDERS_DAILY="10:00", MAX_DAILY_LOSS_PERCENT=3), closes,
                       scan=ENTRY)
    assert [o for o in limited.result.orders if o.purpose == "entry"] == []
    (trip,) = limited.result.halts
    # found at the first positions refresh after 09:45's close: 09:46 (refreshes every 300 s from 09:16)
    assert trip.startswith("2026-11-03 09:46:00: daily loss limit: day P&L -10,000.00 below the floor -6,000.00")
    # halt (not flatten): the shares are kept
    assert limited.positions["AAA"].quantity == 1000 and limited.result.trades == []


def test_loss_limit_flatten_sells_every_held_share(calendar: NseCalendar) -> None:
    acct = _session(calendar, _spec(MAX_DAILY_LOSS_PERCENT=3, LOSS_LIMIT_ACTION="flatten"), {"AAA": _crash()})
    (trade,) = acct.result.trades
    assert trade.exit_reason == "flatten" and trade.quantity == 1000 and "AAA" not in acct.positions
    (sell,) = [o for o in acct.result.orders if o.side == "SELL"]
    assert sell.time == datetime(2026, 11, 3, 9, 46, tzinfo=IST) and sell.price == 89.55  # floor(90 x 0.995)
    assert len(acct.result.halts) == 1


def test_loss_limit_without_a_watchdog_is_checked_by_the_entry_run(calendar: NseCalendar) -> None:
    spec = _spec(MAX_DAILY_LOSS_PERCENT=3, LOSS_LIMIT_ACTION="flatten", SCHEDULE_HOURLY_CANDLE_WATCHDOG="off",
                 SCHEDULE_PLACE_ORDERS_DAILY="10:00")
    acct = _session(calendar, spec, {"AAA": _crash(), "BBB": FLAT}, scan=ENTRY)
    assert [o for o in acct.result.orders if o.purpose == "entry"] == []
    (sell,) = [o for o in acct.result.orders if o.side == "SELL"]
    assert sell.reason == "flatten" and sell.time == datetime(2026, 11, 3, 10, 0, tzinfo=IST)
    assert acct.result.halts[0].startswith("2026-11-03 10:00:00")


# --- positions open at the end of the range --------------------------------------------------------
def test_an_open_position_at_the_end_is_reported_with_its_unrealised_pnl(calendar: NseCalendar) -> None:
    spec = _spec()
    replay = engine.Replay(spec, FakeSource(calendar, {"AAA": [100.0] * 300 + [103.0] * 75}), calendar)
    acct = _held(replay, "atr_trailing")
    acct.result.equity.clear()  # the run's first session: the base is the cash
    replay.session(acct, "atr_trailing", DAY, [], replay.minutes_of(DAY),
                   timing.session_times(replay.plan, calendar, DAY))
    engine._report_open(acct)
    s = summarize(acct.result, BacktestSpec(user="Som", start=DAY, end=DAY, rules=("atr_trailing",),
                                            initial_cash=200_000.0))
    assert s["trades"] == 0 and s["net_pnl"] == 3000.0
    assert s["open_at_end"] == 1 and s["open_pnl"] == 3000.0
    (row,) = s["open_positions"]
    assert row["symbol"] == "AAA" and row["quantity"] == 1000 and row["mark_price"] == 103.0
    assert row["holding_days"] == 1
    table = side_by_side({"atr_trailing": s})
    assert "atr_trailing: open at the end: 1000 AAA bought 2026-11-02T09:20:00+05:30 at 100.0, marked 103.0" in table
    assert re.search(r"open P&L \(unrealised\) +3,000\.00", table)


def test_run_reports_what_is_open_and_it_adds_up(calendar: NseCalendar) -> None:
    from workers.backtest.paper import PaperSource

    spec = BacktestSpec(user="Som", start=date(2026, 10, 26), end=date(2026, 10, 27), rules=("atr_trailing",),
                        initial_cash=1_000_000.0, settings={"MIN_SCORE": 0})
    (res,) = engine.run(spec, PaperSource(calendar, 1, None, ["TCS", "RELIANCE", "INFY", "HDFCBANK", "ITC"]),
                        calendar)
    assert res.open_positions, "the ATR rule holds positions past two sessions"
    s = summarize(res, spec)
    held = sum(p.quantity * p.mark_price for p in res.open_positions)
    assert abs(held - res.equity[-1].holdings_value) < 0.01
    assert abs(s["net_pnl"] - (s["trades_pnl"] + s["open_pnl"])) < 0.05 * (1 + s["trades"] + s["open_at_end"])


# --- history: no order book -----------------------------------------------------------------------
class History(FakeSource):
    """Kite history: the same candles, no book (workers.backtest.live)."""

    name = "live"

    def book(self, symbol: str, day: date, minute: int) -> Book | None:
        return None


def test_live_history_backtest_made_no_entries_without_a_book(calendar: NseCalendar) -> None:
    """Bug: with no book every entry was refused ('no sellers in the quote's depth') and no order
    filled, so a --source live run showed no trade at all. History fills at the last close plus
    (buy) or minus (sell) half the typical spread, the summary says so."""
    spec = _spec(SCHEDULE_PLACE_ORDERS_DAILY="10:00")
    replay = engine.Replay(spec, History(calendar, {"AAA": _dip(124), "BBB": FLAT}), calendar)
    acct = _held(replay, "hourly_low")
    replay.session(acct, "hourly_low", DAY, [ScanResult("BBB", 9, entry=100.0, stop_loss=95.0)],
                   replay.minutes_of(DAY), timing.session_times(replay.plan, calendar, DAY))
    assert engine.HALF_SPREAD_TICKS == 1
    (entry,) = [o for o in acct.result.orders if o.purpose == "entry"]
    # re-priced at the modelled ask, 100 + 1 tick, and filled there
    assert (entry.symbol, entry.price, entry.average_price, entry.status) == ("BBB", 100.05, 100.05, "COMPLETE")
    assert entry.filled == entry.quantity > 0
    # AAA's exit on the 11:19 dip (close 98): sold at the limit under it, the minute after
    (sold,) = [t for t in acct.result.trades if t.symbol == "AAA"]
    assert sold.exit_reason == "hourly_low" and sold.quantity == 1000
    assert sold.exit_price == 97.95  # the last close (98) less one tick, above the exit's limit
    assert acct.result.assumptions[-1] == engine.HISTORY_FILLS
    assert "history has no order book" in engine.HISTORY_FILLS
    paper = engine.Replay(spec, FakeSource(calendar, {"AAA": FLAT}), calendar).account("hourly_low")
    assert engine.HISTORY_FILLS not in paper.result.assumptions


def test_a_persons_list_keeps_its_order_and_min_score_applies_only_to_a_scored_list(calendar: NseCalendar) -> None:
    """As place_orders_daily --from: no score column, every row is an explicit pick; with scores,
    MIN_SCORE (5 here) still applies."""
    spec = _spec(SCHEDULE_PLACE_ORDERS_DAILY="10:00", MIN_SCORE=5)
    rows = [ScanResult("CCC", 3), ScanResult("BBB", 9)]
    for scored, expected in ((False, ["CCC", "BBB"]), (True, ["BBB"])):
        replay = engine.Replay(spec, FakeSource(calendar, {"BBB": FLAT, "CCC": FLAT}), calendar)
        acct = replay.account("hourly_low")
        replay.session(acct, "hourly_low", DAY, rows, replay.minutes_of(DAY),
                       timing.session_times(replay.plan, calendar, DAY), manual=True, scored=scored)
        assert [o.symbol for o in acct.result.orders if o.purpose == "entry"] == expected
