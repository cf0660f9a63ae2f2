"""SQL for upstream sync: the outbox, fixed batches, what each channel confirmed, leases and state."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class BatchRecord:
    batch_id: str
    license_id: int
    product: str
    feature: str
    period_start: int
    period_end: int | None
    revision: int
    total_milli: int
    base_revision: int
    base_total_milli: int
    changed_at: int
    delivered: bool
    # Where the license's terms came from when the batch was made: signed, demo or unsigned (None: before v7).
    entitlements: str | None = None


@dataclass(frozen=True, slots=True)
class BatchRow:
    id: str
    channel: str
    created_at: int
    status: str
    attempts: int
    last_attempt_at: int | None
    last_error: str | None
    finished_at: int | None
    epoch: int = 0  # the database's lineage epoch when it was made (new after `floatsrv db restore`)


@dataclass(frozen=True, slots=True)
class StateRow:
    channel: str
    lease_owner: str | None
    lease_until: int | None
    last_success_at: int | None
    last_error_at: int | None
    last_error: str | None
    consecutive_failures: int
    requests: int


_RECORD = (
    "batch_id, license_id, product, feature, period_start, period_end, revision, total_milli, base_revision, "
    "base_total_milli, changed_at, delivered, entitlements"
)
_BATCH = "id, channel, created_at, status, attempts, last_attempt_at, last_error, finished_at, epoch"
_STATE = "channel, lease_owner, lease_until, last_success_at, last_error_at, last_error, consecutive_failures, requests"


def _record(row: tuple[object, ...]) -> BatchRecord:
    values = list(row)
    values[11] = bool(values[11])
    return BatchRecord(*values)  # type: ignore[arg-type]


def setting(conn: sqlite3.Connection, key: str) -> str | None:
    row = conn.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
    return str(row[0]) if row else None


def set_setting(conn: sqlite3.Connection, key: str, value: str) -> None:
    conn.execute(
        "INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (key, value),
    )


def acquire_lease(conn: sqlite3.Connection, channel: str, owner: str, now: int, until: int) -> bool:
    """Take the channel's sending lease (free, expired, or already ours)."""
    conn.execute("INSERT INTO sync_state (channel) VALUES (?) ON CONFLICT DO NOTHING", (channel,))
    cursor = conn.execute(
        "UPDATE sync_state SET lease_owner = ?, lease_until = ? WHERE channel = ?"
        " AND (lease_owner IS NULL OR lease_owner = ? OR lease_until IS NULL OR lease_until <= ?)",
        (owner, until, channel, owner, now),
    )
    return cursor.rowcount == 1


def lease_owner(conn: sqlite3.Connection, channel: str) -> str | None:
    row = conn.execute("SELECT lease_owner FROM sync_state WHERE channel = ?", (channel,)).fetchone()
    return str(row[0]) if row and row[0] is not None else None


def release_lease(conn: sqlite3.Connection, channel: str, owner: str) -> None:
    conn.execute(
        "UPDATE sync_state SET lease_owner = NULL, lease_until = NULL WHERE channel = ? AND lease_owner = ?",
        (channel, owner),
    )


def open_batch(conn: sqlite3.Connection, channel: str, status: str = "pending") -> BatchRow | None:
    row = conn.execute(
        f"SELECT {_BATCH} FROM sync_batches WHERE channel = ? AND status = ? ORDER BY created_at, id LIMIT 1",
        (channel, status),
    ).fetchone()
    return BatchRow(*row) if row else None


def batches(conn: sqlite3.Connection, channel: str, statuses: tuple[str, ...]) -> list[BatchRow]:
    marks = ",".join("?" * len(statuses))
    rows = conn.execute(
        f"SELECT {_BATCH} FROM sync_batches WHERE channel = ? AND status IN ({marks}) ORDER BY created_at, id",
        (channel, *statuses),
    )
    return [BatchRow(*row) for row in rows]


def get_batch(conn: sqlite3.Connection, batch_id: str) -> BatchRow | None:
    row = conn.execute(f"SELECT {_BATCH} FROM sync_batches WHERE id = ?", (batch_id,)).fetchone()
    return BatchRow(*row) if row else None


