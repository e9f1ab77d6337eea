"""``import-config LEGACY_CONFIG_INI [--force]``: legacy ``Daily/config.ini`` -> ``env/<User>.env``.

Each ``[API_CREDENTIALS_<User>]`` section with both an ``api_key`` and an ``api_secret`` becomes
``env/<User>.env`` (mode 0600, written atomically) with ``TRADER_MODE=live``, the key and secret,
and the ``[DEFAULT]`` settings that map onto env keys (fleet.legacy_config.DEFAULT_KEY_MAP; a section's
own value overrides the default, as configparser did). The legacy ``access_token`` is not
imported: it dies every morning; ``orchestrator.py login`` makes the session now.

A section without both credentials, or whose name is not a valid user name, gets no file. An
existing env file is kept unless ``--force``. The report lists what was mapped and what was
ignored; it never prints a secret (API keys appear only as fingerprints).

Exit codes: 0 when every credentials section was imported (or kept, existing); 4 (config error)
when the file cannot be read, has no credentials section, or a section could not be imported.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from fleet.legacy_config import DEFAULT_KEY_MAP, LegacyUser, env_file_text, read_legacy_config
from fleet.output import print_json, table
from kitefleet import clock
from kitefleet.atomic import atomic_write_text
from kitefleet.errors import ConfigError
from kitefleet.exitcodes import ExitCode
from kitefleet.home import Home, ensure_dir
from kitefleet.settings import api_key_fingerprint, parse_settings


def add_parser(sub: Any) -> None:
    p = sub.add_parser("import-config", help="turn a legacy config.ini into env/<User>.env files (live mode)",
                       usage="orchestrator.py import-config LEGACY_CONFIG_INI [--force] [--json]")
    p.add_argument("legacy_config", metavar="LEGACY_CONFIG_INI")
    p.add_argument("--force", action="store_true", help="overwrite existing env/<User>.env files")
    p.add_argument("--json", action="store_true", help="machine-readable report")
    p.set_defaults(func=run)


def _outcome(home: Home, user: LegacyUser, force: bool) -> tuple[str, str]:
    """(status, detail) before writing: imported / exists / skipped."""
    if user.problems and any("invalid user name" in p or "whitespace" in p for p in user.problems):
        return "skipped", "; ".join(user.problems)
    missing = [label for label, v in (("api_key", user.api_key), ("api_secret", user.api_secret)) if not v]
    if missing:
        return "skipped", f"no {' and no '.join(missing)} in [{user.section}]"
    if home.env_file(user.name).exists() and not force:
        return "exists", f"env/{user.name}.env exists; kept (use --force to overwrite)"
    # Round trip through the real parser: a value dotenv would read differently is caught here.
    try:
        parsed = parse_settings(env_file_text(user, Path("config.ini"), ""), user=user.name,
                                env_file=home.env_file(user.name), shown=f"env/{user.name}.env")
    except ConfigError as exc:
        return "skipped", f"the generated env file would not be valid: {exc}"
    if parsed.api_key != user.api_key or parsed.api_secret != user.api_secret:
        return "skipped", "api_key or api_secret would not survive the env-file format; copy them by hand"
    return "imported", ""


def run(args: argparse.Namespace) -> int:
    home = Home.resolve()
    source = Path(args.legacy_config).expanduser()
    legacy = read_legacy_config(source)
    if not legacy.users:
        raise ConfigError(f"{source}: no [API_CREDENTIALS_<User>] section; nothing to import")
    stamp = clock.now().strftime("%Y-%m-%d %H:%M %Z")
    rows: list[dict[str, Any]] = []
    for user in legacy.users:
        status, detail = _outcome(home, user, args.force)
        if status == "imported":
            ensure_dir(home.env_dir)
            path = home.env_file(user.name)
            replaced = path.exists()
            atomic_write_text(path, env_file_text(user, source, stamp), mode=0o600)
            os.chmod(path, 0o600)  # atomic_write keeps 0600 already; be explicit about the contract
            detail = "overwritten (--force)" if replaced else "written"
        notes = [p for p in user.problems if "invalid user name" not in p and "whitespace" not in p]
        if user.has_access_token:
            notes.append("access_token not imported (it expires daily): run orchestrator.py login " + user.name)
        if user.ignored_keys:
            notes.append("ignored keys: " + ", ".join(user.ignored_keys))
        rows.append({
            "user": user.name,
            "section": user.section,
            "status": status,
            "detail": detail,
            "api_key": api_key_fingerprint(user.api_key) if user.api_key else None,
            "settings": dict(user.settings),
            "notes": notes,
        })
    report = {
        "source": str(source),
        "users": rows,
        "mapped_defaults": {env: f"{legacy_key}={raw.strip()}"
                            for env, (legacy_key, raw) in legacy.mapped_defaults.items()},
        "ignored_defaults": legacy.ignored_defaults,
        "ignored_sections": legacy.other_sections,
    }
    failed = [r for r in rows if r["status"] == "skipped"]
    if args.json:
        print_json(report)
    else:
        _print_report(report)
    return ExitCode.CONFIG if failed else ExitCode.OK


def _print_report(report: dict[str, Any]) -> None:
    table(("user", "status", "api key", "settings", "detail"),
          [(r["user"], r["status"], r["api_key"] or "-",
            ", ".join(f"{k}={v}" for k, v in r["settings"].items()) or "-", r["detail"])
           for r in report["users"]])
    for r in report["users"]:
        for note in r["notes"]:
            print(f"  {r['user']}: {note}")
    print()
    if report["mapped_defaults"]:
        print("mapped from [DEFAULT]: " + ", ".join(f"{v} -> {k}" for k, v in report["mapped_defaults"].items()))
    for key, why in report["ignored_defaults"].items():
        print(f"ignored [DEFAULT] {key}: {why}")
    if report["ignored_sections"]:
        print("ignored sections: " + ", ".join(f"[{s}]" for s in report["ignored_sections"]))
    unmapped = sorted(set(DEFAULT_KEY_MAP) - {v.split("=", 1)[0] for v in report["mapped_defaults"].values()})
    if unmapped and report["users"]:
        print("not set in the legacy file (kitefleet defaults apply): " + ", ".join(unmapped))
    written = [r["user"] for r in report["users"] if r["status"] == "imported"]
    if written:
        print(f"\nnext: orchestrator.py login {written[0]}   (then: orchestrator.py doctor)")
