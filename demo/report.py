"""The demo's report: per user (from the paper broker's admin API and the user's own files) and
the isolation audit (from the broker's request audit).

Sources, all read after supervisord has stopped the schedulers:

* ``GET /paper/accounts``: cash, holdings, realised and unrealised P&L (gross), charges (debited at the
  settlement rolls, and today's so far), orders at the broker;
* ``GET /paper/audit``: one row per Kite request, with the API key it carried and the order id
  it created;
* ``data/trading_state_<User>.json``: order intents (entries, exits, GTT stops), positions, the
  watchdog's exits; ``data/<User>/orders/*.json``, ``data/<User>/scans/*.csv``; every file under
  ``data/<User>/`` and ``logs/<User>/``.

* what the demo's notification sink received (demo.sink; Som's NOTIFY_URLS points at it), and
  ``data/<User>/outbox.jsonl`` / ``outbox.done``: what each user's bot had to tell, and what became of it.

``collect`` and ``collect_notifications`` do the I/O; ``summarise_user``, ``audit_summary``,
``notification_summary``, ``checks`` and ``render`` work on plain data (the JSON the demo writes
with ``--json``).
"""

from __future__ import annotations

import csv
import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import asdict
from datetime import date, datetime
from pathlib import Path
from typing import Any

import requests

from demo.home import HAND_HELD
from kitefleet import outbox
from kitefleet.home import Home
from kitefleet.settings import api_key_fingerprint


# --- reading -------------------------------------------------------------------------------------
def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def user_files(home: Home, user: str) -> list[dict[str, Any]]:
    """Every file the user's processes wrote, relative to the home."""
    roots = [home.state_file(user), home.user_data_dir(user), home.user_logs_dir(user)]
    out = []
    for root in roots:
        paths = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else []
        for path in paths:
            out.append({"path": str(path.relative_to(home.root)), "bytes": path.stat().st_size})
    return out


def scan_summary(path: Path, min_score: int) -> dict[str, Any]:
    try:
        with path.open(encoding="utf-8", newline="") as fh:
            rows = list(csv.DictReader(fh))
    except OSError:
        return {"file": path.name, "rows": 0, "candidates": []}
    picks = []
    for row in rows:
        try:
            if int(float(row.get("score") or 0)) >= min_score:
                picks.append(f"{row.get('ticker') or row.get('symbol')}:{int(float(row['score']))}")
        except ValueError:
            continue
    return {"file": path.name, "rows": len(rows), "candidates": picks}


def collect(home: Home, url: str, users: Mapping[str, Mapping[str, str]], runs: Iterable[Any],
            previous: date, day: date, sim_end: datetime, wall_seconds: float) -> dict[str, Any]:
    """``users``: name -> {"api_key", "MIN_SCORE", ...} (the demo wrote those files itself)."""
    accounts = {a["user_name"]: a for a in requests.get(f"{url}/paper/accounts", timeout=30).json()["data"]}
    audit = requests.get(f"{url}/paper/audit", timeout=60).json()["data"]
    keys = {name: spec["api_key"] for name, spec in users.items()}
    report: dict[str, Any] = {
        "home": str(home.root), "previous_day": previous.isoformat(), "day": day.isoformat(),
        "simulated_end": sim_end.isoformat(),
        "wall_seconds_until_report": round(wall_seconds, 1), "users": {},
        "runs": [_run_json(r) for r in runs],
    }
    for name, spec in users.items():
        state = _json(home.state_file(name)) or {}
        order_files = [f for f in (_json(p) for p in sorted((home.user_data_dir(name) / "orders").glob("*.json")))
                       if isinstance(f, dict)]
        min_score = int(spec.get("MIN_SCORE", 5))
        scans = [scan_summary(p, min_score) for p in sorted((home.user_data_dir(name) / "scans").glob("*.csv"))]
        acct = accounts.get(name) or {}
        activity = summarise_user(state, order_files)
        held = {h["tradingsymbol"] for h in acct.get("holdings") or []}
        for entry in activity["entries"]:
            entry["held_at_end"] = entry["symbol"] in held
        report["users"][name] = {
            "fingerprint": api_key_fingerprint(keys[name]),
            "settings": {k: v for k, v in spec.items() if k != "api_key"},
            "account": {k: acct.get(k) for k in ("starting_cash", "cash", "available_cash", "realised_pnl",
                                                  "unrealised_pnl", "holdings_at_cost", "charges", "charges_today",
                                                  "orders")},
            "holdings": [{"symbol": h["tradingsymbol"], "quantity": h["quantity"], "average_price": h["average_price"],
                          "last_price": h["last_price"]} for h in acct.get("holdings") or []],
            "activity": activity,
            "scans": scans,
            "files": user_files(home, name),
        }
    hand_user, hand_symbol, hand_qty = HAND_HELD
    if hand_user in report["users"]:
        u = report["users"][hand_user]
        state = _json(home.state_file(hand_user)) or {}
        held_qty = sum(h["quantity"] for h in u["holdings"] if h["symbol"] == hand_symbol)
        bot_stop = hand_symbol in (state.get("stops") or {})
        bot_lots = bool(((state.get("ledger") or {}).get("lots") or {}).get(hand_symbol))
        u["hand_held"] = {"symbol": hand_symbol, "bought": hand_qty, "held_at_end": held_qty,
                          "bot_stop": bot_stop, "bot_lots": bot_lots,
                          "untouched": held_qty >= hand_qty and not bot_stop and not bot_lots}
    report["audit"] = audit_summary(audit, keys, {n: u["activity"]["order_ids"] for n, u in report["users"].items()},
                                    {n: (accounts.get(n) or {}).get("orders") for n in users})
    report["checks"] = checks(report)
    report["checks_passed"] = all(c["ok"] for c in report["checks"])
    return report


