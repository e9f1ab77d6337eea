"""place_orders_daily's last step: wait for the session's entries until their timeout, then cancel
what is left. Every entry ends filled or cancelled, never resting all day at a stale price.

Why: a LIMIT entry that does not fill at once rests at a price the market has left; legacy never
cancelled one, so it could fill hours later on a dip, long after the reason to buy was gone.

Rules (docs/trading-rules.md, "Entry timeout"):

* Each entry intent records ``cancel_after`` = its send + ``ENTRY_TIMEOUT_MINUTES`` market-clock
  minutes (workers.intents.send_order_once; the state schema checks it).
* After its sends, place_orders_daily looks at the order book every POLL_SECONDS simulated
  seconds (at least MIN_POLL_WALL_S of wall time apart, for Kite's rate limit at a fast clock)
  while any of the session's entries with a ``cancel_after`` is open, printing a progress line
  (filled / partial / open) when the counts change and once a simulated minute. It also waits
  for an earlier run's open entries of the session (a rerun after a kill finishes their wait).
* Fills seen while waiting are recorded at once: positions and the ownership ledger (a partial
  fill too), and ``on_fill`` is called for each entry whose filled quantity grew.
* At an entry's ``cancel_after`` its rest is cancelled through the intent protocol
  (workers.entry_cancel, kind ``cancel``, purpose ``cancel_timeout``, one tag per order shared
  with the halt's cancel and the watchdog's). A cancel that races a fill is refused by the broker
  or leaves the order COMPLETE: the order is read again and the filled quantity recorded and
  owned the same way.
* The wait ends when no entry is open, or at the session's close (the broker expires DAY orders
  then). A run that is killed during the wait, or that cannot reach the broker at the deadline,
  leaves the cancel to the watchdog, which cancels any entry past its ``cancel_after`` on its next
  poll (workers.watchdog.Watchdog.cancel_entries_past_timeout), and to the next entry run.

Stops for the filled shares: this tree has no single stop-placing function yet, so the stop of a
filled entry comes from the next update_cnc_stoploss run; ``on_fill`` is where such a function
plugs in.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from kitefleet.clock import Clock
from kitefleet.errors import BrokerTemporaryError, ReconcileError
from kitefleet.settings import KEYS
from kitefleet.state import StateStore
from kitefleet.states import TERMINAL
from workers.broker_errors import BrokerRejected
from workers.entry_cancel import Deadline, cancel_open_entries, entry_deadlines
from workers.faults import fault_point
from workers.intents import IntentLog
from workers.portfolio import reconcile_ledger, record_entry_fills

#: simulated seconds between two looks at the order book while waiting
POLL_SECONDS = 5.0
#: ... and at least this many wall seconds (a fast simulated clock must not flood Kite's limits)
MIN_POLL_WALL_S = 0.5
#: a progress line at least this often (simulated seconds), besides every change of the counts
PROGRESS_SECONDS = 60.0


def timeout_minutes(settings: Any) -> int:
    return int(settings.get("ENTRY_TIMEOUT_MINUTES", KEYS["ENTRY_TIMEOUT_MINUTES"].default))


def cancel_after(sent_at: datetime, minutes: int) -> datetime:
    """When an entry sent at ``sent_at`` is cancelled: whole seconds, so the stored text is short."""
    return (sent_at + timedelta(minutes=minutes)).replace(microsecond=0)


@dataclass(frozen=True)
class Tally:
    filled: int = 0
    partial: int = 0
    open: int = 0
    cancelled: int = 0

    def line(self) -> str:
        return (f"{self.filled} filled, {self.partial} partly filled and open, {self.open} open"
                + (f", {self.cancelled} cancelled" if self.cancelled else ""))


def tally(orders: Iterable[Mapping[str, Any]], ids: Iterable[str]) -> Tally:
    """Counts over the orders ``ids`` as the book shows them: COMPLETE; open with a fill; open
    with none; CANCELLED (with or without a filled part)."""
    wanted = {str(i) for i in ids}
    filled = partial = open_ = cancelled = 0
    for o in orders:
        if str(o.get("order_id")) not in wanted:
            continue
        status = str(o.get("status") or "")
        if status == "COMPLETE":
            filled += 1
        elif status in TERMINAL:
            cancelled += 1
        elif int(o.get("filled_quantity") or 0) > 0:
            partial += 1
        else:
            open_ += 1
    return Tally(filled, partial, open_, cancelled)


@dataclass
class Waited:
    """What became of one entry the wait watched."""

    symbol: str
    order_id: str
    cancel_after: str
    quantity: int = 0
    filled: int = 0
    status: str | None = None
    #: this run cancelled its rest (False: it filled, or the book still shows it open)
    cancelled: bool = False
    error: str | None = None


@dataclass
class EntryWait:
    """The wait of one place_orders_daily run (see the module docstring)."""

    kite: Any
    store: StateStore
    intents: IntentLog
    user: str
    session: date
    log: logging.Logger
    clock: Clock
    close: datetime
    say: Callable[[str], None] = print
    on_fill: Callable[[Mapping[str, Any], int], None] | None = None
    rows: dict[str, Waited] = field(default_factory=dict)
    #: order id -> the filled quantity already recorded and handed to ``on_fill`` by this wait
    _seen_fill: dict[str, int] = field(default_factory=dict)

    def run(self) -> list[Waited]:
        deadlines = entry_deadlines(self.intents.all(), self.session)
        orders = self._read()
        if orders is None:
            return []
        watched = {oid: d for oid, d in deadlines.items()
                   if any(str(o.get("order_id")) == oid and str(o.get("status") or "") not in TERMINAL
                          for o in orders)}
        if not watched:
            return []
        for oid, d in watched.items():
            self.rows[oid] = Waited(d.symbol, oid, d.cancel_after.isoformat())
        last = max(d.cancel_after for d in watched.values())
        self.say(f"{self.user}: waiting for {len(watched)} entr{'y' if len(watched) == 1 else 'ies'} until "
                 f"{min(last, self.close):%H:%M:%S} (ENTRY_TIMEOUT_MINUTES), then cancelling what is left")
        said: tuple[Tally, datetime] | None = None
        #: entries whose cancel was tried: one try here; what it could not cancel is the watchdog's
        tried: set[str] = set()
        while True:
            now = self.clock.now()
            self._note(orders, watched)
            counts = tally(orders, watched)
            if said is None or counts != said[0] or (now - said[1]).total_seconds() >= PROGRESS_SECONDS:
                self.say(f"{self.user}: {now:%H:%M:%S} entries: {counts.line()}")
                said = (counts, now)
            waiting = [d for d in self._open(orders, watched) if d.order_id not in tried]
            if not waiting:
                break
            due = [d for d in waiting if d.cancel_after <= now]
            if due:
                tried.update(d.order_id for d in due)
                orders = self._cancel(now, orders, watched) or orders
                continue
            if now >= self.close:
                self.log.info("the session closed: the broker expires the open entries")
                break
            for d in waiting:
                fault_point("entry_wait", d.symbol)
            step = max(POLL_SECONDS, MIN_POLL_WALL_S * self.clock.speed)
            wake = min([now + timedelta(seconds=step), self.close] + [d.cancel_after for d in waiting])
            self.clock.sleep_until(wake)
            orders = self._read() or orders
        left = self._open(orders, watched)
        if left and tried:
            self.log.warning("%s still open after their cancel: the watchdog cancels them on its next poll",
                             ", ".join(f"{d.symbol} {d.order_id}" for d in left))
        self.say(f"{self.user}: entries after the wait: {tally(orders, watched).line()}")
        return list(self.rows.values())

    # --- steps -------------------------------------------------------------------------------
    def _read(self) -> list[dict[str, Any]] | None:
        try:
            return list(self.kite.orders())
        except BrokerTemporaryError as exc:
            self.log.warning("order book not read while waiting for the entries (%s); looking again", exc)
            return None

    @staticmethod
    def _filled(orders: Iterable[Mapping[str, Any]], oid: str) -> int:
        return next((int(o.get("filled_quantity") or 0) for o in orders if str(o.get("order_id")) == oid), 0)

    @staticmethod
    def _open(orders: Iterable[Mapping[str, Any]], watched: Mapping[str, Deadline]) -> list[Deadline]:
        return [watched[str(o.get("order_id"))] for o in orders
                if str(o.get("order_id")) in watched and str(o.get("status") or "") not in TERMINAL]

    def _note(self, orders: list[dict[str, Any]], watched: Mapping[str, Deadline]) -> None:
        """Each watched order's state in its row; a grown fill recorded (positions, ledger) and
        handed to ``on_fill``."""
        grown: list[tuple[dict[str, Any], int]] = []
        for o in orders:
            oid = str(o.get("order_id"))
            if oid not in watched:
                continue
            row = self.rows[oid]
            row.quantity, row.status = int(o.get("quantity") or 0), str(o.get("status") or "")
            row.filled = int(o.get("filled_quantity") or 0)
            if row.filled > self._seen_fill.get(oid, 0):
                grown.append((o, row.filled - self._seen_fill.get(oid, 0)))
                self._seen_fill[oid] = row.filled
        if not grown:
            return
        now = self.clock.now()
        with self.store.transaction() as state:
            record_entry_fills(state, orders, self.session, now)
            report = reconcile_ledger(state, None, [], self.session, orders=orders)
        for line in report.changes:
            self.log.info("ledger: %s", line)
        for order, more in grown:
            self.log.info("%s: entry %s filled %d more (%s of %s)", order.get("tradingsymbol"), order.get("order_id"),
                          more, order.get("filled_quantity"), order.get("quantity"))
            if self.on_fill is not None:
                self.on_fill(order, more)

    def _cancel(self, now: datetime, orders: list[dict[str, Any]],
                watched: Mapping[str, Deadline]) -> list[dict[str, Any]] | None:
        """Cancel the watched entries due at ``now``; the book read again afterwards."""
        try:
            done = cancel_open_entries(self.kite, self.intents, self.user, self.session, self.log, orders,
                                       due_at=now)
        except (BrokerTemporaryError, BrokerRejected, ReconcileError) as exc:
            self.log.warning("entries not cancelled at their timeout (%s); the watchdog cancels them", exc)
            return None
        for c in done:
            row = self.rows.get(c.order_id)
            if row is None:
                continue
            row.error = c.error
            row.cancelled = c.error is None and c.status == "CANCELLED"
            if c.error is None:
                self.say(f"{self.user}: {c.symbol}: entry {c.order_id} timed out: {c.status}, "
                         f"{c.filled} filled" + ("; the rest cancelled" if row.cancelled else ""))
        after = self._read()
        if after is not None:
            self._note(after, watched)
        return after


def as_rows(waited: Iterable[Waited]) -> list[dict[str, Any]]:
    return [asdict(w) for w in waited]
