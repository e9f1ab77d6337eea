"""demo/report.py: the audit summary and each user's activity, read from the broker's audit and the state."""

from __future__ import annotations

import pytest

from demo.report import audit_summary, checks, notification_summary, render_notifications, summarise_user

pytestmark = pytest.mark.supervisord


# --- the report's audit, on plain data ---------------------------------------------------------------
def test_audit_attributes_orders_and_counts_foreign_keys() -> None:
    keys = {"Som": "kSom", "Sai": "kSai"}
    rows = [
        {"api_key": "kSom", "method": "POST", "path": "/orders/regular", "status": 200, "order_id": "1"},
        {"api_key": "kSai", "method": "POST", "path": "/orders/regular", "status": 200, "order_id": "2"},
        {"api_key": "kSai", "method": "POST", "path": "/gtt/triggers", "status": 200},
        {"api_key": "kSom", "method": "GET", "path": "/quote/ltp", "status": 429},
    ]
    audit = audit_summary(rows, keys, {"Som": ["1"], "Sai": ["2"]}, {"Som": 1, "Sai": 1})
    assert audit["foreign_key_requests"] == 0
    assert audit["per_user"]["Som"] == {"requests": 2, "orders": 1, "errors": 1}
    assert audit["per_user"]["Sai"]["gtt_placed"] == 1
    assert audit["attribution"]["Som"]["placed_with_own_key"] == 1

    # Sai's files claim Som's order, and a stranger's key shows up: both are reported
    rows.append({"api_key": "kEve", "method": "GET", "path": "/portfolio/holdings", "status": 200})
    audit = audit_summary(rows, keys, {"Som": ["1"], "Sai": ["2", "1"]}, {"Som": 1, "Sai": 1})
    assert audit["foreign_key_requests"] == 1
    assert audit["attribution"]["Sai"]["placed_with_other_key"] == ["1"]
    report = {"audit": audit, "users": {"Som": {"activity": {"stops": [1], "exits": [1]}},
                                        "Sai": {"activity": {"stops": [], "exits": []}}}}
    failed = {c["name"] for c in checks(report) if not c["ok"]}
    assert failed == {"Sai: orders placed with Sai's own key", "requests made with any other key"}


def test_user_activity_from_state() -> None:
    state = {
        "intents": {
            "E1": {"kind": "order", "purpose": "entry", "symbol": "INFY", "session": "2026-11-23",
                   "params": {"quantity": 5, "price": 1500.0}, "broker_id": "11"},
            "E2": {"kind": "order", "purpose": "entry", "symbol": "TCS", "session": "2026-11-25",
                   "params": {"quantity": 1, "price": 3100.0}, "broker_id": "12"},
            "S1": {"kind": "gtt", "purpose": "stop:1491.00:5", "symbol": "INFY", "broker_id": "3",
                   "params": {"trigger_values": [1491.0], "orders": [{"quantity": 5}]}, "created_at": None},
        },
        "positions": {"INFY": {"order_id": "11", "quantity": 0}},
        "watchdog": {"2026-11-25": {"symbols": {"INFY": {"exits": [
            {"decided_at": "2026-11-25T11:42:00+05:30", "order_id": "13", "order_status": "COMPLETE", "quantity": 5,
             "gtt": {"actions": [{"id": 3, "action": "delete"}]}}]}}}},
    }
    act = summarise_user(state, [{"orders": [{"order_id": "11"}, {"order_id": None}]}])
    assert [(e["symbol"], e["filled"]) for e in act["entries"]] == [("INFY", True), ("TCS", False)]
    assert act["stops"][0]["trigger"] == 1491.0 and act["stops"][0]["quantity"] == 5
    assert act["exits"][0]["symbol"] == "INFY" and act["gtt_actions"][0]["action"] == "delete"
    assert act["order_ids"] == ["11", "12", "13"]


def test_notifications_go_to_the_user_their_title_names() -> None:
    def msg(user: str, kind: str, text: str, eid: str, when: str) -> dict[str, str]:
        return {"version": "1.0", "title": f"kitefleet {user}: {kind.replace('_', ' ')}",
                "message": f"{text}\n[{eid} {when}]", "type": "success"}

    got = [msg("Som", "fill", "bought 5 INFY @ 1506.00 (order 3)", "fill-0123456789ab", "2026-11-24T10:01:00+05:30"),
           msg("Som", "exit", "sold 5 INFY @ 1517.5 (watchdog exit, order 9)", "exit-0123456789ac",
               "2026-11-25T11:43:00+05:30")]
    boxes = {"Som": {"url": True, "events": 3, "how": {"sent": 2, "skipped": 1}, "undelivered": 0},
             "Sai": {"url": False, "events": 2, "how": {"skipped": 2}, "undelivered": 0}}
    notes = notification_summary(got, boxes, "127.0.0.1:1")
    som = notes["users"]["Som"]["received"]
    assert [(m["kind"], m["id"]) for m in som] == [("fill", "fill-0123456789ab"), ("exit", "exit-0123456789ac")]
    assert som[0]["first_line"] == "bought 5 INFY @ 1506.00 (order 3)"
    report = {"audit": audit_summary([], {}, {}, {}), "users": {}, "notifications": notes}
    no_trades = {"GTT stops set", "watchdog exits"}  # no users' activity in this report
    assert {c["name"] for c in checks(report) if not c["ok"]} == no_trades
    lines = render_notifications(notes)
    assert any("Tue 11:43" in line or "Wed 11:43" in line for line in lines)

    # one of Sai's events reaching Som's sink is a leak; a Som without exits is a gap
    leaked = notification_summary([*got[:1], msg("Sai", "fill", "bought 1 TCS", "fill-0123456789ad", "")],
                                  boxes, "127.0.0.1:1")
    failed = {c["name"] for c in checks({**report, "notifications": leaked}) if not c["ok"]}
    assert failed == {"Som's service told of fills and exits", "no message for Sai (no NOTIFY_URLS)", *no_trades}