def _run_json(run: Any) -> dict[str, Any]:
    data = asdict(run)
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in data.items()}


# --- one user's activity (pure) ------------------------------------------------------------------
def summarise_user(state: Mapping[str, Any], order_files: list[Mapping[str, Any]]) -> dict[str, Any]:
    intents = list((state.get("intents") or {}).values())
    positions = state.get("positions") or {}
    filled_ids = {str(p.get("order_id")) for p in positions.values() if p.get("order_id")}
    # the ownership ledger (issue 18) records each entry's fill as a lot naming its order
    lots = ((state.get("ledger") or {}).get("lots") or {})
    filled_ids |= {str(lot.get("order_id")) for sym_lots in lots.values() for lot in sym_lots or []
                   if isinstance(lot, dict) and lot.get("order_id")}
    filled_ids |= {str(it.get("broker_id")) for it in intents
                   if it.get("kind") == "order" and it.get("purpose") == "entry"
                   and it.get("order_status") == "COMPLETE"}
    entries = []
    for it in intents:
        if it.get("kind") == "order" and it.get("purpose") == "entry":
            params = it.get("params") or {}
            entries.append({"symbol": it.get("symbol"), "session": it.get("session"),
                            "quantity": params.get("quantity"), "price": params.get("price"),
                            "order_id": it.get("broker_id"), "filled": str(it.get("broker_id")) in filled_ids})
    stops = []
    for it in intents:
        if it.get("kind") == "gtt":
            params = it.get("params") or {}
            trigger = (params.get("trigger_values") or [None])[0]
            qty = sum(int(o.get("quantity") or 0) for o in params.get("orders") or [])
            stops.append({"symbol": it.get("symbol"), "trigger": trigger, "quantity": qty,
                          "gtt_id": it.get("broker_id"), "placed_at": it.get("created_at"), "status": it.get("status")})
    # when each entry's run planned it and when its order was sent (the run records)
    timing = {str(o.get("order_id")): (f.get("timestamp"), o.get("order_timestamp"))
              for f in order_files for o in f.get("orders") or [] if o.get("order_id")}
    for e in entries:
        e["planned_at"], e["sent_at"] = timing.get(str(e["order_id"]), (None, None))
    # issue 19: each entry ends filled with a broker stop from its fill on, or cancelled
    cancels = [it for it in intents if it.get("kind") == "cancel"]
    cancelled = ({str(it.get("tag") or "").rsplit("cancel", 1)[-1] for it in cancels}
                 | {str(it.get("broker_id")) for it in cancels if it.get("broker_id")})
    for e in entries:
        oid = str(e["order_id"])
        stop = next((st for st in sorted(stops, key=lambda st: str(st["placed_at"] or ""))
                     if st["symbol"] == e["symbol"] and st["gtt_id"] is not None), None)
        e["stop_gtt"] = stop["gtt_id"] if stop else None
        e["stop_placed_at"] = stop["placed_at"] if stop else None
        e["cancelled"] = oid in cancelled
        if e["filled"]:
            e["outcome"] = "filled, stop " + (f"GTT {stop['gtt_id']} at {stop['trigger']}" if stop else "MISSING")
        elif e["cancelled"]:
            e["outcome"] = "cancelled (entry timeout)"
        else:
            e["outcome"] = "open"
    exits, gtt_actions = [], []
    for session, wd in sorted((state.get("watchdog") or {}).items()):
        for symbol, info in sorted((wd.get("symbols") or {}).items()):
            for ex in info.get("exits") or []:
                hourly = info.get("hourly") or {}
                level_at = hourly.get("applied_at") if hourly.get("level") == ex.get("level") else None
                exits.append({"session": session, "symbol": symbol, "decided_at": ex.get("decided_at"),
                              "level_at": level_at,
                              "rule": ex.get("rule"), "level": ex.get("level"), "ltp": ex.get("ltp"),
                              "price": ex.get("price"), "quantity": ex.get("quantity"), "filled": ex.get("filled"),
                              "order_status": ex.get("order_status"), "order_id": ex.get("order_id"),
                              "status": ex.get("status"), "previous_poll_at": ex.get("previous_poll_at"),
                              "quoted_at": ex.get("quoted_at")})
                for action in (ex.get("gtt") or {}).get("actions") or []:
                    gtt_actions.append({"symbol": symbol, **action})
    order_ids = {str(it["broker_id"]) for it in intents if it.get("kind") == "order" and it.get("broker_id")}
    order_ids |= {str(e["order_id"]) for e in exits if e.get("order_id")}
    for record in order_files:
        order_ids |= {str(o["order_id"]) for o in record.get("orders") or [] if o.get("order_id")}
    return {
        "entries": entries, "stops": stops, "exits": exits, "gtt_actions": gtt_actions,
        "stops_in_state": sorted((state.get("stops") or {}).keys()),
        "order_runs": len(order_files),
        "order_ids": sorted(order_ids),
        # the watchdog's polls further apart than 3 intervals (workers.watchdog.Watchdog.note_gap)
        "poll_gaps": {session: list((wd or {}).get("poll_gaps") or [])
                      for session, wd in sorted((state.get("watchdog") or {}).items())},
        # the fresh quotes its decisions were made on, per symbol (workers.watchdog.Watchdog.quoted)
        "quotes": {session: {sym: list((rec or {}).get("quotes") or [])
                             for sym, rec in ((wd or {}).get("symbols") or {}).items()}
                   for session, wd in sorted((state.get("watchdog") or {}).items())},
    }