def batch_records(conn: sqlite3.Connection, batch_id: str) -> list[BatchRecord]:
    rows = conn.execute(
        f"SELECT {_RECORD} FROM sync_batch_records WHERE batch_id = ? ORDER BY license_id, feature, period_start",
        (batch_id,),
    )
    return [_record(row) for row in rows]


def due(conn: sqlite3.Connection, channel: str, limit: int, skip_open: bool) -> list[tuple[object, ...]]:
    """Counters whose latest revision the channel has not confirmed (and, with skip_open, that are in no open
    batch of the channel), with what the channel confirmed before: the makings of the next batch."""
    skip = (
        (
            "AND NOT EXISTS (SELECT 1 FROM sync_batch_records AS r JOIN sync_batches AS b ON b.id = r.batch_id"
            " WHERE b.channel = ?1 AND b.status IN ('pending', 'parked') AND r.license_id = o.license_id"
            " AND r.feature = o.feature AND r.period_start = o.period_start)"
        )
        if skip_open
        else ""
    )
    return list(
        conn.execute(
            f"""
        SELECT o.license_id, l.product, o.feature, o.period_start, c.period_end, c.revision, c.total_milli,
               COALESCE(d.revision, 0), COALESCE(d.total_milli, 0), o.changed_at, l.entitlements
        FROM sync_outbox AS o
        JOIN consumption_counters AS c
          ON c.license_id = o.license_id AND c.feature = o.feature AND c.period_start = o.period_start
        JOIN licenses AS l ON l.id = o.license_id
        LEFT JOIN sync_delivered AS d
          ON d.channel = ?1 AND d.license_id = o.license_id AND d.feature = o.feature
         AND d.period_start = o.period_start
        WHERE (d.revision IS NULL OR d.revision < c.revision) {skip}
        ORDER BY o.changed_at, o.license_id, o.feature, o.period_start
        LIMIT ?2
        """,
            (channel, limit),
        )
    )


def pending_count(conn: sqlite3.Connection, channel: str) -> tuple[int, int | None]:
    """(counters not yet confirmed by the channel, when the oldest of those changes happened)."""
    row = conn.execute(
        """
        SELECT COUNT(*), MIN(o.changed_at) FROM sync_outbox AS o
        JOIN consumption_counters AS c
          ON c.license_id = o.license_id AND c.feature = o.feature AND c.period_start = o.period_start
        LEFT JOIN sync_delivered AS d
          ON d.channel = ? AND d.license_id = o.license_id AND d.feature = o.feature AND d.period_start = o.period_start
        WHERE d.revision IS NULL OR d.revision < c.revision
        """,
        (channel,),
    ).fetchone()
    return int(row[0]), row[1]


def insert_batch(conn: sqlite3.Connection, batch_id: str, channel: str, now: int, status: str, epoch: int = 0) -> None:
    conn.execute(
        "INSERT INTO sync_batches (id, channel, created_at, status, epoch) VALUES (?, ?, ?, ?, ?)",
        (batch_id, channel, now, status, epoch),
    )


def insert_record(conn: sqlite3.Connection, batch_id: str, row: tuple[object, ...]) -> None:
    conn.execute(
        "INSERT INTO sync_batch_records (batch_id, license_id, product, feature, period_start, period_end, revision,"
        " total_milli, base_revision, base_total_milli, changed_at, entitlements)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (batch_id, *row),
    )


def mark_record_delivered(conn: sqlite3.Connection, batch_id: str, record: BatchRecord) -> None:
    conn.execute(
        "UPDATE sync_batch_records SET delivered = 1 WHERE batch_id = ? AND license_id = ? AND feature = ?"
        " AND period_start = ?",
        (batch_id, record.license_id, record.feature, record.period_start),
    )


def confirm(conn: sqlite3.Connection, channel: str, record: BatchRecord, now: int) -> None:
    """The channel has this counter up to record.revision (never moves backwards)."""
    conn.execute(
        """
        INSERT INTO sync_delivered (channel, license_id, feature, period_start, revision, total_milli, delivered_at)
        VALUES (?, ?, ?, ?, ?, ?, ?)
        ON CONFLICT (channel, license_id, feature, period_start) DO UPDATE SET
            revision = excluded.revision, total_milli = excluded.total_milli, delivered_at = excluded.delivered_at
        WHERE excluded.revision > sync_delivered.revision
        """,
        (channel, record.license_id, record.feature, record.period_start, record.revision, record.total_milli, now),
    )


