"""How much of an order fills, at what price: pure functions on the book (``kitefleet.sim.book``).

Rules (issue 16):

* A BUY fills only against asks at or below its limit, at the ask; a SELL against bids at or above
  its limit, at the bid. A protected MARKET order is a LIMIT at its protection bound here.
* Arriving (placed, modified, released by a GTT): the order walks the opposite side of the book
  level by level within its limit, one fill per level.
* Resting, in each completed minute: if the touch was already through the limit when the minute
  began, the fill is at that touch (the minute's opening ask or bid, which covers a gap at the
  open); if the touch reached the limit during the minute, at the limit. A triggered SL / SL-M
  order fills at the touch where it triggered (the trigger, or the minute's open when the minute
  opened through it), if that is within its limit.
* Participation: at most ``PARTICIPATION`` (10 %) of a minute's volume per order per minute,
  counted on the part of the minute's volume that traded at or better than the order's limit
  (volume is taken as spread evenly over the minute's price range).
"""

from __future__ import annotations

from dataclasses import dataclass

from kitefleet.sim.book import Bar, Book, touch

PARTICIPATION = 0.10


@dataclass(frozen=True)
class Fill:
    quantity: int
    price: int  # ticks


def participation_cap(volume: int, share: float = 1.0) -> int:
    return int(PARTICIPATION * volume * min(max(share, 0.0), 1.0))


def fill_on_arrival(buy: bool, limit: int, quantity: int, book: Book) -> list[Fill]:
    """Fills of an order meeting ``book`` with ``quantity`` still open (best level first)."""
    cap = participation_cap(book.volume)
    fills: list[Fill] = []
    for level in (book.asks if buy else book.bids):
        if quantity <= 0 or cap <= 0:
            break
        if (buy and level.price > limit) or (not buy and level.price < limit):
            break
        take = min(quantity, level.quantity, cap)
        fills.append(Fill(take, level.price))
        quantity -= take
        cap -= take
    return fills


def _ask(bar: Bar, p: int) -> int | None:
    return touch(p, bar.spread, bar.offset, bar.lower, bar.upper)[1]


def _bid(bar: Bar, p: int) -> int | None:
    return touch(p, bar.spread, bar.offset, bar.lower, bar.upper)[0]


def fill_in_minute(buy: bool, limit: int, quantity: int, bar: Bar, trigger: int | None = None) -> Fill | None:
    """The fill of a resting order in one completed minute, or None.

    ``trigger``: the order is an SL / SL-M that triggered in this minute at that price.
    """
    if quantity <= 0:
        return None
    if buy:
        top = min(bar.high, bar.upper - 1)  # trades at the upper band leave no asks
        if bar.low > top:
            return None
        best, worst = _ask(bar, bar.low), _ask(bar, top)
        assert best is not None and worst is not None
        if best > limit:
            return None
        if trigger is not None:
            at = _ask(bar, min(max(trigger, bar.open), top))
        else:
            opening = _ask(bar, bar.open) if bar.open <= top else None
            at = opening if opening is not None and opening <= limit else limit
        if at is None or at > limit:
            return None
        share = (limit - best + 1) / (worst - best + 1)
    else:
        bottom = max(bar.low, bar.lower + 1)  # trades at the lower band leave no bids
        if bottom > bar.high:
            return None
        best, worst = _bid(bar, bar.high), _bid(bar, bottom)
        assert best is not None and worst is not None
        if best < limit:
            return None
        if trigger is not None:
            at = _bid(bar, max(min(trigger, bar.open), bottom))
        else:
            opening = _bid(bar, bar.open) if bar.open >= bottom else None
            at = opening if opening is not None and opening >= limit else limit
        if at is None or at < limit:
            return None
        share = (best - limit + 1) / (best - worst + 1)
    take = min(quantity, participation_cap(bar.volume, share))
    return Fill(take, at) if take > 0 else None