# --- the isolation audit (pure) ------------------------------------------------------------------
def audit_summary(rows: Iterable[Mapping[str, Any]], keys: Mapping[str, str],
                  order_ids: Mapping[str, Iterable[str]], broker_orders: Mapping[str, int | None]) -> dict[str, Any]:
    """Who sent what. ``keys``: user -> API key; ``order_ids``: user -> order ids in that user's files."""
    by_key = {v: k for k, v in keys.items()}
    per_user: dict[str, Counter[str]] = {u: Counter() for u in keys}
    placed_by: dict[str, str | None] = {}
    foreign, keyless = Counter(), Counter()
    for row in rows:
        key = row.get("api_key")
        path = str(row.get("path") or "")
        user = by_key.get(key) if key else None
        if key is None:
            keyless[f"{row.get('method')} {path}"] += 1
        elif user is None:
            foreign[api_key_fingerprint(str(key))] += 1
        else:
            c = per_user[user]
            c["requests"] += 1
            if int(row.get("status") or 0) >= 400:
                c["errors"] += 1
            if row.get("order_id"):
                c["orders"] += 1
            if path.startswith("/gtt/triggers"):
                c[{"POST": "gtt_placed", "PUT": "gtt_modified", "DELETE": "gtt_deleted"}.get(str(row.get("method")),
                                                                                             "gtt_reads")] += 1
        if row.get("order_id"):
            placed_by[str(row["order_id"])] = user if key else None
    attribution = {}
    for user, ids in order_ids.items():
        ids = list(ids)
        mine = sum(1 for i in ids if placed_by.get(i) == user)
        other = sorted(i for i in ids if i in placed_by and placed_by[i] != user)
        missing = sorted(i for i in ids if i not in placed_by)
        attribution[user] = {"in_files": len(ids), "placed_with_own_key": mine, "placed_with_other_key": other,
                             "not_in_audit": missing}
    return {
        "requests": sum(c["requests"] for c in per_user.values()) + sum(foreign.values()) + sum(keyless.values()),
        "per_user": {u: dict(c) for u, c in per_user.items()},
        "broker_orders": dict(broker_orders),
        "foreign_key_requests": sum(foreign.values()), "foreign_keys": dict(foreign),
        "keyless_requests": dict(keyless),
        "orders_with_unknown_key": sorted(i for i, u in placed_by.items() if u is None),
        "attribution": attribution,
    }


