"""One user's settings, read from ``env/<User>.env`` with ``dotenv_values()``, never into
``os.environ`` (``load_dotenv`` would let an inherited variable win over the file).

Over 400 lines because the schema (every key with its type, default and modes) is one table here:
the one source of the settings' defaults.

Strict by design: a missing, empty, undecodable or group/other-readable file, a line that does not
parse, an unknown key (a typo such as ``KITE_API_KEYY``), a missing required key, or a value of
the wrong type or range is refused with one line naming the file and every offending key.

Error messages reach stderr, ``orchestrator.py users``, supervisord's logs and the paper broker's
log, so they never echo what might be a secret: an unknown key is named only when it is a near
miss of a schema key (a typo), otherwise only its line number is given; a line without ``=`` (a
token pasted alone) is never shown; and no value is ever shown, of any key: a secret pasted as
the value of a harmless key (``KITE_ROOT=<secret>``) would otherwise be printed whole. A refused
value is described by its key, its line and the form expected.

The schema below is the single list of env keys; README.md and env/example.env document it.
"""

from __future__ import annotations

import difflib
import hashlib
import io
import logging
import math
import re
import stat
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import time
from pathlib import Path
from types import MappingProxyType

from dotenv import dotenv_values
from dotenv.parser import parse_stream

from kitefleet.errors import ConfigError
from kitefleet.home import Home
from kitefleet.users import read_env_file, validate_user_name

MODES = ("paper", "live")
DEFAULT_PAPER_ROOT = "http://127.0.0.1:8765"
LIVE_ROOT = "https://api.kite.trade"


class _Bad(ValueError):
    pass


def _text(v: str) -> str:
    if not v:
        raise _Bad("is empty")
    return v


def _token(v: str) -> str:
    if not v:
        raise _Bad("is empty")
    if re.search(r"\s", v):
        raise _Bad("contains whitespace")
    return v


def _choice(*choices: str) -> Callable[[str], str]:
    def parse(v: str) -> str:
        if v not in choices:
            raise _Bad(f"must be one of {', '.join(choices)}")
        return v

    return parse


def _number(kind: type, lo: float | None = None, hi: float | None = None,
            lo_open: bool = False) -> Callable[[str], float | int]:
    def parse(v: str) -> float | int:
        try:
            n = kind(v.replace("_", ""))
        except ValueError:
            raise _Bad(f"must be {'an integer' if kind is int else 'a number'}") from None
        if not math.isfinite(n):  # nan passes every comparison below
            raise _Bad("must be a finite number")
        if lo is not None and (n < lo or (lo_open and n == lo)):
            raise _Bad(f"must be {'>' if lo_open else '>='} {lo:g}")
        if hi is not None and n > hi:
            raise _Bad(f"must be <= {hi:g}")
        return n

    return parse


def _root(v: str) -> str:
    if not re.match(r"^https?://[A-Za-z0-9.\-\[\]:]+(:\d+)?/?$", v):
        raise _Bad("must look like http://127.0.0.1:8765")
    return v.rstrip("/")


def parse_schedule(v: str) -> tuple[time, ...] | str | None:
    """``off``; ``session`` (the whole market session); or ``HH:MM[,HH:MM...]`` in IST."""
    v = v.strip().lower()
    if v == "off":
        return None
    if v == "session":
        return "session"
    out = []
    for part in v.split(","):
        try:
            out.append(time.fromisoformat(part.strip()))
        except ValueError:
            raise _Bad("must be off, session, or HH:MM[,HH:MM...]") from None
    return tuple(sorted(out))


_NOTIFY_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://\S+$")


def parse_notify_urls(v: str) -> tuple[str, ...]:
    """``NOTIFY_URLS``: comma-separated Apprise URLs. Only their form is checked here (the lean
    scheduler loads settings and never imports Apprise); whether Apprise takes each one is
    checked by the processes that send (workers/jobs/notify.py), which name the position only."""
    urls = tuple(u.strip() for u in v.split(",") if u.strip())
    for position, url in enumerate(urls, 1):
        if not _NOTIFY_URL.match(url):
            raise _Bad(f"entry {position} is not a URL (service://...)")
    return urls


