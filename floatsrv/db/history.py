"""SQL the usage history reads and prunes: seat intervals (`seats`) and consumption per day
(`consumption_daily`, migration 0010) or per period (`consumption_counters`)."""

from __future__ import annotations

import sqlite3
from typing import NamedTuple


def seat_intervals(
    conn: sqlite3.Connection, license_id: int, feature: str, since: int, until: int, now: int
) -> list[tuple[int, int]]:
    """(start, end) of every seat of a license (feature '') or feature that overlaps [since, until). A seat
    ends when it was ended, or when it expires (a held one that has not yet expired counts until `now`)."""
    rows = conn.execute(
        """
        SELECT registered_at, CASE WHEN ended_at IS NOT NULL THEN ended_at
                                    WHEN expires_at < ?4 THEN expires_at ELSE ?4 END AS stop
          FROM seats
         WHERE license_id = ?1 AND feature = ?2 AND registered_at < ?3
           AND (ended_at IS NULL OR ended_at > ?5)
        """,
        (license_id, feature, until, now, since),
    )
    return [(start, stop) for start, stop in rows if stop > since and stop > start]


def _scoped(sql: str, args: list[object], license_id: int | None, feature: str | None) -> tuple[str, list[object]]:
    """`sql` (ending in a WHERE clause) narrowed to one license and/or feature."""
    for column, value in (("license_id", license_id), ("feature", feature)):
        if value is not None:
            sql += f" AND {column} = ?"
            args.append(value)
    return sql, args


class DayRow(NamedTuple):
    license_id: int
    feature: str
    start: int
    quantity_milli: int
    events: int


def consumption_days(
    conn: sqlite3.Connection, license_id: int | None, feature: str | None, since: int, until: int
) -> list[DayRow]:
    """Consumption per UTC day in [since, until), per license and feature ('' the license's own counter)."""
    sql = "SELECT license_id, feature, day, quantity_milli, events FROM consumption_daily WHERE day >= ? AND day < ?"
    sql, args = _scoped(sql, [since, until], license_id, feature)
    return [DayRow(*row) for row in conn.execute(sql + " ORDER BY license_id, feature, day", args)]


class PeriodRow(NamedTuple):
    license_id: int
    feature: str
    start: int
    end: int | None
    quantity_milli: int


def consumption_periods(
    conn: sqlite3.Connection, license_id: int | None, feature: str | None, since: int, until: int
) -> list[PeriodRow]:
    """The consumption counters whose period overlaps [since, until) (a counter that never resets: start 0)."""
    sql = (
        "SELECT license_id, feature, period_start, period_end, total_milli FROM consumption_counters"
        " WHERE period_start < ? AND (period_end IS NULL OR period_end > ?)"
    )
    sql, args = _scoped(sql, [until, since], license_id, feature)
    return [PeriodRow(*row) for row in conn.execute(sql + " ORDER BY license_id, feature, period_start", args)]


def prune(conn: sqlite3.Connection, before: int, limit: int) -> int:
    """Delete up to `limit` ended seats and daily totals from before `before`; returns how many rows went."""
    gone = conn.execute(
        "DELETE FROM seats WHERE id IN (SELECT id FROM seats WHERE ended_at IS NOT NULL AND ended_at < ?"
        " ORDER BY ended_at LIMIT ?)",
        (before, limit),
    ).rowcount
    day = before // 86_400_000_000 * 86_400_000_000
    gone += conn.execute(
        "DELETE FROM consumption_daily WHERE (license_id, feature, day) IN"
        " (SELECT license_id, feature, day FROM consumption_daily WHERE day < ? LIMIT ?)",
        (day, limit),
    ).rowcount
    return gone
