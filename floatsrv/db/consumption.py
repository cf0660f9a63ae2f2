"""SQL for consumption: per-period counters, the usage events that feed them, and accepted event ids.

Only `usage_events` is written by application code; a trigger adds each event to its counter, so a
counter is always exactly the sum of its events.
"""

from __future__ import annotations

import sqlite3
from typing import NamedTuple

from floatsrv.db.memo import memo_of


class CounterKey(NamedTuple):
    license_id: int
    feature: str  # '' for the license-level counter
    period_start: int  # 0 for counters that never reset


def total(conn: sqlite3.Connection, key: CounterKey) -> int:
    """Current total in thousandths (0 when nothing was consumed yet in the period).

    On the writer, read once and then kept by `add` (db.memo).
    """
    memo = memo_of(conn)
    if memo is not None:
        found = memo.totals.get(key)
        if found is not None:
            return found
    row = conn.execute(
        "SELECT total_milli FROM consumption_counters WHERE license_id = ? AND feature = ? AND period_start = ?",
        (key.license_id, key.feature, key.period_start),
    ).fetchone()
    value = int(row[0]) if row else 0
    if memo is not None:
        memo.totals[key] = value
    return value


def totals(conn: sqlite3.Connection, license_id: int, keys: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
    """Totals of several counters of one license, (feature, period_start) -> thousandths, in one query."""
    if not keys:
        return {}
    # The cast: PostgreSQL would take an untyped VALUES parameter for text (SQLite reads it as an integer).
    marks = ", ".join("(?, CAST(? AS BIGINT))" for _ in keys)
    rows = conn.execute(
        f"SELECT feature, period_start, total_milli FROM consumption_counters WHERE license_id = ?"
        f" AND (feature, period_start) IN (VALUES {marks})",
        (license_id, *(value for key in keys for value in key)),
    )
    return {(feature, start): total for feature, start, total in rows}


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
    occurred_at: int | None = None,
    event_id: str | None = None,
    counter_exists: bool = False,
) -> int:
    """Record one consumption event (the trigger adds it to its counter); returns the event's row id.

    `counter_exists`: the caller knows the counter row is there (it read a non-zero total from it in this
    transaction), so the insert that creates a missing one is skipped.
    """
    if not counter_exists:
        conn.execute(
            "INSERT INTO consumption_counters (license_id, feature, period_start, period_end, updated_at) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (key.license_id, key.feature, key.period_start, period_end, now),
        )
    # lastrowid, not RETURNING (which SQLite runs through a temporary table); it is the outer INSERT's
    # row even though the trigger writes other tables.
    cursor = conn.execute(
        "INSERT INTO usage_events (license_id, feature, period_start, quantity_milli, user, principal, source,"
        " received_at, occurred_at, event_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            key.license_id,
            key.feature,
            key.period_start,
            quantity_milli,
            user,
            principal,
            source,
            now,
            occurred_at if occurred_at is not None else now,
            event_id,
        ),
    )
    assert cursor.lastrowid is not None
    memo = memo_of(conn)
    if memo is not None and key in memo.totals:
        memo.totals[key] += quantity_milli  # what the trigger just added to the counter's row
    return cursor.lastrowid


def seen_event(conn: sqlite3.Connection, license_id: int, event_id: str) -> tuple[bytes, str, int] | None:
    """(request hash, stored outcome, its format version) of an event id already accepted for this license."""
    row = conn.execute(
        "SELECT request_hash, outcome, outcome_format FROM usage_event_ids WHERE license_id = ? AND event_id = ?",
        (license_id, event_id),
    ).fetchone()
    return (bytes(row[0]), str(row[1]), int(row[2])) if row else None


def remember_event(
    conn: sqlite3.Connection,
    *,
    license_id: int,
    event_id: str,
    request_hash: bytes,
    outcome: str,
    outcome_format: int,
    usage_event_id: int,
    now: int,
) -> None:
    conn.execute(
        "INSERT INTO usage_event_ids (license_id, event_id, request_hash, outcome, outcome_format, usage_event_id,"
        " received_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (license_id, event_id, request_hash, outcome, outcome_format, usage_event_id, now),
    )


def compact(conn: sqlite3.Connection, before: int, limit: int) -> int:
    """Delete up to `limit` raw events received before `before` (a trigger folds them into their counters)."""
    return conn.execute(
        "DELETE FROM usage_events WHERE id IN (SELECT id FROM usage_events WHERE received_at < ?"
        " ORDER BY received_at LIMIT ?)",
        (before, limit),
    ).rowcount


def restore_lost(conn: sqlite3.Connection, key: CounterKey, *, period_end: int | None, lost_milli: int,
                 revision_above: int, now: int) -> None:  # fmt: skip
    """After a rollback of the database: put back usage the vendor counted and this database lost (one event,
    source `rollback_repair`, so the counter still equals its events), and move the counter's revision above
    the vendor's, so what it sends next is newer than what the vendor holds."""
    if lost_milli > 0:
        add(conn, key, period_end=period_end, quantity_milli=lost_milli, user=None, principal=None,
            source="rollback_repair", now=now)  # fmt: skip
    conn.execute(
        "UPDATE consumption_counters SET revision = ?, updated_at = ? WHERE license_id = ? AND feature = ?"
        " AND period_start = ? AND revision <= ?",
        (revision_above + 1, now, key.license_id, key.feature, key.period_start, revision_above),
    )