def notify_url_secrets(url: str) -> list[str]:
    """The parts of a notification URL that may be a token: the URL, its userinfo, a host that is
    not a host name (Telegram's bot token, a Discord webhook id), each path segment and each query
    value of 4 or more characters (the redactor ignores shorter ones)."""
    from urllib.parse import parse_qsl, unquote, urlsplit

    parts = [url]
    rest = url.split("://", 1)[1]
    netloc, _, tail = rest.partition("/")
    path, _, query = tail.partition("?")
    userinfo, at, host = netloc.rpartition("@")
    if at:
        parts += [unquote(p) for p in userinfo.split(":", 1)]
    hostname, _, port = host.partition(":") if not host.startswith("[") else (host, "", "")
    a_host_name = hostname == "localhost" or bool(
        re.match(r"^(\d+\.){3}\d+$|^\[[0-9a-fA-F:]+\]$|^[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$", hostname))
    if not a_host_name:
        parts += [host, hostname]
    if port and not port.isdigit():
        parts.append(port)  # Telegram's tgram://123456789:AAH.../chat: the token after the colon
    parts += [unquote(seg) for seg in path.split("/")]
    parts += [unquote(val) for _, val in parse_qsl(urlsplit("x://h/?" + query).query)]
    return [p for p in dict.fromkeys(parts) if len(p) >= 4]


def _hhmm(v: str) -> time:
    try:
        return time.fromisoformat(v)
    except ValueError:
        raise _Bad("must be HH:MM (IST)") from None


@dataclass(frozen=True)
class Key:
    name: str
    parse: Callable[[str], object]
    default: object = None
    doc: str = ""
    required: bool = False
    secret: bool = False
    #: not secret, but shown only as a fingerprint (no value of any key is shown in an error)
    sensitive: bool = False
    modes: tuple[str, ...] = MODES
    #: a default that depends on the mode: {"paper": ..., "live": ...}
    mode_default: Mapping[str, object] | None = None
    example: str | None = None


