"""The schema of a user's state document, in one place: what kitefleet.state checks on every load
(after kitefleet.state_migrations has upgraded an older file) and before every commit.

Why: the jobs read the state with ``state.get("stops") or {}`` and ``intent["kind"]``; a file whose
top level is fine but whose inner types are not (``"stops": [1, 2]``, an intent that is a string)
crashed them with a traceback, while doctor called the file valid. A problem is reported as one
line naming the place inside the document, e.g. ``stops.INFY.gtt_id: expected an integer or null,
got "x"``.

Strict about the types of the keys the code reads; permissive about keys it does not know inside
a record and at the top level (a newer job may add some: they are kept as they are). The writers,
whose on-disk contracts these rules follow:

    key            written by                                    contract in
    -------------  --------------------------------------------  ------------------------------------
    meta           kitefleet.state, workers.intents (prune),     kitefleet.state
                   migrate-state (``migrated_from``)
    positions      workers.portfolio, update_cnc_stoploss,       workers.portfolio
                   migrate-state (legacy records, verbatim)
    daily_tickers  workers.portfolio (``long``), legacy          workers.portfolio
    intents        workers.intents                               workers.intents
    stops          update_cnc_stoploss, state_migrations 1 -> 2  workers.jobs.update_cnc_stoploss
    entry_plans    workers.entry_plan                            workers.entry_plan
    watchdog       workers.watchdog                              workers.watchdog
    equity_history workers.jobs.daily_report                     workers.jobs.daily_report
    ledger         workers.ledger (stop, entry and watchdog runs),  workers.ledger
                   adopt / release (``pending``), migrations 2 -> 3
    loss_limit     workers.loss_limit                            workers.loss_limit

Checking walks only the schema (a fixed depth of about ten), never an unknown value, so a hostile
document cannot make it recurse without end.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime
from typing import Any

#: a place inside the document: object keys and list indexes from the top
Path = tuple[str | int, ...]


class Problem:
    """What is wrong and where: ``parts`` is the path from the value up (each rule that passes
    the problem on adds its key), so nothing is built while a value is fine."""

    __slots__ = ("parts", "what")

    def __init__(self, what: str) -> None:
        self.what = what
        self.parts: list[str | int] = []

    def under(self, part: str | int) -> Problem:
        self.parts.append(part)
        return self

    def line(self) -> str:
        return f"{render_path(tuple(reversed(self.parts)))}: {self.what}"


#: a rule: the problem of a value, or None
Rule = Callable[[Any], Problem | None]

_PLAIN_KEY = re.compile(r"[A-Za-z0-9_&-]+")
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_MAX_PATH_PARTS = 8


def render_path(path: Path) -> str:
    """``stops.INFY.gtt_id``, ``watchdog.2026-03-04.symbols.INFY.exits[0]``; a key that is not a
    plain word is quoted (``entry_plans["2026-03-04|pick.json"]``); a very deep one is cut."""
    out = ""
    for n, part in enumerate(path):
        if n == _MAX_PATH_PARTS:
            return f"{out}…"
        if isinstance(part, int):
            out += f"[{part}]"
        elif _PLAIN_KEY.fullmatch(part):
            out += f".{part}" if out else part
        else:
            out += f"[{json.dumps(part, ensure_ascii=False)[:60]}]"
    return out or "the top level"


def describe(value: Any) -> str:
    """What a JSON value is, for a message: scalars shown (cut), containers only named (a
    container can be nested too deep to print safely)."""
    if isinstance(value, dict):
        return f"an object of {len(value)} key(s)"
    if isinstance(value, list):
        return f"a list of {len(value)} item(s)"
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 40 else text[:39] + "…"


# --- rules -----------------------------------------------------------------------------------------


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return (_is_int(v) or isinstance(v, float)) and math.isfinite(v)


def _is_date(v: Any) -> bool:
    if not isinstance(v, str) or not _ISO_DATE.fullmatch(v):
        return False
    try:
        date.fromisoformat(v)
    except ValueError:
        return False
    return True


_KINDS: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "string": ("a string", lambda v: isinstance(v, str)),
    "integer": ("an integer", _is_int),
    "number": ("a number", _is_number),
    "date": ("a date YYYY-MM-DD", _is_date),
    "null": ("null", lambda v: v is None),
}
#: kind -> the exact types json.loads gives that need no further look (bool is not int here)
_PLAIN_TYPES: dict[str, tuple[type, ...]] = {"string": (str,), "integer": (int,), "number": (int,),
                                             "null": (type(None),), "date": ()}


def kind(*names: str) -> Rule:
    """A scalar of one of the kinds ``string``, ``integer``, ``number`` (finite), ``date``
    (``YYYY-MM-DD``), ``null``."""
    tests = [_KINDS[n][1] for n in names]
    plain = frozenset(t for n in names for t in _PLAIN_TYPES[n])
    expected = " or ".join(_KINDS[n][0] for n in names)

    def rule(value: Any) -> Problem | None:
        # The type test first: it settles nearly every value; the predicates handle the rest
        # (floats, dates, and subclasses a writer may put in memory).
        if type(value) in plain or any(test(value) for test in tests):
            return None
        return Problem(f"expected {expected}, got {describe(value)}")

    return rule


def moment(*, nullable: bool = False) -> Rule:
    """An ISO date-time with its offset (``2026-03-04T09:35:12+05:30``): a job compares it with
    the clock, so a naive or unreadable one would fail there, not here."""
    expected = "an ISO date-time with its offset" + (" or null" if nullable else "")

    def rule(value: Any) -> Problem | None:
        if value is None and nullable:
            return None
        if isinstance(value, str):
            try:
                if datetime.fromisoformat(value).tzinfo is not None:
                    return None
            except ValueError:
                pass
        return Problem(f"expected {expected}, got {describe(value)}")

    return rule


def one_of(*values: str) -> Rule:
    def rule(value: Any) -> Problem | None:
        if isinstance(value, str) and value in values:
            return None
        return Problem(f"expected one of {', '.join(values)}, got {describe(value)}")

    return rule


def record(fields: Mapping[str, Rule], *, required: Sequence[str] = (), nullable: bool = False) -> Rule:
    """An object whose known ``fields`` follow their rules; other keys are allowed as they are."""
    checks = tuple(fields.items())
    expected = "an object or null" if nullable else "an object"

    def rule(value: Any) -> Problem | None:
        if not isinstance(value, dict):
            if value is None and nullable:
                return None
            return Problem(f"expected {expected}, got {describe(value)}")
        for key in required:
            if key not in value:
                return Problem("missing (every record here has it)").under(key)
        for key, sub in checks:
            if key in value and (problem := sub(value[key])) is not None:
                return problem.under(key)
        return None

    return rule


def map_of(item: Rule) -> Rule:
    """An object of any keys (symbols, tags, sessions), each value following ``item``."""

    def rule(value: Any) -> Problem | None:
        if not isinstance(value, dict):
            return Problem(f"expected an object, got {describe(value)}")
        for key, sub in value.items():
            if (problem := item(sub)) is not None:
                return problem.under(key)
        return None

    return rule


def list_of(item: Rule, *, nullable: bool = False) -> Rule:
    expected = "a list or null" if nullable else "a list"

    def rule(value: Any) -> Problem | None:
        if not isinstance(value, list):
            if value is None and nullable:
                return None
            return Problem(f"expected {expected}, got {describe(value)}")
        for n, sub in enumerate(value):
            if (problem := item(sub)) is not None:
                return problem.under(n)
        return None

    return rule


def anything(value: Any) -> Problem | None:
    return None


# --- the document ----------------------------------------------------------------------------------
STR, OPT_STR = kind("string"), kind("string", "null")
OPT_NUM, OPT_INT = kind("number", "null"), kind("integer", "null")
OPT_DATE = kind("date", "null")
#: a broker id: Kite order ids are strings, GTT ids integers; both have been stored as either
BROKER_ID = kind("string", "integer", "null")

META = record({"created_at": OPT_STR, "last_updated": OPT_STR, "intents_pruned_on": OPT_DATE,
               "migrated_from": record({}, nullable=True)})

# Legacy records (migrate-state copies them verbatim) carry many more keys; only what the jobs and
# doctor read is checked: quantity (int()-ed), closed_at (truthiness), tag, prices (compared).
POSITION = record({"quantity": OPT_NUM, "closed_at": OPT_STR, "tag": OPT_STR, "product_type": OPT_STR,
                   "entry_price": OPT_NUM, "stop_loss": OPT_NUM, "gtt_order_id": BROKER_ID})

DAILY_TICKERS = record({"long": list_of(STR), "short": list_of(STR)})

INTENT_PARAMS = record({"exchange": OPT_STR, "tradingsymbol": OPT_STR,
                        "trigger_values": list_of(kind("number"), nullable=True),
                        "orders": list_of(record({"quantity": OPT_NUM}), nullable=True)}, nullable=True)
INTENT = record({
    "tag": STR, "kind": one_of("order", "gtt", "cancel", "modify"), "symbol": STR, "purpose": STR, "job": STR,
    "session": OPT_DATE, "placed_on": OPT_DATE, "params": INTENT_PARAMS,
    "status": one_of("pending", "unknown", "sent", "failed", "unresolved", "resolved"),
    "broker_id": BROKER_ID, "order_status": OPT_STR, "created_at": STR, "updated_at": STR, "note": OPT_STR,
    # entry intents: when an entry still open is cancelled (workers.entry_wait)
    "cancel_after": moment(nullable=True),
}, required=("tag", "kind", "symbol", "status"))

STOP = record({"stop": OPT_NUM, "source": OPT_STR, "gtt_id": OPT_INT, "trigger": OPT_NUM,
               "limit_price": OPT_NUM, "quantity": OPT_INT, "updated_at": OPT_STR})

PLAN_ENTRY = record({"tag": OPT_STR, "entry": OPT_NUM, "stop_loss": OPT_NUM, "target_price": OPT_NUM,
                     "risk_reward_ratio": OPT_NUM, "quantity": OPT_INT})
ENTRY_PLAN = record({"session": kind("date"), "source": STR, "created_at": STR, "cash": kind("number"),
                     "equity": kind("number"), "n_selected": kind("integer"), "percent": OPT_NUM,
                     "entries": map_of(PLAN_ENTRY)},
                    required=("session", "cash", "equity", "n_selected"))

WATCHDOG_EXIT = record({
    "tag": STR, "purpose": OPT_STR, "status": STR, "order_id": BROKER_ID, "order_status": OPT_STR,
    "price": OPT_NUM, "quantity": OPT_NUM, "filled": OPT_NUM, "modifications": OPT_INT, "retry_after": OPT_STR,
    "gtt_id": OPT_INT, "decided_at": OPT_STR, "previous_poll_at": OPT_STR, "quoted_at": OPT_STR,
    "gtt": record({"synced_filled": OPT_NUM, "actions": list_of(record({}))}, nullable=True),
}, required=("tag",))
WATCHDOG_SYMBOL = record({
    "entry": record({"at": OPT_STR, "price": OPT_NUM}, nullable=True),
    "hourly": record({"as_of": OPT_STR, "since": OPT_STR, "lows": list_of(anything), "level": OPT_NUM,
                      "applied_at": OPT_STR}, nullable=True),
    "atr": record({"atr": OPT_NUM, "anchor": OPT_NUM, "stop": OPT_NUM, "carried_from": OPT_STR}, nullable=True),
    "exits": list_of(WATCHDOG_EXIT),
    "quotes": list_of(list_of(anything)),
}, required=("exits",))
WATCHDOG_SESSION = record({"rule": OPT_STR, "updated_at": OPT_STR, "symbols": map_of(WATCHDOG_SYMBOL),
                           "poll_gaps": list_of(list_of(STR))})

#: equity_history[YYYY-MM-DD]: the session's close as the daily report saw it (workers.jobs.daily_report)
EQUITY_DAY = record({"equity": kind("number"), "cash": OPT_NUM, "realised": OPT_NUM, "charges": OPT_NUM,
                     "trades": OPT_INT, "recorded_at": OPT_STR}, required=("equity",))

def _positive_int(value: Any) -> Problem | None:
    if _is_int(value) and value > 0:
        return None
    return Problem(f"expected an integer > 0, got {describe(value)}")


_LOT_FIELDS = record({"quantity": _positive_int, "price": kind("number"), "date": kind("date"),
                      "source": one_of("entry", "migrated", "adopted"), "order_id": STR},
                     required=("quantity", "price", "date", "source"))


def _lot(value: Any) -> Problem | None:
    """A ledger lot; an ``entry`` lot names its order."""
    if (problem := _LOT_FIELDS(value)) is not None:
        return problem
    if value["source"] == "entry" and "order_id" not in value:
        return Problem("missing (an entry lot names its order)").under("order_id")
    return None


#: ledger: the lots the bot owns (workers.ledger); ``pending``: an adopt / release whose GTT change
#: a kill may have cut short (workers.jobs.adopt, workers.jobs.release)
LEDGER = record({
    "lots": map_of(list_of(_lot)),
    "applied": map_of(record({"symbol": STR, "side": one_of("BUY", "SELL"), "quantity": kind("integer"),
                              "session": kind("date")}, required=("symbol", "side", "quantity", "session"))),
    "shortfalls": map_of(record({"quantity": kind("integer"), "session": kind("date")},
                                required=("quantity", "session"))),
    "pending": map_of(record({"op": one_of("adopt", "release"), "quantity": _positive_int, "stop": OPT_NUM,
                              "session": kind("date"), "started_at": OPT_STR},
                             required=("op", "quantity", "session"))),
}, required=("lots",))
LOSS_LIMIT = record({"session": kind("date"), "base_equity": kind("number"), "base_source": OPT_STR,
                     "tripped_at": OPT_STR}, required=("session", "base_equity"))

#: top-level key -> its rule (``schema_version``, ``user`` and ``mode`` are checked by kitefleet.state)
DOCUMENT: dict[str, Rule] = {
    "meta": META,
    "positions": map_of(POSITION),
    "daily_tickers": DAILY_TICKERS,
    "intents": map_of(INTENT),
    "stops": map_of(STOP),
    "entry_plans": map_of(ENTRY_PLAN),
    "watchdog": map_of(WATCHDOG_SESSION),
    "equity_history": map_of(EQUITY_DAY),
    "ledger": LEDGER,
    "loss_limit": LOSS_LIMIT,
}


def document_problem(data: Mapping[str, Any]) -> str | None:
    """The first place where ``data`` (a state document whose top level kitefleet.state has
    checked) breaks the schema, as one line, or None."""
    for key, rule in DOCUMENT.items():
        if key in data and (problem := rule(data[key])) is not None:
            return problem.under(key).line()
    return None


# --- nesting too deep to parse -------------------------------------------------------------------
_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}:,]')
#: deeper than any state document is (the schema's deepest place is about ten levels down)
DEEP = 100


def too_deep_path(text: str, limit: int = DEEP) -> Path | None:
    """The path of the first container ``text`` opens more than ``limit`` levels deep, or None.
    For the message after json.loads gave up with a RecursionError; a scan of tokens, not a
    parse, so it cannot recurse itself."""
    stack: list[list[Any]] = []  # [opener, key of the current member or index of the current item]
    last_string = '""'
    for m in _TOKENS.finditer(text):
        tok = m.group()
        if tok[0] == '"':
            last_string = tok
        elif tok in "[{":
            if len(stack) >= limit:
                return tuple(part for _, part in stack)
            stack.append([tok, 0 if tok == "[" else ""])
        elif tok in "]}":
            if stack:
                stack.pop()
        elif tok == ":" and stack and stack[-1][0] == "{":
            try:
                stack[-1][1] = str(json.loads(last_string))
            except ValueError:
                stack[-1][1] = last_string.strip('"')
        elif tok == "," and stack and stack[-1][0] == "[":
            stack[-1][1] += 1
    return None
