"""The request audit: one row per Kite request, in the ``audit`` table of ``paper.db``.

Row: ``time`` (the broker's simulated now, ISO ``YYYY-MM-DDTHH:MM:SS.ffffff+05:30``; fixed width so
that text order is time order), ``wall_time`` (Unix seconds), ``api_key`` (the key the request
carried in its Authorization header, or the ``api_key`` parameter of the login calls; NULL when
none was sent), ``method``, ``path`` (without the query string: DELETE /session/token carries the
access token there), ``status`` and ``order_id`` (set when the request placed an order).

Rows are queued by the request threads and written in batches by one writer thread (a single
executemany per batch keeps the per-request cost to an append). ``flush()`` writes the queue
synchronously; readers call it first so that they see every request answered so far. The admin
paths under ``/paper/`` are not audited: the audit is the record of Kite traffic.

Tests and the demo use ``GET /paper/audit`` to prove that each user's requests carried that user's
own key and no other.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime

from kitefleet.clock import IST
from paper_broker.db import Database

log = logging.getLogger("paper_broker.audit")


def audit_time(moment: datetime) -> str:
    return moment.astimezone(IST).strftime("%Y-%m-%dT%H:%M:%S.%f+05:30")


@dataclass(frozen=True)
class AuditRow:
    time: str
    wall_time: float
    api_key: str | None
    method: str
    path: str
    status: int
    order_id: str | None = None


class AuditLog:
    def __init__(self, db: Database, *, interval: float = 0.1) -> None:
        self.db = db
        self.interval = interval
        self._pending: list[AuditRow] = []
        self._lock = threading.Lock()  # guards _pending
        self._write_lock = threading.Lock()  # one batch at a time, in order
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="audit-writer", daemon=True)
        self._thread.start()

    def record(self, moment: datetime, api_key: str | None, method: str, path: str, status: int,
               order_id: str | None = None) -> None:
        row = AuditRow(audit_time(moment), time.time(), api_key, method, path, status, order_id)
        with self._lock:
            self._pending.append(row)

    def flush(self) -> None:
        with self._write_lock:
            with self._lock:
                batch, self._pending = self._pending, []
            if batch:
                with self.db.transaction() as conn:
                    conn.executemany(
                        "INSERT INTO audit (time, wall_time, api_key, method, path, status, order_id) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?)",
                        [(r.time, r.wall_time, r.api_key, r.method, r.path, r.status, r.order_id)
                         for r in batch],
                    )

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.flush()
            except Exception:
                log.exception("audit batch write failed; will retry")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.flush()

    def query(self, *, since: datetime | None = None, api_key: str | None = None,
              limit: int | None = None) -> list[dict[str, object]]:
        """Rows oldest first, as the admin API returns them."""
        self.flush()
        sql = "SELECT time, wall_time, api_key, method, path, status, order_id FROM audit"
        where: list[str] = []
        args: list[object] = []
        if since is not None:
            where.append("time >= ?")
            args.append(audit_time(since))
        if api_key is not None:
            where.append("api_key = ?")
            args.append(api_key)
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        out: list[dict[str, object]] = []
        for row in self.db.conn().execute(sql, args):
            item: dict[str, object] = {
                "time": row["time"], "api_key": row["api_key"], "method": row["method"],
                "path": row["path"], "status": row["status"],
                # wall-clock Unix time of the request: benchmarks measure reaction in wall seconds
                "wall_time": row["wall_time"],
            }
            if row["order_id"] is not None:
                item["order_id"] = row["order_id"]
            out.append(item)
        return out