# --- notifications ---------------------------------------------------------------------------------
#: the notify job's message (workers/jobs/notify.py ``message``): title "kitefleet <User>: <kind>",
#: body "<text>[\nTo act: ...]\n[<event id> <ISO time>]"
_TITLE = re.compile(r"^kitefleet (\S+): (.+)$")
_STAMP = re.compile(r"^\[(\S+) (\S*)\]$")


def parse_message(msg: Mapping[str, Any]) -> dict[str, Any]:
    """One message as Apprise's ``json://`` posted it ({"title", "message", "type", ...})."""
    title = str(msg.get("title") or "")
    lines = str(msg.get("message") or "").splitlines() or [""]
    named = _TITLE.match(title)
    stamp = _STAMP.match(lines[-1].strip())
    return {"user": named.group(1) if named else None,
            "kind": named.group(2).replace(" ", "_") if named else title,
            "id": stamp.group(1) if stamp else None, "time": stamp.group(2) if stamp else None,
            "first_line": lines[0], "type": msg.get("type")}


def notification_summary(messages: Iterable[Mapping[str, Any]], outboxes: Mapping[str, Mapping[str, Any]],
                         sink: str | None) -> dict[str, Any]:
    """``messages``: what the sink received, in order; ``outboxes``: user -> {"url": bool, "events": n,
    "how": {sent/skipped/dropped: n}, "undelivered": n}. Each message goes to the user its title
    names: a message naming a user without a URL is a leak the checks catch."""
    parsed = [parse_message(m) for m in messages]
    users: dict[str, Any] = {}
    for name, box in outboxes.items():
        users[name] = {**box, "received": [m for m in parsed if m["user"] == name]}
    return {"sink": sink, "users": users,
            "unattributed": [m for m in parsed if m["user"] not in outboxes]}


def collect_notifications(home: Home, users: Iterable[str], with_url: Iterable[str],
                          messages: Iterable[Mapping[str, Any]], sink: str | None) -> dict[str, Any]:
    urls = set(with_url)
    outboxes = {}
    for name in users:
        done = outbox.read_done(home, name)
        hows = Counter(how for targets in done.values() for how in targets.values())
        outboxes[name] = {"url": name in urls, "events": len(outbox.read_events(home, name)),
                          "how": dict(hows), "undelivered": outbox.undelivered(home, name)}
    return notification_summary(messages, outboxes, sink)


