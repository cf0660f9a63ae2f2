"""SQL for `server_state`: integer facts about the server that outlive a restart (see migration 0006)."""

from __future__ import annotations

import sqlite3

# Written by `floatsrv db restore` into the database it puts in place (db/archive.py), read by the sync domain:
RESTORED_AT = "restored_at"  # when (µs); 0 once a vendor has stated its holdings since
LINEAGE_EPOCH = "lineage_epoch"  # a new random epoch, stamped on every sync batch made after the restore


def get(conn: sqlite3.Connection, key: str) -> int | None:
    row = conn.execute("SELECT value FROM server_state WHERE key = ?", (key,)).fetchone()
    return int(row[0]) if row else None


def put(conn: sqlite3.Connection, key: str, value: int) -> None:
    conn.execute(
        "INSERT INTO server_state (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (key, value),
    )


def raise_to(conn: sqlite3.Connection, key: str, value: int) -> None:
    """Store `value` unless a larger one is stored already."""
    conn.execute(
        "INSERT INTO server_state (key, value) VALUES (?, ?)"
        " ON CONFLICT (key) DO UPDATE SET value = CASE WHEN excluded.value > server_state.value"
        " THEN excluded.value ELSE server_state.value END",
        (key, value),
    )
