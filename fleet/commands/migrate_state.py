"""``migrate-state --legacy PATH [--orders-dir DIR] [--dry-run] [--ask-broker] [--json]``: split the
legacy shared ``trading_state.json`` into per-user state files.

The domain (on-disk contract, attribution order, re-running, the conservation check) is
fleet.migration; this module parses the arguments and prints the report.

Exit 0 when every legacy position is accounted for exactly once (written, already migrated, or
unassigned); 4 for an unusable legacy or state file (nothing written); 1 when the conservation
check fails or a write failed.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from fleet.legacy import read_legacy_state
from fleet.migration import Result, broker_holdings, home_relative, migrate, read_order_index
from fleet.output import print_json, table
from kitefleet.errors import ConfigError
from kitefleet.exitcodes import ExitCode
from kitefleet.home import Home


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "migrate-state", help="split the legacy shared trading_state.json into per-user state files",
        usage="orchestrator.py migrate-state --legacy PATH [--orders-dir DIR] [--dry-run] [--ask-broker] [--json]")
    p.add_argument("--legacy", required=True, metavar="PATH", help="the legacy trading_state.json (only read)")
    p.add_argument("--orders-dir", metavar="DIR",
                   help="the legacy Daily/Current_Orders folder (one sub-folder per user)")
    p.add_argument("--dry-run", action="store_true",
                   help="show the plan; write no file (each user's own whoami process "
                        "still logs that it ran)")
    p.add_argument("--ask-broker", action="store_true",
                   help="for positions in no order file, ask each user's broker holdings (a process per user)")
    p.add_argument("--json", action="store_true", help="machine-readable report")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    home = Home.resolve()
    legacy = read_legacy_state(Path(args.legacy).expanduser().resolve())
    index, notes = read_order_index(Path(args.orders_dir).expanduser().resolve() if args.orders_dir else None)
    holdings: dict[str, set[str]] | None = None
    modes: dict[str, str | ConfigError] = {}
    if args.ask_broker:
        holdings, broker_notes = broker_holdings(home, modes)
        notes += broker_notes
    result = migrate(home, legacy, index, holdings, modes, notes, args.dry_run)
    account = _report(home, result)
    if args.json:
        print_json(account)
    else:
        _print_report(account)
    return ExitCode.OK if result.ok else ExitCode.JOB_FAILED


def _report(home: Home, result: Result) -> dict[str, Any]:
    """The run's account, as ``--json`` prints it and the table is drawn from."""
    plan, backup, unassigned_file = result.plan, result.backup, result.unassigned_file
    problems, write_errors, dry_run = result.problems, result.write_errors, result.dry_run
    users: dict[str, dict[str, Any]] = {}
    for o in plan.outcomes.values():
        if o.user is None:
            continue
        row = users.setdefault(o.user, {"user": o.user, "mode": plan.modes.get(o.user), "written": 0,
                                        "already_migrated": 0, "conflicts": 0, "tickers": []})
        if o.status == "new":
            row["written"] += 1
            row["tickers"].append(o.ticker)
        elif o.status == "present":
            row["already_migrated"] += 1
        elif o.status == "conflict":
            row["conflicts"] += 1
    n_read = len(plan.legacy.positions)
    written = len(plan.by_status("new"))
    present = len(plan.by_status("present"))
    unassigned = len(plan.by_status("unassigned"))
    conflicts = len(plan.by_status("conflict"))
    return {
        "dry_run": dry_run,
        "legacy_file": str(plan.legacy.path),
        "legacy_sha256": plan.sha256,
        "backup": home_relative(home, backup) if backup else None,
        "unassigned_file": home_relative(home, unassigned_file) if unassigned_file else None,
        "positions_read": n_read,
        "written": written,
        "already_migrated": present,
        "unassigned": unassigned,
        "conflicts": conflicts,
        "users": sorted(users.values(), key=lambda r: r["user"]),
        "unassigned_positions": {o.ticker: {"status": o.status, "reason": o.reason}
                                 for o in plan.by_status("unassigned", "conflict")},
        "conservation_ok": not problems and n_read == written + present + unassigned + conflicts,
        "conservation_problems": problems,
        "errors": write_errors,
        "notes": plan.notes,
    }


def _print_report(r: dict[str, Any]) -> None:
    verb = "would write" if r["dry_run"] else "written"
    rows = [(u["user"], u["mode"], u["written"], u["already_migrated"], u["conflicts"]) for u in r["users"]]
    print(f"legacy file: {r['legacy_file']} ({r['positions_read']} positions read)")
    table(("user", "mode", verb, "already migrated", "conflicts"), rows)
    print()
    table(("positions read", verb, "already migrated", "unassigned", "conflicts"),
          [(r["positions_read"], r["written"], r["already_migrated"], r["unassigned"], r["conflicts"])])
    for ticker, info in r["unassigned_positions"].items():
        print(f"  {info['status']}: {ticker}: {info['reason']}")
    total = r["written"] + r["already_migrated"] + r["unassigned"] + r["conflicts"]
    if r["conservation_ok"]:
        print(f"conservation: OK, every legacy position appears exactly once ({r['positions_read']} = {total})")
    else:
        print(f"conservation: FAILED ({r['positions_read']} read, {total} accounted): "
              + "; ".join(r["conservation_problems"]))
    if r["backup"]:
        print(f"backup of the legacy file: {r['backup']}")
    if r["unassigned_file"]:
        print(f"unassigned positions and their records: {r['unassigned_file']} (assign them by hand)")
    if r["dry_run"]:
        print("dry run: nothing was written")
    for note in r["notes"]:
        print(f"note: {note}")
    for err in r["errors"]:
        print(f"error: {err}")
