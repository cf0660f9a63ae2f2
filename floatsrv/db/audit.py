"""SQL for the append-only audit log (the schema refuses UPDATE and DELETE on it)."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class AuditRow:
    id: int
    at: int
    action: str
    actor: str | None
    target: str | None
    peer: str | None
    detail: dict[str, Any]


def record(
    conn: sqlite3.Connection,
    *,
    at: int,
    action: str,
    actor: str | None,
    target: str | None = None,
    peer: str | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    conn.execute(
        "INSERT INTO audit_log (at, action, actor, target, peer, detail) VALUES (?, ?, ?, ?, ?, ?)",
        (at, action, actor, target, peer, json.dumps(detail or {}, sort_keys=True)),
    )


def query(
    conn: sqlite3.Connection,
    *,
    action: str | None = None,
    actor: str | None = None,
    target: str | None = None,
    since: int | None = None,
    until: int | None = None,
    before_id: int | None = None,
    limit: int = 100,
) -> list[AuditRow]:
    """Newest first. `before_id` pages backwards through the log."""
    clauses, args = [], []  # type: list[str], list[object]
    for column, value in (("action", action), ("actor", actor), ("target", target)):
        if value is not None:
            clauses.append(f"{column} = ?")
            args.append(value)
    if since is not None:
        clauses.append("at >= ?")
        args.append(since)
    if until is not None:
        clauses.append("at < ?")
        args.append(until)
    if before_id is not None:
        clauses.append("id < ?")
        args.append(before_id)
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    rows = conn.execute(
        f"SELECT id, at, action, actor, target, peer, detail FROM audit_log {where} ORDER BY id DESC LIMIT ?",
        (*args, limit),
    )
    return [AuditRow(row[0], row[1], row[2], row[3], row[4], row[5], json.loads(row[6])) for row in rows]
