"""SQL for `activation_requests` (migration 0009): the requests this server made, and which file spent each."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RequestRow:
    request_id: str
    created_at: int
    created_by: str
    server_key: str
    fingerprint: str
    previous_fingerprint: str | None
    spent_at: int | None
    spent_by: str | None


_COLUMNS = "request_id, created_at, created_by, server_key, fingerprint, previous_fingerprint, spent_at, spent_by"


def insert(conn: sqlite3.Connection, row: RequestRow) -> None:
    conn.execute(
        f"INSERT INTO activation_requests ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, NULL, NULL)",
        (row.request_id, row.created_at, row.created_by, row.server_key, row.fingerprint, row.previous_fingerprint),
    )


def get(conn: sqlite3.Connection, request_id: str) -> RequestRow | None:
    row = conn.execute(f"SELECT {_COLUMNS} FROM activation_requests WHERE request_id = ?", (request_id,)).fetchone()
    return RequestRow(*row) if row else None


def spend(conn: sqlite3.Connection, request_id: str, file_id: str, now: int) -> bool:
    cursor = conn.execute(
        "UPDATE activation_requests SET spent_at = ?, spent_by = ? WHERE request_id = ? AND spent_at IS NULL",
        (now, file_id, request_id),
    )
    return cursor.rowcount == 1
