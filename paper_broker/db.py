"""The paper broker's SQLite database (``<data-dir>/paper.db``, WAL).

One connection per thread (the HTTP server is threaded). ``transaction()`` takes SQLite's write
lock up front (BEGIN IMMEDIATE) so that read-check-write sequences such as "enough cash? then
block it" cannot interleave between threads or processes.

Tables owned here: ``accounts``, ``sessions``, ``request_tokens``, ``audit``. The order engine
creates its own tables (orders, trades, holdings, gtts, ledger) in the same file.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS accounts (
    api_key       TEXT PRIMARY KEY,
    api_secret    TEXT NOT NULL,
    user_id       TEXT NOT NULL UNIQUE,
    user_name     TEXT NOT NULL,
    starting_cash REAL NOT NULL,
    created_at    TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS request_tokens (
    request_token TEXT PRIMARY KEY,
    api_key       TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    used          INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS sessions (
    access_token  TEXT PRIMARY KEY,
    api_key       TEXT NOT NULL,
    login_time    TEXT NOT NULL,
    expires_at    TEXT NOT NULL,
    revoked       INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS audit (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    time      TEXT NOT NULL,
    wall_time REAL NOT NULL,
    api_key   TEXT,
    method    TEXT NOT NULL,
    path      TEXT NOT NULL,
    status    INTEGER NOT NULL,
    order_id  TEXT
);
CREATE INDEX IF NOT EXISTS audit_key ON audit(api_key);
"""


@dataclass(frozen=True)
class Account:
    api_key: str
    api_secret: str
    user_id: str  # Kite-style client id, e.g. "PA1234"; stable per account
    user_name: str  # the kitefleet user name (env file stem)
    starting_cash: float

    def __repr__(self) -> str:
        return f"Account(user_name={self.user_name!r}, user_id={self.user_id!r})"


class Database:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self.conn().executescript(SCHEMA)

    def conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, isolation_level=None, timeout=30.0, check_same_thread=False)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=30000")
            self._local.conn = conn
        return conn

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction (BEGIN IMMEDIATE). Nested use reuses the outer transaction."""
        conn = self.conn()
        if conn.in_transaction:
            yield conn
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        else:
            conn.execute("COMMIT")

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
