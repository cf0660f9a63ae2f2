"""The writer keeps counter totals and active add-ons in memory between requests (floatsrv/db/memo.py).

It must never decide from a stale value: a change committed by another connection (another process, an
admin's sqlite3 shell) is seen by the very next request, because the store drops the memo whenever
`PRAGMA data_version` moves.
"""

from __future__ import annotations

import sqlite3

from tests.conftest import Api
from tests.test_consumption import consume_feature


def add_elsewhere(api: Api, units: int) -> None:
    """Another connection adds usage to the `render` counter (the trigger updates its total)."""
    conn = sqlite3.connect(api.config.storage.data_dir / "floatsrv.db", isolation_level=None, timeout=5)
    try:
        license_id, period_start, received_at = conn.execute(
            "SELECT license_id, period_start, updated_at FROM consumption_counters WHERE feature = 'render'"
        ).fetchone()
        conn.execute(
            "INSERT INTO usage_events (license_id, feature, period_start, quantity_milli, source, received_at,"
            " occurred_at) VALUES (?, 'render', ?, ?, 'elsewhere', ?, ?)",
            (license_id, period_start, units * 1000, received_at, received_at),
        )
    finally:
        conn.close()


async def test_a_counter_changed_by_another_connection_decides_the_next_request(api: Api) -> None:
    status, body = await consume_feature(api, 90)  # `render` allows 100 per period
    assert (status, body["total_consumptions"]) == (200, 90), body
    assert (await consume_feature(api, 1))[1]["total_consumptions"] == 91  # the writer now holds 91
    add_elsewhere(api, 9)  # 100: the period is used up
    status, body = await consume_feature(api, 1)
    assert (status, body["code"]) == (400, "feature_not_enough_consumptions"), body
    add_elsewhere(api, -5)  # 95
    status, body = await consume_feature(api, 5)
    assert (status, body["total_consumptions"]) == (200, 100), body
