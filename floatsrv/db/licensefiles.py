"""SQL for `license_files` and `license_series` (migrations 0007, 0009): accepted files and series high-water
marks."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class FileRow:
    file_id: str
    digest: str
    kid: str
    series: str
    sequence: int
    entitlements: str
    bound_to: str | None
    issued_at: int
    not_before: int
    expires_at: int | None
    license_ids: list[int]
    imported_at: int
    imported_by: str
    ended_at: int | None
    end_reason: str | None
    refresh_by: int | None = None
    fingerprint: str | None = None  # the host fingerprint it is bound to, if any
    request_id: str | None = None  # the activation request it answers, if any


_COLUMNS = (
    "file_id, digest, kid, series, sequence, entitlements, bound_to, issued_at, not_before, expires_at,"
    " license_ids, imported_at, imported_by, ended_at, end_reason, refresh_by, fingerprint, request_id"
)


def _row(values: tuple[object, ...]) -> FileRow:
    fields = list(values)
    fields[10] = json.loads(str(fields[10]))
    return FileRow(*fields)  # type: ignore[arg-type]


def get(conn: sqlite3.Connection, file_id: str) -> FileRow | None:
    row = conn.execute(f"SELECT {_COLUMNS} FROM license_files WHERE file_id = ?", (file_id,)).fetchone()
    return _row(row) if row else None


def in_force(conn: sqlite3.Connection) -> list[FileRow]:
    rows = conn.execute(f"SELECT {_COLUMNS} FROM license_files WHERE ended_at IS NULL ORDER BY imported_at, file_id")
    return [_row(row) for row in rows]


def in_force_texts(conn: sqlite3.Connection) -> list[tuple[str, str]]:
    """(file_id, text) of every file in force, oldest import first."""
    rows = conn.execute("SELECT file_id, text FROM license_files WHERE ended_at IS NULL ORDER BY imported_at, file_id")
    return [(str(file_id), str(text)) for file_id, text in rows]


def listing(conn: sqlite3.Connection, include_ended: bool) -> list[FileRow]:
    where = "" if include_ended else " WHERE ended_at IS NULL"
    rows = conn.execute(f"SELECT {_COLUMNS} FROM license_files{where} ORDER BY imported_at DESC, file_id")
    return [_row(row) for row in rows]


def high_sequence(conn: sqlite3.Connection, series: str) -> int:
    row = conn.execute("SELECT high_sequence FROM license_series WHERE series = ?", (series,)).fetchone()
    return int(row[0]) if row else 0


def insert(conn: sqlite3.Connection, row: FileRow, text: str) -> None:
    conn.execute(
        f"INSERT INTO license_files ({_COLUMNS}, text) VALUES ({', '.join('?' * 19)})",
        (
            row.file_id,
            row.digest,
            row.kid,
            row.series,
            row.sequence,
            row.entitlements,
            row.bound_to,
            row.issued_at,
            row.not_before,
            row.expires_at,
            json.dumps(row.license_ids),
            row.imported_at,
            row.imported_by,
            row.ended_at,
            row.end_reason,
            row.refresh_by,
            row.fingerprint,
            row.request_id,
            text,
        ),
    )


def end(conn: sqlite3.Connection, file_id: str, now: int, reason: str) -> bool:
    """End a file in force (removed, or superseded by a newer one of its series); False if none was."""
    cursor = conn.execute(
        "UPDATE license_files SET ended_at = ?, end_reason = ? WHERE file_id = ? AND ended_at IS NULL",
        (now, reason, file_id),
    )
    return cursor.rowcount == 1