SCHEMA: tuple[Key, ...] = (
    Key("TRADER_MODE", _choice(*MODES), required=True, example="paper",
        doc="paper (the local paper broker) or live (real money on Zerodha)."),
    Key("KITE_API_KEY", _token, required=True, sensitive=True, example="your_api_key",
        doc="The Kite Connect app's API key (shown only as a fingerprint)."),
    Key("KITE_API_SECRET", _token, required=True, secret=True, example="your_api_secret",
        doc="The Kite Connect app's API secret (never printed or logged)."),
    Key("KITE_ROOT", _root, default=DEFAULT_PAPER_ROOT, modes=("paper",),
        doc="Paper only: the paper broker's address. Live always uses Kite's own root."),
    Key("KITE_ACCESS_TOKEN", _token, secret=True, modes=("live",),
        doc="Live only, optional: an access token to use when data/<User>/session.json is missing "
            "or expired (a session file from 'orchestrator.py login' wins)."),
    Key("LOG_LEVEL", _choice("DEBUG", "INFO", "WARNING", "ERROR"), default="INFO",
        doc="Log level of the user's log files and console output."),
    Key("PAPER_STARTING_CASH", _number(float, 0, lo_open=True), default=1_000_000.0, modes=("paper",),
        doc="Paper only: the account's starting cash in rupees (read by the paper broker)."),
    Key("PAPER_DEMAT_CONSENT", _choice("consent", "physical", ""), default="consent", modes=("paper",),
        doc="Paper only: profile().meta.demat_consent (consent = DDPI/POA; empty = none: a sale of "
            "settled holdings is rejected unless authorised that day, POST /paper/authorise)."),
    Key("UNIVERSE", _text, default="NIFTY50",
        doc="Symbols pattern_daily scans: NIFTY50, or a path (relative to the home) to a CSV with "
            "a ticker/symbol column."),
    Key("MANAGE_SCOPE", _choice("own", "all"), default="own",
        doc="Which holdings the bot manages: own (default: only the shares it bought, migrated or "
            "was handed with 'orchestrator.py adopt'; stops, exits, doctor's coverage and limits "
            "cover the owned quantity) or all (legacy: every NSE CNC holding of the account, hand-"
            "bought shares included; a warning at each start)."),
    Key("MIN_SCORE", _number(int, 0, 7), default=5,
        doc="place_orders_daily enters only symbols whose pattern score is at least this (0-7)."),
    Key("MAX_CNC_POSITIONS", _number(int, 1, 200), default=10,
        doc="At most this many positions the bot owns at once (open entry orders included); a "
            "person's holdings do not count under MANAGE_SCOPE=own."),
    Key("MAX_NEW_ENTRIES_PER_DAY", _number(int, 1, 200), default=10,
        doc="At most this many new entries (symbols bought) per session, over every run of the day "
            "(the legacy max_cnc_positions)."),
    Key("MAX_CAPITAL", _number(float, 0, lo_open=True), default=None,
        doc="Optional: at most this many rupees deployed by the bot (the owned shares at cost plus "
            "open entries) in an account it shares with a person; an entry is sized down to fit."),
    Key("MAX_POSITION_PERCENT", _number(float, 0, 100, lo_open=True), default=20.0,
        doc="No symbol's owned value after an entry above this share of the bot's equity (cash + "
            "owned shares x LTP); a larger entry is sized down to fit, not refused."),
    Key("MAX_DAILY_LOSS_PERCENT", _number(float, 0, 100, lo_open=True), default=3.0,
        doc="When the day's P&L of the owned shares (against the previous close, or today's fill; "
            "realised sells in, charges out) falls below minus this share of the bot's equity at the "
            "previous close, the user is halted until the next session's open. Checked by the "
            "watchdog on each positions refresh, or (watchdog off) by each stop and entry run."),
    Key("CAPITAL_DEPLOYMENT_PERCENT", _number(float, 0, 100, lo_open=True), default=50.0,
        doc="Share of available cash that one place_orders_daily run spreads over its entries."),
    Key("RISK_PER_TRADE_PERCENT", _number(float, 0, 100, lo_open=True), default=None,
        doc="Optional: cap each entry so that (entry - stop) x shares stays under this share of equity."),
    Key("MAX_ORDER_VALUE", _number(float, 0, lo_open=True), default=500_000.0,
        doc="No single order may be worth more than this many rupees; a larger entry is sized down."),
    Key("LOSS_LIMIT_ACTION", _choice("halt", "flatten"), default="halt",
        doc="What the daily loss limit does when it trips: halt (entries stop and open entries are "
            "cancelled until the next open; stops and exits go on) or flatten (the halt, then every "
            "position the bot owns is sold, as 'orchestrator.py halt USER --flatten'; a person's "
            "holdings never)."),
    Key("PRICE_BAND_PERCENT", _number(float, 0, 50, lo_open=True), default=3.0,
        doc="Pre-trade limit: an order price more than this far from the LTP is refused."),
    Key("ENTRY_SLIPPAGE_PERCENT", _number(float, 0, 5, lo_open=True), default=0.5,
        doc="place_orders_daily prices each entry at the ask level covering its quantity (fresh quote); "
            "an entry whose price is more than this above the LTP is skipped (0 < x <= 5)."),
    Key("ENTRY_MAX_GAP_PERCENT", _number(float, 0, 20, lo_open=True), default=3.0,
        doc="place_orders_daily skips a symbol whose price at the send is more than this far above the "
            "scan's entry (0 < x <= 20); also one trading below the scan's stop or at its upper circuit."),
    Key("GTT_LIMIT_BUFFER_PERCENT", _number(float, 0, 20, lo_open=True), default=5.0,
        doc="update_cnc_stoploss: the GTT's limit price sits this far below its trigger."),
    Key("STOP_MIN_GAP_PERCENT", _number(float, 0.3, 20), default=1.0,
        doc="No stop GTT (a fallback included) is placed within this many percent of the LTP: Kite "
            "disables a GTT within 0.25 %, and a disabled GTT protects nothing (0.3 <= x <= 20)."),
    Key("WATCHDOG_POLL_SECONDS", _number(int, 1, 3600), default=30,
        doc="hourly_candle_watchdog: simulated seconds between LTP polls."),
    Key("WATCHDOG_RULE", _choice("hourly_low", "atr_trailing"), default="hourly_low",
        doc="hourly_candle_watchdog exit rule: hourly_low (the lower of the last two completed hourly "
            "lows) or atr_trailing (legacy ATR trailing stop; only moves up)."),
    Key("SCHEDULE_UPDATE_CNC_STOPLOSS", parse_schedule, default=parse_schedule("09:00,14:00"),
        example="09:00,14:00", doc="When the scheduler runs update_cnc_stoploss (IST times, or off)."),
    Key("SCHEDULE_HOURLY_CANDLE_WATCHDOG", parse_schedule, default="session", example="session",
        doc="When the scheduler runs hourly_candle_watchdog: session (open to close) or off."),
    Key("SCHEDULE_PATTERN_DAILY", parse_schedule, default=parse_schedule("16:00"), example="16:00",
        doc="When the scheduler runs pattern_daily (after the close), or off."),
    Key("SCHEDULE_PLACE_ORDERS_DAILY", parse_schedule,
        mode_default={"paper": parse_schedule("09:20"), "live": None}, example="09:20",
        doc="When the scheduler runs place_orders_daily. Default 09:20 in paper mode and off in live "
            "mode: real-money entries are opted into."),
    Key("ENTRY_CUTOFF", _hhmm, default=time(11, 0), example="11:00",
        doc="After downtime, a missed place_orders_daily still runs only before this time (IST)."),
    Key("ENTRY_TIMEOUT_MINUTES", _number(int, 1, 375), default=15,
        doc="place_orders_daily waits this many market-clock minutes after sending an entry, then cancels "
            "what is left unfilled (a filled part is kept); the watchdog cancels it on its next poll if "
            "that run was killed (1-375)."),
    Key("NOTIFY_URLS", parse_notify_urls, default=(), secret=True,
        example="tgram://bottoken/ChatID,mailto://user:pass@gmail.com",
        doc="Where this user's notifications go: comma-separated Apprise URLs (Telegram, e-mail, Slack, "
            "Discord, ntfy, json:// webhooks, ...). They carry tokens: never printed or logged. Empty: "
            "no notifications."),
    Key("NOTIFY_LEVEL", _choice("trades", "all", "warnings"), default="trades",
        doc="trades (fills, exits, warnings, failures, the daily report), all (adds entries placed and "
            "stops placed or moved) or warnings (everything but fills and the daily report)."),
    Key("NOTIFY_GIVE_UP_HOURS", _number(float, 0, 24 * 14, lo_open=True), default=24.0,
        doc="An event no service accepted for this many (wall-clock) hours is dropped with a warning."),
    Key("SCHEDULE_LOGIN_REMINDER", parse_schedule, default=parse_schedule("08:15"), example="08:15",
        doc="When the scheduler checks for a valid session and, without one, sends a login reminder "
            "(live mode; IST times, or off)."),
    Key("SCHEDULE_DAILY_REPORT", parse_schedule, default=parse_schedule("16:15"), example="16:15",
        doc="When the scheduler writes the daily report (data/<User>/reports/) and sends it, or off."),
)
KEYS: Mapping[str, Key] = MappingProxyType({k.name: k for k in SCHEMA})
# a key declared twice would be documented twice and validated by whichever came last
assert len(KEYS) == len(SCHEMA), sorted(k.name for k in SCHEMA if [x.name for x in SCHEMA].count(k.name) > 1)


