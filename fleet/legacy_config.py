"""The legacy ``Daily/config.ini`` (reference/legacy-system.md), read for ``import-config``: one
``[API_CREDENTIALS_<User>]`` section per account (api_key, api_secret, access_token) and the
``[DEFAULT]`` trading settings, mapped onto env keys and validated by kitefleet.settings' own
parsers.

Everything here reads; nothing writes. fleet.commands.import_config writes the env files.
"""

from __future__ import annotations

import configparser
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from fleet.legacy import read_regular_file
from kitefleet.errors import ConfigError
from kitefleet.settings import KEYS
from kitefleet.users import RESERVED_NAMES, USER_NAME_RE

CREDENTIALS_PREFIX = "API_CREDENTIALS_"
#: The largest config.ini read: a legacy one is a few kB; anything near this is not one of them.
MAX_CONFIG_BYTES = 1 << 20

#: legacy [DEFAULT] key -> env key of kitefleet.settings.SCHEMA
DEFAULT_KEY_MAP: Mapping[str, str] = {
    # The legacy key capped new stocks per run, not positions held (issue 18).
    "max_cnc_positions": "MAX_NEW_ENTRIES_PER_DAY",
    "capital_deployment_percent": "CAPITAL_DEPLOYMENT_PERCENT",
    "log_level": "LOG_LEVEL",
}

#: legacy [DEFAULT] keys deliberately not mapped, and why (shown in the import report)
DEFAULT_KEYS_IGNORED: Mapping[str, str] = {
    "exchange": "kitefleet trades NSE only",
    "product_type": "entries, exits and GTT stops are always CNC in kitefleet",
    "profit_target_exits": "no env key yet (WATCHDOG_RULE picks the exit rule); "
                           "would need a new key such as WATCHDOG_PROFIT_TARGETS",
    "psar_watchdog_enabled": "the PSAR watchdog is not part of kitefleet",
}


@dataclass
class LegacyUser:
    section: str
    name: str
    api_key: str | None
    api_secret: str | None
    has_access_token: bool
    #: env key -> value (validated), from [DEFAULT] or overridden in the user's own section
    settings: dict[str, str] = field(default_factory=dict)
    #: human-readable notes: "max_cnc_positions=abc: must be an integer"
    problems: list[str] = field(default_factory=list)
    #: keys of the section itself (not inherited) that have no meaning in kitefleet
    ignored_keys: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return bool(self.api_key) and bool(self.api_secret)

    def __repr__(self) -> str:  # never show the secret
        return f"LegacyUser({self.name!r}, complete={self.complete})"


@dataclass
class LegacyConfig:
    path: Path
    users: list[LegacyUser]
    #: env key -> (legacy key, raw value) for [DEFAULT] values that map
    mapped_defaults: dict[str, tuple[str, str]]
    #: legacy key -> reason, for [DEFAULT] values that do not map
    ignored_defaults: dict[str, str]
    other_sections: list[str]


_NO_DEFAULT = "\0no default section"


def _read_ini(path: Path) -> configparser.ConfigParser:
    # interpolation=None: a secret may contain '%'. strict: a repeated section or key is an error.
    # [DEFAULT] is read as an ordinary section, so each section shows only its own keys; the
    # inheritance configparser would apply is done by hand below.
    parser = configparser.ConfigParser(interpolation=None, strict=True, default_section=_NO_DEFAULT)
    raw = read_regular_file(path, MAX_CONFIG_BYTES, "legacy config.ini")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    try:
        parser.read_string(text, source=str(path))
    except configparser.MissingSectionHeaderError as exc:
        raise ConfigError(f"{path}: not a valid INI file (line {exc.lineno} comes before any [section])") from None
    except configparser.ParsingError as exc:
        # The message quotes the offending lines, which may hold a secret: keep only their numbers.
        lines = sorted({n for n, _ in exc.errors})
        raise ConfigError(f"{path}: not a valid INI file (line(s) {', '.join(map(str, lines))} do not parse)") from None
    except configparser.DuplicateOptionError as exc:
        raise ConfigError(f"{path}: key {exc.option!r} repeated in [{exc.section}] (line {exc.lineno})") from None
    except configparser.DuplicateSectionError as exc:
        raise ConfigError(f"{path}: section [{exc.section}] appears twice (line {exc.lineno})") from None
    except configparser.Error as exc:
        first = str(exc).splitlines()[0][:200]
        raise ConfigError(f"{path}: not a valid INI file ({first})") from None
    return parser