def checks(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    audit = report["audit"]
    out = []

    def check(name: str, ok: bool, detail: str = "") -> None:
        out.append({"name": name, "ok": bool(ok), "detail": detail})

    for user, att in audit["attribution"].items():
        placed = audit["per_user"].get(user, {}).get("orders", 0)
        check(f"{user}: orders placed with {user}'s own key", placed > 0 and att["placed_with_own_key"] > 0
              and not att["placed_with_other_key"] and not att["not_in_audit"],
              f"{att['placed_with_own_key']} of {att['in_files']} order ids in {user}'s files; "
              f"other key: {len(att['placed_with_other_key'])}, not in the audit: {len(att['not_in_audit'])}")
    check("requests made with any other key", audit["foreign_key_requests"] == 0,
          f"{audit['foreign_key_requests']}")
    check("orders whose key belongs to no account", not audit["orders_with_unknown_key"],
          f"{len(audit['orders_with_unknown_key'])}")
    users = report["users"].values()
    check("GTT stops set", any(u["activity"]["stops"] for u in users),
          f"{sum(len(u['activity']['stops']) for u in users)}")
    check("watchdog exits", any(u["activity"]["exits"] for u in users),
          f"{sum(len(u['activity']['exits']) for u in users)}")
    for name, u in report["users"].items():
        hh = u.get("hand_held")
        if hh:
            check(f"{name}'s hand-held {hh['symbol']} left alone", hh["untouched"],
                  f"held {hh['held_at_end']} of {hh['bought']}; bot stop {hh['bot_stop']}; ledger {hh['bot_lots']}")
    notes = report.get("notifications")
    if notes:
        for name, n in notes["users"].items():
            kinds = Counter(m["kind"] for m in n["received"])
            if n["url"]:
                check(f"{name}'s service told of fills and exits", kinds["fill"] > 0 and kinds["exit"] > 0,
                      f"{kinds['fill']} fill, {kinds['exit']} exit of {len(n['received'])} messages")
            else:
                check(f"no message for {name} (no NOTIFY_URLS)", not n["received"], f"{len(n['received'])}")
        check("messages naming no known user", not notes["unattributed"], f"{len(notes['unattributed'])}")
    return out


# --- rendering (pure) ----------------------------------------------------------------------------
def _money(x: Any) -> str:
    try:
        return f"{float(x):,.2f}"
    except (TypeError, ValueError):
        return "-"


def _hm(iso: str | None) -> str:
    if not iso:
        return "-"
    return datetime.fromisoformat(iso).strftime("%a %H:%M")


def _files_lines(files: list[dict[str, Any]], width: int = 100) -> list[str]:
    groups: dict[str, list[str]] = {}
    for f in files:
        folder, _, name = f["path"].rpartition("/")
        groups.setdefault(folder, []).append(name)
    lines = []
    for folder, names in groups.items():
        head = f"{folder}/ ({len(names)}): "
        shown: list[str] = []
        for name in names:
            if len(head) + len(", ".join([*shown, name])) > width:
                shown.append(f"+{len(names) - len(shown)} more")
                break
            shown.append(name)
        lines.append(head + ", ".join(shown))
    return lines


def render_user(name: str, u: Mapping[str, Any], runs: list[Mapping[str, Any]], audit: Mapping[str, Any]) -> list[str]:
    a, act, s = u["account"], u["activity"], u["settings"]
    settings = ", ".join(f"{k}={v}" for k, v in s.items())
    lines = [f"{name}  (paper, key {u['fingerprint']}; {settings})"]
    mine = [r for r in runs if r["user"] == name]
    per_job: dict[str, list[str]] = {}
    for r in mine:
        per_job.setdefault(r["job"], []).append(f"{_hm(r['started'])}" + ("" if r.get("exit") in (0, None)
                                                                           else f" (exit {r['exit']})"))
    lines.append("  scheduled runs : " + ("; ".join(f"{j} {', '.join(t)}" for j, t in per_job.items()) or "none"))
    for scan in u["scans"]:
        cands = ", ".join(scan["candidates"][:8]) + (" ..." if len(scan["candidates"]) > 8 else "")
        lines.append(f"  scan           : {scan['file']}: {scan['rows']} symbols, "
                     f"{len(scan['candidates'])} at MIN_SCORE or above ({cands or 'none'})")
    entries = act["entries"]
    filled = sum(1 for e in entries if e["filled"])
    exits_filled = sum(1 for e in act["exits"] if e["order_status"] == "COMPLETE")
    counts = audit["per_user"].get(name, {})
    lines.append(f"  orders         : {counts.get('orders', 0)} placed by {name}'s requests "
                 f"(broker book: {a.get('orders')}); entries {len(entries)} ({filled} filled), "
                 f"exits {len(act['exits'])} ({exits_filled} filled)")
    for e in entries:
        if e.get("outcome") and (e["filled"] or e.get("cancelled")):
            outcome = e["outcome"]
        elif e.get("held_at_end"):
            outcome = "filled late: the broker holds it, the user's state does not show it yet"
        else:
            outcome = "not filled"
        lines.append(f"                   entry {e['session']} {e['symbol']:<10} BUY {e['quantity']} @ {e['price']}"
                     f"  {outcome}")
    lines.append(f"  GTT stops      : {len(act['stops'])} placed "
                 f"(requests: {counts.get('gtt_placed', 0)} placed, {counts.get('gtt_modified', 0)} modified, "
                 f"{counts.get('gtt_deleted', 0)} deleted)")
    for st in act["stops"]:
        lines.append(f"                   {_hm(st['placed_at'])} {st['symbol']:<10} SELL {st['quantity']} "
                     f"if <= {st['trigger']} (GTT {st['gtt_id']})")
    lines.append(f"  watchdog exits : {len(act['exits'])}")
    for ex in act["exits"]:
        deleted = [g for g in act["gtt_actions"] if g["symbol"] == ex["symbol"]]
        tidy = f"; GTT {deleted[0]['id']} {deleted[0]['action']}d" if deleted else ""
        lines.append(f"                   {_hm(ex['decided_at'])} {ex['symbol']:<10} SELL {ex['quantity']} "
                     f"(LTP {ex['ltp']} < level {ex['level']}) {ex['order_status'] or ex['status'] or '?'}{tidy}")
    pnl = (a.get("realised_pnl") or 0) + (a.get("unrealised_pnl") or 0)
    charges = (a.get("charges") or 0) + (a.get("charges_today") or 0)
    lines.append(f"  P&L            : realised {_money(a.get('realised_pnl'))}, unrealised "
                 f"{_money(a.get('unrealised_pnl'))}, total {_money(pnl)}; charges {_money(charges)} "
                 f"(contract notes: {_money(a.get('charges'))} debited at the rolls, {_money(a.get('charges_today'))} "
                 f"today), net {_money(pnl - charges)}; cash {_money(a.get('cash'))} "
                 f"of {_money(a.get('starting_cash'))} at the start")
    hh = u.get("hand_held")
    if hh:
        lines.append(f"  hand-held, not the bot's: {hh['symbol']} x {hh['held_at_end']}, "
                     + ("untouched" if hh["untouched"] else
                        f"TOUCHED (bought {hh['bought']}, bot stop {hh['bot_stop']}, in ledger {hh['bot_lots']})"))
    held = ", ".join(f"{h['symbol']} {h['quantity']}" for h in u["holdings"]) or "nothing"
    lines.append(f"  holdings now   : {held}")
    lines.append(f"  files written  : {len(u['files'])} ({sum(f['bytes'] for f in u['files']):,} bytes)")
    lines += ["                   " + line for line in _files_lines(u["files"])]
    return lines


def render_notifications(notes: Mapping[str, Any]) -> list[str]:
    lines = [f"==== notifications (Apprise json:// to the demo's sink on {notes['sink']}; NOTIFY_LEVEL=trades)"]
    for name, n in notes["users"].items():
        hows = n["how"]
        fate = f"{hows.get('sent', 0)} sent, {hows.get('skipped', 0)} skipped (below the level or no URL)"
        if hows.get("dropped"):
            fate += f", {hows['dropped']} dropped"
        if n["undelivered"]:
            fate += f", {n['undelivered']} not delivered yet"
        if n["url"]:
            lines.append(f"  {name} received {len(n['received'])} messages (outbox: {n['events']} events; {fate}):")
        else:
            lines.append(f"  {name} has no NOTIFY_URLS: {n['events']} events kept in data/{name}/outbox.jsonl, "
                         f"{hows.get('sent', 0)} sent; {len(n['received'])} messages reached the sink")
        for m in n["received"]:
            when = datetime.fromisoformat(m["time"]).strftime("%a %H:%M") if m["time"] else "?"
            lines.append(f"    {when}  {m['kind']:<16} {m['first_line'][:90]}")
    for m in notes["unattributed"]:
        lines.append(f"  a message naming no demo user: {m['kind']}: {m['first_line'][:80]}")
    return lines


def render(report: Mapping[str, Any]) -> str:
    lines = [f"==== report: {report['previous_day']} (the day before) and {report['day']} "
             f"(replayed to {_hm(report['simulated_end'])})", ""]
    for name, u in report["users"].items():
        lines += render_user(name, u, report["runs"], report["audit"])
        lines.append("")
    audit = report["audit"]
    lines.append("==== isolation audit (the paper broker's record of every Kite request)")
    lines.append(f"  requests: {audit['requests']}")
    for name, c in audit["per_user"].items():
        fp = report["users"][name]["fingerprint"]
        att = audit["attribution"][name]
        lines.append(f"  {name:<4} key {fp}: {c.get('requests', 0)} requests, {c.get('orders', 0)} orders placed, "
                     f"{c.get('errors', 0)} errors; {att['placed_with_own_key']} of the {att['in_files']} order ids "
                     f"in {name}'s files were placed with {name}'s key, {len(att['placed_with_other_key'])} with "
                     "another key")
    lines.append(f"  requests made with any other key: {audit['foreign_key_requests']}")
    if audit["keyless_requests"]:
        lines.append(f"  requests without a key: {sum(audit['keyless_requests'].values())}")
    lines.append("")
    lines.append("==== checks")
    for c in report["checks"]:
        lines.append(f"  [{'ok' if c['ok'] else 'FAILED'}] {c['name']}: {c['detail']}")
    if report.get("notifications"):
        lines.append("")
        lines += render_notifications(report["notifications"])
    if report.get("home"):
        lines.append(f"\neverything is kept in {report['home']} until the next run: logs/<User>/*.log, "
                     "logs/supervisord.log, data/")
    return "\n".join(lines)