def finish_batch(conn: sqlite3.Connection, batch_id: str, status: str, now: int, error: str | None = None) -> None:
    conn.execute(
        "UPDATE sync_batches SET status = ?, finished_at = ?, last_error = COALESCE(?, last_error) WHERE id = ?",
        (status, now, error, batch_id),
    )


def note_attempt(conn: sqlite3.Connection, batch_id: str, now: int, error: str | None) -> None:
    conn.execute(
        "UPDATE sync_batches SET attempts = attempts + 1, last_attempt_at = ?, last_error = ? WHERE id = ?",
        (now, error, batch_id),
    )


def supersede_pending(conn: sqlite3.Connection, channel: str, now: int) -> int:
    return conn.execute(
        "UPDATE sync_batches SET status = 'superseded', finished_at = ? WHERE channel = ? AND status = 'pending'",
        (now, channel),
    ).rowcount


def reopen_parked(conn: sqlite3.Connection, channel: str) -> int:
    return conn.execute(
        "UPDATE sync_batches SET status = 'pending', finished_at = NULL WHERE channel = ? AND status = 'parked'",
        (channel,),
    ).rowcount


def note_result(conn: sqlite3.Connection, channel: str, now: int, error: str | None, requests: int) -> None:
    conn.execute("INSERT INTO sync_state (channel) VALUES (?) ON CONFLICT DO NOTHING", (channel,))
    if error is None:
        conn.execute(
            "UPDATE sync_state SET last_success_at = ?, consecutive_failures = 0, requests = requests + ?"
            " WHERE channel = ?",
            (now, requests, channel),
        )
    else:
        conn.execute(
            "UPDATE sync_state SET last_error_at = ?, last_error = ?, consecutive_failures ="
            " consecutive_failures + 1, requests = requests + ? WHERE channel = ?",
            (now, error[:500], requests, channel),
        )


def state(conn: sqlite3.Connection, channel: str) -> StateRow | None:
    row = conn.execute(f"SELECT {_STATE} FROM sync_state WHERE channel = ?", (channel,)).fetchone()
    return StateRow(*row) if row else None


def take_baseline(conn: sqlite3.Connection) -> None:
    """Every counter as it stands now (at start-up), replacing the last start's."""
    conn.execute("DELETE FROM counter_baselines")
    conn.execute(
        "INSERT INTO counter_baselines (license_id, feature, period_start, revision, total_milli)"
        " SELECT license_id, feature, period_start, revision, total_milli FROM consumption_counters"
    )


def baseline(conn: sqlite3.Connection, license_id: int, feature: str, period_start: int) -> tuple[int, int]:
    """(revision, total) of the counter at the last start; (0, 0) if it did not exist then."""
    row = conn.execute(
        "SELECT revision, total_milli FROM counter_baselines WHERE license_id = ? AND feature = ? AND period_start = ?",
        (license_id, feature, period_start),
    ).fetchone()
    return (int(row[0]), int(row[1])) if row else (0, 0)


def set_baseline(conn: sqlite3.Connection, license_id: int, feature: str, period_start: int, revision: int,
                 total_milli: int) -> None:  # fmt: skip
    conn.execute(
        "INSERT INTO counter_baselines (license_id, feature, period_start, revision, total_milli)"
        " VALUES (?, ?, ?, ?, ?) ON CONFLICT (license_id, feature, period_start)"
        " DO UPDATE SET revision = excluded.revision, total_milli = excluded.total_milli",
        (license_id, feature, period_start, revision, total_milli),
    )


def counter(
    conn: sqlite3.Connection, license_id: int, feature: str, period_start: int
) -> tuple[int, int, int | None] | None:
    """(revision, total, period_end) of a counter now; None if it does not exist."""
    row = conn.execute(
        "SELECT revision, total_milli, period_end FROM consumption_counters WHERE license_id = ? AND feature = ?"
        " AND period_start = ?",
        (license_id, feature, period_start),
    ).fetchone()
    return (int(row[0]), int(row[1]), row[2]) if row else None