def _convert(env_key: str, raw: str) -> str:
    """The env-file text for a legacy value, validated by the schema's own parser."""
    value = raw.strip()
    if env_key == "LOG_LEVEL":
        value = value.upper()
    KEYS[env_key].parse(value)  # raises ValueError (the schema's _Bad) with the reason
    return value


def _own_value(section: Mapping[str, str], key: str) -> str | None:
    value = section.get(key)
    return value.strip() or None if isinstance(value, str) else None


def read_legacy_config(path: Path) -> LegacyConfig:
    parser = _read_ini(path)
    defaults: dict[str, str] = dict(parser["DEFAULT"]) if parser.has_section("DEFAULT") else {}
    mapped: dict[str, tuple[str, str]] = {}
    ignored: dict[str, str] = {}
    for key, raw in defaults.items():
        if key in DEFAULT_KEY_MAP:
            mapped[DEFAULT_KEY_MAP[key]] = (key, raw)
        elif key in DEFAULT_KEYS_IGNORED:
            ignored[key] = DEFAULT_KEYS_IGNORED[key]
        elif key in ("api_key", "api_secret", "access_token"):
            ignored[key] = "credentials belong in a user's own section"
        else:
            ignored[key] = "unknown to kitefleet"
    users: list[LegacyUser] = []
    others: list[str] = []
    for section in parser.sections():
        if section == "DEFAULT":
            continue
        if not section.startswith(CREDENTIALS_PREFIX):
            others.append(section)
            continue
        name = section[len(CREDENTIALS_PREFIX):]
        own = dict(parser[section])
        # Only the section's own credentials count: a key in [DEFAULT] would be everybody's.
        user = LegacyUser(
            section=section,
            name=name,
            api_key=_own_value(own, "api_key"),
            api_secret=_own_value(own, "api_secret"),
            has_access_token=_own_value(own, "access_token") is not None,
        )
        if not USER_NAME_RE.match(name) or name.lower() in RESERVED_NAMES:
            user.problems.append(f"section name gives the invalid user name {name!r}")
        for label, value in (("api_key", user.api_key), ("api_secret", user.api_secret)):
            if value is not None and any(c.isspace() for c in value):
                user.problems.append(f"{label} contains whitespace")
        effective = {**defaults, **own}
        for legacy_key, env_key in DEFAULT_KEY_MAP.items():
            given = effective.get(legacy_key)
            if given is None or not given.strip():
                continue
            try:
                user.settings[env_key] = _convert(env_key, given)
            except ValueError as exc:
                user.problems.append(f"{legacy_key}={given.strip()!r} {exc} (not imported)")
        user.ignored_keys = sorted(
            k for k in own if k not in ("api_key", "api_secret", "access_token") and k not in DEFAULT_KEY_MAP
        )
        users.append(user)
    return LegacyConfig(path=path, users=users, mapped_defaults=mapped, ignored_defaults=ignored,
                        other_sections=others)


def env_file_text(user: LegacyUser, source: Path, stamp: str) -> str:
    assert user.api_key and user.api_secret
    lines = [
        f"# {user.name}: imported from the legacy {source.name} ([{user.section}]) on {stamp}.",
        "# Keep this file mode 0600. Daily login: orchestrator.py login " + user.name,
        "TRADER_MODE=live",
        f"KITE_API_KEY={user.api_key}",
        f"KITE_API_SECRET={user.api_secret}",
    ]
    lines += [f"{k}={v}" for k, v in user.settings.items()]
    return "\n".join(lines) + "\n"