def api_key_fingerprint(api_key: str) -> str:
    """First 4 characters, a colon, then the first 12 hex digits of the key's SHA-256."""
    return f"{api_key[:4]}:{hashlib.sha256(api_key.encode()).hexdigest()[:12]}"


@dataclass(frozen=True)
class Settings:
    user: str
    env_file: Path
    values: Mapping[str, object]
    #: keys actually present in the env file
    file_keys: frozenset[str] = field(default_factory=frozenset)

    def __getitem__(self, key: str) -> object:
        return self.values[key]

    def get(self, key: str, default: object = None) -> object:
        return self.values.get(key, default)

    # Typed reads of one schema key. The schema is the one list of keys and defaults: a key these
    # values lack (Settings built by hand, in tests) reads as its schema default, and a name the
    # schema does not list is a KeyError, not a silent default.
    def _value(self, key: str) -> object:
        spec = KEYS[key]
        if key in self.values:
            return self.values[key]
        if spec.mode_default is not None:
            return spec.mode_default.get(str(self.values.get("TRADER_MODE", "paper")))
        return spec.default

    def optional_number(self, key: str) -> float | None:
        """A numeric key that may be unset (MAX_CAPITAL, RISK_PER_TRADE_PERCENT)."""
        value = self._value(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError(f"setting {key} is {type(value).__name__}, not a number")
        return float(value)

    def number(self, key: str) -> float:
        value = self.optional_number(key)
        if value is None:
            raise KeyError(f"setting {key} has no value and no default")
        return value

    def integer(self, key: str) -> int:
        value = self._value(key)
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"setting {key} is {type(value).__name__}, not an integer")
        return value

    def time_of_day(self, key: str) -> time:
        value = self._value(key)
        if not isinstance(value, time):
            raise TypeError(f"setting {key} is {type(value).__name__}, not a time of day")
        return value

    def text(self, key: str) -> str:
        value = self._value(key)
        if not isinstance(value, str):
            raise TypeError(f"setting {key} is {type(value).__name__}, not text")
        return value

    def schedule(self, key: str) -> tuple[time, ...] | str | None:
        """A ``SCHEDULE_*`` key: its slot times, ``"session"``, or None (off)."""
        value = self._value(key)
        if value is None or isinstance(value, str):
            return value
        if isinstance(value, tuple) and all(isinstance(t, time) for t in value):
            return value
        raise TypeError(f"setting {key} is {type(value).__name__}, not a schedule")

    @property
    def mode(self) -> str:
        return str(self.values["TRADER_MODE"])

    @property
    def is_paper(self) -> bool:
        return self.mode == "paper"

    @property
    def api_key(self) -> str:
        return str(self.values["KITE_API_KEY"])

    @property
    def api_secret(self) -> str:
        return str(self.values["KITE_API_SECRET"])

    @property
    def kite_root(self) -> str:
        return str(self.values["KITE_ROOT"]) if self.is_paper else LIVE_ROOT

    @property
    def log_level(self) -> str:
        return str(self.values["LOG_LEVEL"])

    @property
    def fingerprint(self) -> str:
        return api_key_fingerprint(self.api_key)

    @property
    def data_source(self) -> str:
        """Which market-data folder this user reads: ``live`` or the paper broker's address."""
        return self.kite_root if self.is_paper else "live"

    def secrets(self) -> Iterator[str]:
        for key in SCHEMA:
            value = self.values.get(key.name)
            if key.secret and value and isinstance(value, tuple):  # NOTIFY_URLS
                for url in value:
                    yield from notify_url_secrets(url)
            elif key.secret and value:
                yield str(value)

    def __repr__(self) -> str:  # never show secrets, even in a traceback
        return f"Settings(user={self.user!r}, mode={self.mode!r}, api_key={self.fingerprint!r})"

    __str__ = __repr__


