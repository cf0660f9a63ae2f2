"""SQL for credits: the append-only ledger and the running sums its triggers keep."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class LedgerRow:
    id: int
    license_id: int
    at: int
    kind: str
    pool: str
    amount_milli: int
    period_start: int | None
    feature: str | None
    usage_event_id: int | None
    actor: str | None
    note: str | None


def purchased(conn: sqlite3.Connection, license_id: int) -> int:
    row = conn.execute("SELECT purchased_milli FROM credit_balances WHERE license_id = ?", (license_id,)).fetchone()
    return int(row[0]) if row else 0


def plan_used(conn: sqlite3.Connection, license_id: int, period_start: int) -> int:
    row = conn.execute(
        "SELECT used_milli FROM credit_plan_usage WHERE license_id = ? AND period_start = ?", (license_id, period_start)
    ).fetchone()
    return int(row[0]) if row else 0


def append(
    conn: sqlite3.Connection,
    *,
    license_id: int,
    at: int,
    kind: str,
    pool: str,
    amount_milli: int,
    period_start: int | None = None,
    feature: str | None = None,
    usage_event_id: int | None = None,
    actor: str | None = None,
    note: str | None = None,
    grant_id: str | None = None,
) -> int:
    row = conn.execute(
        "INSERT INTO credit_ledger (license_id, at, kind, pool, amount_milli, period_start, feature, usage_event_id,"
        " actor, note, grant_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
        (license_id, at, kind, pool, amount_milli, period_start, feature, usage_event_id, actor, note, grant_id),
    ).fetchone()
    return int(row[0])


def grant_applied(conn: sqlite3.Connection, license_id: int, grant_id: str) -> bool:
    """Whether a vendor credit grant was applied to the license (the schema allows it once)."""
    row = conn.execute(
        "SELECT 1 FROM credit_ledger WHERE license_id = ? AND grant_id = ?", (license_id, grant_id)
    ).fetchone()
    return row is not None


def ledger(conn: sqlite3.Connection, license_id: int, *, before_id: int | None, limit: int) -> list[LedgerRow]:
    sql = (
        "SELECT id, license_id, at, kind, pool, amount_milli, period_start, feature, usage_event_id, actor, note"
        " FROM credit_ledger WHERE license_id = ?"
    )
    args: list[object] = [license_id]
    if before_id is not None:
        sql += " AND id < ?"
        args.append(before_id)
    return [LedgerRow(*row) for row in conn.execute(sql + " ORDER BY id DESC LIMIT ?", (*args, limit))]
