"""SQL for consumption: per-period counters and the usage events that feed them.

Only `usage_events` is written by application code; a trigger adds each event to its counter, so a
counter is always exactly the sum of its events.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class CounterKey:
    license_id: int
    feature: str  # '' for the license-level counter
    period_start: int  # 0 for counters that never reset


def total(conn: sqlite3.Connection, key: CounterKey) -> int:
    """Current total in thousandths (0 when nothing was consumed yet in the period)."""
    row = conn.execute(
        "SELECT total_milli FROM consumption_counters WHERE license_id = ? AND feature = ? AND period_start = ?",
        (key.license_id, key.feature, key.period_start),
    ).fetchone()
    return int(row[0]) if row else 0


def totals(conn: sqlite3.Connection, keys: list[CounterKey]) -> dict[CounterKey, int]:
    return {key: total(conn, key) for key in keys}


def add(
    conn: sqlite3.Connection,
    key: CounterKey,
    *,
    period_end: int | None,
    quantity_milli: int,
    user: str | None,
    principal: str | None,
    source: str,
    now: int,
) -> int:
    """Record one consumption event; returns the counter's new total (thousandths)."""
    conn.execute(
        "INSERT INTO consumption_counters (license_id, feature, period_start, period_end, updated_at) "
        "VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        (key.license_id, key.feature, key.period_start, period_end, now),
    )
    conn.execute(
        "INSERT INTO usage_events (license_id, feature, period_start, quantity_milli, user, principal, source,"
        " received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (key.license_id, key.feature, key.period_start, quantity_milli, user, principal, source, now),
    )
    return total(conn, key)