def _rel(path: Path, home: Home) -> str:
    try:
        return str(path.relative_to(home.root))
    except ValueError:
        return str(path)


def load_settings(home: Home, user: str) -> Settings:
    """Read and validate ``env/<user>.env``. Raises ConfigError (one line) on any problem."""
    validate_user_name(user)
    path = home.env_file(user)
    shown = _rel(path, home)
    # Missing, a symlink, not a regular file, not ours, too big: refused before it is read whole.
    st, raw = read_env_file(path, shown)
    if st.st_mode & 0o077:
        raise ConfigError(
            f"{shown}: readable by group or others (mode {stat.S_IMODE(st.st_mode):04o}); "
            f"run: chmod 600 {path}"
        )
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{shown}: not valid UTF-8 (byte {exc.start}); save it as UTF-8") from None
    return parse_settings(text, user=user, env_file=path, shown=shown)


#: How close an unknown key must be to a schema key to count as a typo whose name may be shown.
#: High enough that a pasted token never qualifies, low enough for a doubled or dropped letter.
TYPO_CUTOFF = 0.75
_KEY_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
def typo_of(name: str) -> str | None:
    """The schema key ``name`` is a near miss of (``KITE_API_KEYY`` -> ``KITE_API_KEY``), else None.
    Only then may ``name`` itself be printed: anything else may be a pasted secret."""
    if not _KEY_NAME.match(name):
        return None
    close = difflib.get_close_matches(name.upper(), list(KEYS), n=1, cutoff=TYPO_CUTOFF)
    return close[0] if close else None


