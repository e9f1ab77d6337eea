"""The paper broker's SQLite database (``<data-dir>/paper.db``, WAL).

One connection per thread (the HTTP server is threaded). ``transaction()`` takes SQLite's write
lock up front (BEGIN IMMEDIATE) so that read-check-write sequences such as "enough cash? then
block it" cannot interleave between threads or processes.

Tables created with the database (``SCHEMA``): ``accounts``, ``sessions``, ``request_tokens``,
``audit``.

Tables of the order engine (``ENGINE_SCHEMA``, created by ``OrderEngine`` on start with CREATE
TABLE IF NOT EXISTS; written only by the engine and its GTT API, inside ``transaction()``; the
read side in ``portfolio`` only reads them):

* ``engine_state``: ``hw`` = the simulated instant up to which everything due has been processed
  (ISO, aware). A restart resumes from it, so fills, triggers, expiries and settlement rolls that
  fell between the last tick and the restart happen on start, in order.
* ``ledger``: one row per account (by api_key): cash, the day's opening balance, today's sale
  proceeds and filled buys, cumulative realised P&L.
* ``orders`` (latest state), ``order_history`` (one JSON snapshot per status change),
  ``trades`` (JSON), ``cnc`` (per account and instrument: see ``portfolio.CncBook``), ``gtts``.
* ``authorisations``: (api_key, day, symbol) a person authorised for sale that day (the CDSL TPIN
  step of an account without demat consent; ``POST /paper/authorise``).
* ``corporate_credits``: the new shares a split or bonus owes a holder (recorded at the ex-date's
  start from the holdings then; added to the holdings at the credit day's start, ``credited`` 1).
* ``contract_notes``: one row per (api_key, trading day) with trades: the day's charges
  (``kitefleet.sim.charges.contract_note``) as ``debit`` (what left the cash at that day's
  settlement roll, DP charges included) and the note's figures as JSON. Written by the roll in
  the roll's own transaction; the primary key makes a second debit of one day impossible.
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


ENGINE_SCHEMA = """
CREATE TABLE IF NOT EXISTS engine_state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS ledger (
    api_key         TEXT PRIMARY KEY,
    user_id         TEXT NOT NULL,
    user_name       TEXT NOT NULL,
    starting_cash   REAL NOT NULL,
    cash            REAL NOT NULL,
    opening_balance REAL NOT NULL,
    day_payin       REAL NOT NULL DEFAULT 0,
    day_spent       REAL NOT NULL DEFAULT 0,
    realised        REAL NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS orders (
    seq                 INTEGER PRIMARY KEY,
    order_id            TEXT NOT NULL UNIQUE,
    api_key             TEXT NOT NULL,
    user_id             TEXT NOT NULL,
    variety             TEXT NOT NULL,
    exchange            TEXT NOT NULL,
    tradingsymbol       TEXT NOT NULL,
    instrument_token    INTEGER NOT NULL,
    transaction_type    TEXT NOT NULL,
    order_type          TEXT NOT NULL,
    product             TEXT NOT NULL,
    validity            TEXT NOT NULL,
    quantity            INTEGER NOT NULL,
    disclosed_quantity  INTEGER NOT NULL,
    price               REAL NOT NULL,
    trigger_price       REAL NOT NULL,
    market_protection   INTEGER NOT NULL,
    tag                 TEXT,
    guid                TEXT,
    status              TEXT NOT NULL,
    status_message      TEXT,
    filled_quantity     INTEGER NOT NULL DEFAULT 0,
    cancelled_quantity  INTEGER NOT NULL DEFAULT 0,
    average_price       REAL NOT NULL DEFAULT 0,
    order_timestamp     TEXT NOT NULL,
    exchange_timestamp  TEXT,
    exchange_update_timestamp TEXT,
    exchange_order_id   TEXT,
    modifications       INTEGER NOT NULL DEFAULT 0,
    block_price         REAL NOT NULL DEFAULT 0,
    limit_price         REAL NOT NULL DEFAULT 0,
    active_from         TEXT NOT NULL,
    updated_day         TEXT NOT NULL,
    gtt_id              INTEGER
);
CREATE INDEX IF NOT EXISTS orders_account_status ON orders(api_key, status);
CREATE INDEX IF NOT EXISTS orders_account_day ON orders(api_key, updated_day);
CREATE INDEX IF NOT EXISTS orders_status ON orders(status);
CREATE TABLE IF NOT EXISTS order_history (
    id       INTEGER PRIMARY KEY,
    order_id TEXT NOT NULL,
    api_key  TEXT NOT NULL,
    body     TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS order_history_order ON order_history(order_id);
CREATE TABLE IF NOT EXISTS trades (
    seq      INTEGER PRIMARY KEY,
    trade_id TEXT NOT NULL UNIQUE,
    order_id TEXT NOT NULL,
    api_key  TEXT NOT NULL,
    day      TEXT NOT NULL,
    body     TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS trades_account_day ON trades(api_key, day);
CREATE INDEX IF NOT EXISTS trades_order ON trades(order_id);
CREATE TABLE IF NOT EXISTS cnc (
    api_key          TEXT NOT NULL,
    instrument_token INTEGER NOT NULL,
    tradingsymbol    TEXT NOT NULL,
    exchange         TEXT NOT NULL,
    settled_qty      INTEGER NOT NULL DEFAULT 0,
    t1_qty           INTEGER NOT NULL DEFAULT 0,
    hold_cost        REAL NOT NULL DEFAULT 0,
    used_settled     INTEGER NOT NULL DEFAULT 0,
    used_t1          INTEGER NOT NULL DEFAULT 0,
    used_cost        REAL NOT NULL DEFAULT 0,
    lot_qty          INTEGER NOT NULL DEFAULT 0,
    lot_cost         REAL NOT NULL DEFAULT 0,
    day_buy_qty      INTEGER NOT NULL DEFAULT 0,
    day_buy_value    REAL NOT NULL DEFAULT 0,
    day_sell_qty     INTEGER NOT NULL DEFAULT 0,
    day_sell_value   REAL NOT NULL DEFAULT 0,
    PRIMARY KEY (api_key, instrument_token)
);
CREATE TABLE IF NOT EXISTS gtts (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    api_key          TEXT NOT NULL,
    user_id          TEXT NOT NULL,
    type             TEXT NOT NULL,
    status           TEXT NOT NULL,
    instrument_token INTEGER NOT NULL,
    condition        TEXT NOT NULL,
    orders           TEXT NOT NULL,
    created_at       TEXT NOT NULL,
    updated_at       TEXT NOT NULL,
    expires_at       TEXT NOT NULL,
    expires_iso      TEXT NOT NULL,
    active_from      TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS gtts_account ON gtts(api_key, status);
CREATE INDEX IF NOT EXISTS gtts_status ON gtts(status);
CREATE TABLE IF NOT EXISTS authorisations (
    api_key       TEXT NOT NULL,
    day           TEXT NOT NULL,
    tradingsymbol TEXT NOT NULL,
    PRIMARY KEY (api_key, day, tradingsymbol)
);
CREATE TABLE IF NOT EXISTS corporate_credits (
    api_key          TEXT NOT NULL,
    instrument_token INTEGER NOT NULL,
    ex_date          TEXT NOT NULL,
    credit_day       TEXT NOT NULL,
    extra_qty        INTEGER NOT NULL,
    credited         INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (api_key, instrument_token, ex_date)
);
CREATE TABLE IF NOT EXISTS contract_notes (
    api_key TEXT NOT NULL,
    day     TEXT NOT NULL,
    debit   REAL NOT NULL,
    body    TEXT NOT NULL,
    PRIMARY KEY (api_key, day)
);
"""


@dataclass(frozen=True)
class Account:
    api_key: str
    api_secret: str
    user_id: str  # Kite-style client id, e.g. "PA1234"; stable per account
    user_name: str  # the kitefleet user name (env file stem)
    starting_cash: float
    #: profile().meta.demat_consent, from PAPER_DEMAT_CONSENT (not stored: read with the env file)
    demat_consent: str = "consent"

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
