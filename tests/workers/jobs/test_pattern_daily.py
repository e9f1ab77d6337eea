"""workers/jobs/pattern_daily.py on plain data: the per-user scan order."""

from __future__ import annotations

from workers.jobs.pattern_daily import scan_order


def test_scan_order_is_a_stable_rotation_per_user() -> None:
    symbols = [f"S{i}" for i in range(50)]
    for user in ("Som", "Sai", "u1"):
        order = scan_order(user, symbols)
        assert sorted(order) == sorted(symbols) and order == scan_order(user, symbols)
        i = symbols.index(order[0])
        assert order == symbols[i:] + symbols[:i]
    assert len({scan_order(u, symbols)[0] for u in ("Som", "Sai", "u1", "u2", "u3")}) > 1
    assert scan_order("Som", []) == []