# C901 on purpose: one pass that collects every problem of the file (bad line, unknown key or typo,
# empty value, key of the other mode, bad value, missing key) so a person fixes them all at once.
def parse_settings(text: str, *, user: str, env_file: Path, shown: str) -> Settings:  # noqa: C901
    problems: list[str] = []
    bindings = list(parse_stream(io.StringIO(text)))
    bad_lines = [b.original.line for b in bindings if b.error]
    for line in bad_lines:
        problems.append(f"line {line} does not parse")
    # python-dotenv also logs its own warning for each line that does not parse; the line is
    # reported above, once, in our one-line error.
    dotenv_log = logging.getLogger("dotenv.main")
    previous = dotenv_log.level
    dotenv_log.setLevel(logging.ERROR)
    try:
        raw = dotenv_values(stream=io.StringIO(text), interpolate=False)
    finally:
        dotenv_log.setLevel(previous)
    if not raw and not bad_lines:
        raise ConfigError(f"{shown}: empty env file; copy the keys from env/example.env")

    # Unknown keys and bare lines, reported by line number (the text may be a secret).
    for binding in bindings:
        name = binding.key
        if binding.error or name is None or name in KEYS:
            continue
        line = binding.original.line
        if binding.value is None:
            problems.append(f"line {line}: no '=' (text not shown: it may be a secret)")
            continue
        close = typo_of(name)
        if close is not None:
            problems.append(f"line {line}: unknown key {name} (did you mean {close}?)")
        else:
            problems.append(f"line {line}: unknown key (not shown: it may be a secret)")

    # dotenv keeps the last binding of a repeated key; so does the line an error names.
    line_of = {b.key: b.original.line for b in bindings if b.key is not None and not b.error}
    values: dict[str, object] = {}
    mode_raw = raw.get("TRADER_MODE")
    mode = mode_raw if mode_raw in MODES else None
    for name, value in raw.items():
        key = KEYS.get(name)
        if key is None:
            continue  # reported above
        where = f"{name} (line {line_of[name]})" if name in line_of else name
        if value is None:
            problems.append(f"{where} has no '=value'")
            continue
        value = value.strip()
        if mode is not None and mode not in key.modes:
            problems.append(f"{where} is not allowed with TRADER_MODE={mode}")
            continue
        try:
            values[name] = key.parse(value)
        except (_Bad, ValueError) as exc:
            # The value is never echoed, whatever the key: see the module docstring.
            reason = str(exc) if isinstance(exc, _Bad) else "has the wrong format"
            problems.append(f"{where} {reason} (value not shown)")
    for key in SCHEMA:
        if key.required and key.name not in raw:
            problems.append(f"missing required key {key.name}")
    if problems:
        raise ConfigError(f"{shown}: " + "; ".join(problems))

    file_keys = frozenset(values)
    assert mode is not None
    for key in SCHEMA:
        if key.name not in values:
            if key.mode_default is not None:
                values[key.name] = key.mode_default.get(mode)
            elif mode in key.modes:
                values[key.name] = key.default
            else:
                values[key.name] = None
    return Settings(user=user, env_file=env_file, values=MappingProxyType(values), file_keys=file_keys)


def example_env_text() -> str:
    """The text of env/example.env, generated from the schema (a test keeps the file in sync)."""
    lines = [
        "# kitefleet: one env file per user, env/<User>.env, mode 0600 (chmod 600 env/<User>.env).",
        "# The user's name is the file's stem. Copy this file, fill in the keys, delete what you",
        "# do not need: every key below except the first three is optional and shows its default.",
        "",
    ]
    for key in SCHEMA:
        lines.extend(f"# {line}" for line in _wrap(key.doc))
        if len(key.modes) == 1:
            lines.append(f"# ({key.modes[0]} mode only)")
        if key.required:
            lines.append(f"{key.name}={key.example}")
        else:
            default = key.example if key.example is not None else key.default
            if key.mode_default is not None:
                shown_default = ", ".join(f"{m}: {_fmt(v)}" for m, v in key.mode_default.items())
                lines.append(f"# default: {shown_default}")
                lines.append(f"#{key.name}={_fmt(default)}")
            else:
                lines.append(f"#{key.name}={_fmt(default)}")
        lines.append("")
    return "\n".join(lines)


def _fmt(v: object) -> str:
    if v is None:
        return "off" if False else ""
    if isinstance(v, tuple):
        return ",".join(t.strftime("%H:%M") for t in v)
    if isinstance(v, time):
        return v.strftime("%H:%M")
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def _wrap(text: str, width: int = 96) -> list[str]:
    import textwrap

    return textwrap.wrap(text, width) or [""]
