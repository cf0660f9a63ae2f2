"""SQL for `denials` (migration 0010): the log of refused seats and consumptions, newest first, pruned by age."""

from __future__ import annotations

import sqlite3
from typing import NamedTuple


class DenialRow(NamedTuple):
    id: int
    at: int
    license_id: int
    feature: str
    kind: str
    user: str | None
    host: str | None
    address: str | None
    login: str | None
    reason: str
    in_use_milli: int | None
    limit_milli: int | None


_COLUMNS = "id, at, license_id, feature, kind, user, host, address, login, reason, in_use_milli, limit_milli"


def record(conn: sqlite3.Connection, row: DenialRow) -> None:
    conn.execute(
        f"INSERT INTO denials ({_COLUMNS.removeprefix('id, ')}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        row[1:],
    )


class DenialFilter(NamedTuple):
    license_id: int | None = None
    feature: str | None = None  # '' is the license's own seats and counter
    user: str | None = None
    reason: str | None = None
    since: int | None = None  # inclusive
    until: int | None = None  # exclusive


def _where(where: DenialFilter) -> tuple[list[str], list[object]]:
    clauses: list[str] = []
    args: list[object] = []
    for column, value in (
        ("license_id", where.license_id),
        ("feature", where.feature),
        ("user", where.user),
        ("reason", where.reason),
    ):
        if value is not None:
            clauses.append(f"{column} = ?")
            args.append(value)
    if where.since is not None:
        clauses.append("at >= ?")
        args.append(where.since)
    if where.until is not None:
        clauses.append("at < ?")
        args.append(where.until)
    return clauses, args


def page(conn: sqlite3.Connection, where: DenialFilter, before_id: int | None, limit: int) -> list[DenialRow]:
    """Up to `limit` denials matching `where`, newest first, older than the denial `before_id` (a cursor)."""
    clauses, args = _where(where)
    if before_id is not None:
        clauses.append("id < ?")
        args.append(before_id)
    sql = f"SELECT {_COLUMNS} FROM denials"
    if clauses:
        sql += " WHERE " + " AND ".join(clauses)
    rows = conn.execute(sql + " ORDER BY id DESC LIMIT ?", (*args, limit))
    return [DenialRow(*row) for row in rows]


def times(conn: sqlite3.Connection, license_id: int, feature: str, since: int, until: int) -> list[int]:
    """When the seats of a license (feature '') or feature were refused in [since, until), oldest first."""
    rows = conn.execute(
        "SELECT at FROM denials WHERE license_id = ? AND feature = ? AND kind = 'seat' AND at >= ? AND at < ?"
        " ORDER BY at",
        (license_id, feature, since, until),
    )
    return [at for (at,) in rows]


def prune(conn: sqlite3.Connection, before: int, limit: int) -> int:
    """Delete up to `limit` denials older than `before` (oldest first); returns how many."""
    return conn.execute(
        "DELETE FROM denials WHERE id IN (SELECT id FROM denials WHERE at < ? ORDER BY at LIMIT ?)", (before, limit)
    ).rowcount
