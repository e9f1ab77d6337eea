"""Paper accounts, the login flow and sessions.

Accounts come from the home's paper-mode env files (``env/<User>.env`` with ``TRADER_MODE=paper``):
``KITE_API_KEY``, ``KITE_API_SECRET`` and ``PAPER_STARTING_CASH``. They are stored in the
``accounts`` table; a reload updates the secret, name and starting cash of a known key (the
starting cash only matters when the order engine first creates the account's ledger). Each file's
``TRADER_MODE`` is read first, on its own (``env_file_mode``): a live file, or one whose mode cannot
be read, is skipped before the full settings loader sees it, so a live user's API secret is never
parsed into this process and its problems are never logged (one line: "skipped (live mode)"). A
paper file that does not validate, or repeats another file's key, is skipped with one log line (the
loader's message, which never shows a secret). Accounts whose env file is gone stay in the database
but can neither log in nor use a session.

Login (Kite's flow, without the browser):
  ``GET /connect/login?api_key=K&v=3`` → 302 whose Location carries a one-time ``request_token``
  (plus ``action=login&status=success`` as Kite sends). A request token is valid for
  REQUEST_TOKEN_WALL_SECONDS of *wall* time (the simulated clock may be jumped between the two
  calls of one login) and can be exchanged once.
  ``POST /session/token`` (api_key, request_token, checksum = sha256(api_key + request_token +
  api_secret)) → the session object. A wrong checksum and an unknown, used or expired token get
  the same answer (403 TokenException, LOGIN_REFUSED), so the answers do not tell which tokens
  exist; after MAX_CHECKSUM_ATTEMPTS wrong checksums the request token is used up. The access
  token expires at the next 06:00 IST after the login by the shared (simulated) clock;
  ``DELETE /session/token`` revokes it. Sessions live in
  the ``sessions`` table, so a worker's token keeps working across a broker restart.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import logging
import re
import secrets
import string
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from datetime import time as dtime
from pathlib import Path

from dotenv import dotenv_values

from kitefleet.clock import IST
from kitefleet.errors import KitefleetError
from kitefleet.home import Home
from kitefleet.settings import api_key_fingerprint, load_settings
from kitefleet.users import list_users
from paper_broker.db import Account, Database
from paper_broker.errors import input_error, token_error

log = logging.getLogger("paper_broker.auth")

REQUEST_TOKEN_WALL_SECONDS = 300.0
MAX_CHECKSUM_ATTEMPTS = 3
LOGIN_REFUSED = "Token is invalid or has expired."
SESSION_EXPIRY = dtime(6, 0)
KITE_TIME = "%Y-%m-%d %H:%M:%S"


_TOKEN_ALPHABET = string.ascii_letters + string.digits


# ``TRADER_MODE=...`` as python-dotenv accepts it (optional ``export``, spaces around ``=``).
_MODE_LINE = re.compile(r"^\s*(?:export\s+)?TRADER_MODE\s*=")


def env_file_mode(path: Path) -> str | None:
    """The ``TRADER_MODE`` of an env file (stripped; the last one wins, as with dotenv), or None
    when the file cannot be read or decoded or has no such line.

    Only the line naming TRADER_MODE is parsed: the other lines (a live user's API secret among
    them) pass through one at a time and are never parsed or kept.
    """
    mode: str | None = None
    try:
        with path.open(encoding="utf-8-sig") as fh:
            for line in fh:
                if _MODE_LINE.match(line):
                    value = dotenv_values(stream=io.StringIO(line), interpolate=False).get("TRADER_MODE")
                    mode = value.strip() if value is not None else None
    except (OSError, UnicodeDecodeError):
        return None
    return mode


def session_expiry(login: datetime) -> datetime:
    """The first 06:00 IST strictly after ``login``."""
    local = login.astimezone(IST)
    expiry = datetime.combine(local.date(), SESSION_EXPIRY, IST)
    return expiry if local < expiry else expiry + timedelta(days=1)


def checksum(api_key: str, token: str, api_secret: str) -> str:
    return hashlib.sha256(f"{api_key}{token}{api_secret}".encode()).hexdigest()


def _user_id_for(api_key: str, taken: set[str]) -> str:
    """A Kite-style client id ("PA" + 4 digits) derived from the key; stable once stored."""
    n = int(hashlib.sha256(api_key.encode()).hexdigest(), 16) % 10000
    for step in range(10000):
        candidate = f"PA{(n + step) % 10000:04d}"
        if candidate not in taken:
            return candidate
    raise RuntimeError("no free paper user id")


@dataclass(frozen=True)
class Session:
    access_token: str
    api_key: str
    login_time: datetime
    expires_at: datetime
    revoked: bool = False


@dataclass(frozen=True)
class ReloadResult:
    added: list[str]
    updated: list[str]
    skipped: list[str]
    active: int


class Accounts:
    """The registry of active paper accounts and their sessions. Thread-safe."""

    def __init__(self, db: Database, home: Home) -> None:
        self.db = db
        self.home = home
        self._lock = threading.Lock()
        self._active: dict[str, Account] = {}
        self._sessions: dict[str, Session] = {}
        self._bad_checksums: dict[str, int] = {}  # request token -> wrong checksums so far

    # --- accounts ----------------------------------------------------------------------------
    def reload(self, now: datetime) -> ReloadResult:
        """Read the home's paper env files and upsert them into the ``accounts`` table."""
        found: dict[str, tuple[str, str, float]] = {}
        consent: dict[str, str] = {}
        skipped: list[str] = []
        for user in list_users(self.home):
            mode = env_file_mode(self.home.env_file(user))
            if mode != "paper":
                # Never load or validate a live user's file here: nothing about it is logged.
                if mode == "live":
                    log.info("env file of %s skipped (live mode)", user)
                elif mode is None:
                    log.warning("env file of %s skipped (unreadable, or no TRADER_MODE line)", user)
                else:
                    log.warning("env file of %s skipped (TRADER_MODE is neither paper nor live)", user)
                skipped.append(user)
                continue
            try:
                settings = load_settings(self.home, user)
            except KitefleetError as exc:
                log.warning("skipping env file of %s: %s", user, exc)
                skipped.append(user)
                continue
            if not settings.is_paper:  # the file changed between the two reads
                log.info("env file of %s skipped (live mode)", user)
                skipped.append(user)
                continue
            if settings.api_key in found:
                log.warning("skipping %s: same API key %s as %s", user, settings.fingerprint,
                            found[settings.api_key][0])
                skipped.append(user)
                continue
            cash = settings.number("PAPER_STARTING_CASH")
            found[settings.api_key] = (user, settings.api_secret, cash)
            consent[settings.api_key] = settings.text("PAPER_DEMAT_CONSENT")

        added: list[str] = []
        updated: list[str] = []
        with self.db.transaction() as conn:
            rows = {r["api_key"]: r for r in conn.execute("SELECT * FROM accounts")}
            taken = {r["user_id"] for r in rows.values()}
            for api_key, (user, secret, cash) in found.items():
                row = rows.get(api_key)
                if row is None:
                    user_id = _user_id_for(api_key, taken)
                    taken.add(user_id)
                    conn.execute(
                        "INSERT INTO accounts (api_key, api_secret, user_id, user_name, starting_cash, "
                        "created_at) VALUES (?, ?, ?, ?, ?, ?)",
                        (api_key, secret, user_id, user, cash, now.isoformat()),
                    )
                    added.append(user)
                elif (row["api_secret"], row["user_name"], row["starting_cash"]) != (secret, user, cash):
                    conn.execute(
                        "UPDATE accounts SET api_secret = ?, user_name = ?, starting_cash = ? "
                        "WHERE api_key = ?",
                        (secret, user, cash, api_key),
                    )
                    updated.append(user)
            active = {
                r["api_key"]: Account(r["api_key"], r["api_secret"], r["user_id"], r["user_name"],
                                      float(r["starting_cash"]), consent[r["api_key"]])
                for r in conn.execute("SELECT * FROM accounts")
                if r["api_key"] in found
            }
        with self._lock:
            self._active = active
        for user in added:
            log.info("account added: %s", user)
        return ReloadResult(added, updated, skipped, len(active))

    def all(self) -> list[Account]:
        with self._lock:
            return sorted(self._active.values(), key=lambda a: a.user_name)

    def get(self, api_key: str) -> Account | None:
        with self._lock:
            return self._active.get(api_key)

    # --- login -------------------------------------------------------------------------------
    def new_request_token(self, api_key: str, now: datetime) -> str:
        if self.get(api_key) is None:
            raise input_error("Invalid `api_key`.")
        # Kite's request tokens are 32 letters and digits; clients (our login job) may rely on it.
        token = "".join(secrets.choice(_TOKEN_ALPHABET) for _ in range(32))
        with self.db.transaction() as conn:
            # created_at is wall time: the request token's life is a wall-clock timeout.
            conn.execute(
                "INSERT INTO request_tokens (request_token, api_key, created_at) VALUES (?, ?, ?)",
                (token, api_key, repr(time.time())),
            )
            conn.execute("DELETE FROM request_tokens WHERE CAST(created_at AS REAL) < ?",
                         (time.time() - 24 * 3600,))
        return token

    def create_session(self, api_key: str, request_token: str, given_checksum: str, now: datetime,
                       admit: Callable[[], None] | None = None) -> Session:
        """Exchange a request token. ``admit`` runs once the request has proved the account (the
        rate limiter): if it raises, the token is not used up."""
        account = self.get(api_key)
        if account is None:
            raise token_error("Invalid `api_key`.")
        if not request_token or not given_checksum:
            raise input_error("Missing `request_token` or `checksum`.")
        expected = checksum(api_key, request_token, account.api_secret)
        wrong_checksum = False
        with self.db.transaction() as conn:
            row = conn.execute("SELECT * FROM request_tokens WHERE request_token = ?",
                               (request_token,)).fetchone()
            if (row is None or row["used"] or row["api_key"] != api_key
                    or time.time() - float(row["created_at"]) > REQUEST_TOKEN_WALL_SECONDS):
                raise token_error(LOGIN_REFUSED)
            if not hmac.compare_digest(expected, given_checksum.lower()):
                wrong_checksum = True
            else:
                if admit is not None:
                    admit()
                conn.execute("UPDATE request_tokens SET used = 1 WHERE request_token = ?", (request_token,))
                session = Session(secrets.token_hex(16), api_key, now, session_expiry(now))
                conn.execute(
                    "INSERT INTO sessions (access_token, api_key, login_time, expires_at) VALUES (?, ?, ?, ?)",
                    (session.access_token, api_key, now.isoformat(), session.expires_at.isoformat()),
                )
        if wrong_checksum:
            self._wrong_checksum(request_token)
            raise token_error(LOGIN_REFUSED)
        with self._lock:
            self._sessions[session.access_token] = session
            self._bad_checksums.pop(request_token, None)
        log.info("login: %s (%s), session until %s", account.user_name, account.user_id,
                 session.expires_at.strftime(KITE_TIME))
        return session

    def _wrong_checksum(self, request_token: str) -> None:
        """Count a wrong checksum; the last allowed one uses the token up (its own transaction, so
        that the refusal which follows does not roll it back)."""
        with self._lock:
            attempts = self._bad_checksums.get(request_token, 0) + 1
            if attempts < MAX_CHECKSUM_ATTEMPTS:
                self._bad_checksums[request_token] = attempts
                return
            self._bad_checksums.pop(request_token, None)
        with self.db.transaction() as conn:
            conn.execute("UPDATE request_tokens SET used = 1 WHERE request_token = ?", (request_token,))
        log.warning("request token used up after %d wrong checksums", MAX_CHECKSUM_ATTEMPTS)

    def _session(self, access_token: str) -> Session | None:
        with self._lock:
            session = self._sessions.get(access_token)
        if session is not None:
            return session
        row = self.db.conn().execute("SELECT * FROM sessions WHERE access_token = ?",
                                     (access_token,)).fetchone()
        if row is None:
            return None
        session = Session(row["access_token"], row["api_key"], datetime.fromisoformat(row["login_time"]),
                          datetime.fromisoformat(row["expires_at"]), bool(row["revoked"]))
        with self._lock:
            self._sessions[access_token] = session
        return session

    def authenticate(self, authorization: str | None, now: datetime) -> Account:
        """The account of a valid ``Authorization: token api_key:access_token``, else 403."""
        if not authorization or not authorization.startswith("token "):
            raise token_error()
        api_key, _, access_token = authorization[6:].strip().partition(":")
        account = self.get(api_key)
        session = self._session(access_token) if access_token else None
        if account is None or session is None or session.api_key != api_key or session.revoked:
            raise token_error()
        if now >= session.expires_at:
            raise token_error("Token is invalid or has expired.")
        return account

    def expired_session_owner(self, authorization: str | None) -> str | None:
        """The key of a genuine session that has only expired (its holder proved the account, so
        the 403 is theirs to see in the audit); None for anything else."""
        if not authorization or not authorization.startswith("token "):
            return None
        api_key, _, access_token = authorization[6:].strip().partition(":")
        session = self._session(access_token) if access_token else None
        if session is None or session.api_key != api_key or session.revoked or self.get(api_key) is None:
            return None
        return api_key

    def revoke(self, api_key: str, access_token: str, admit: Callable[[], None] | None = None) -> None:
        """Revoke a session; ``admit`` (the rate limiter) runs once the request has proved the account."""
        session = self._session(access_token)
        if session is None or session.api_key != api_key:
            raise token_error()
        if admit is not None:
            admit()
        with self.db.transaction() as conn:
            conn.execute("UPDATE sessions SET revoked = 1 WHERE access_token = ?", (access_token,))
        with self._lock:
            self._sessions[access_token] = Session(session.access_token, session.api_key,
                                                   session.login_time, session.expires_at, True)
        account = self.get(api_key)
        log.info("logout: %s", account.user_name if account else api_key_fingerprint(api_key))


def session_payload(account: Account, session: Session) -> dict[str, object]:
    """The object ``POST /session/token`` returns (kite-api.md section 2)."""
    return {
        **profile_payload(account),
        "api_key": account.api_key,
        "access_token": session.access_token,
        "public_token": hashlib.sha256(f"public:{session.access_token}".encode()).hexdigest()[:32],
        "enctoken": hashlib.sha256(f"enc:{session.access_token}".encode()).hexdigest(),
        "refresh_token": "",
        "silo": "",
        "login_time": session.login_time.astimezone(IST).strftime(KITE_TIME),
    }


def profile_payload(account: Account) -> dict[str, object]:
    return {
        "user_id": account.user_id,
        "user_type": "individual",
        "email": f"{account.user_name.lower()}@paper.invalid",
        "user_name": account.user_name,
        "user_shortname": account.user_name,
        "broker": "ZERODHA",
        # Only what the paper broker accepts (MIS, NRML and BSE are refused).
        "exchanges": ["NSE"],
        "products": ["CNC"],
        "order_types": ["MARKET", "LIMIT", "SL", "SL-M"],
        "avatar_url": None,
        "meta": {"demat_consent": account.demat_consent},
    }

