"""Read-only SQL for the admin commands and the console (counters with their delivery state, a license's kept
usage events) and whole-database checks."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import NamedTuple


@dataclass(frozen=True, slots=True)
class CounterRow:
    license_id: int
    feature: str
    period_start: int
    period_end: int | None
    total_milli: int
    revision: int
    updated_at: int
    delivered: dict[str, int]  # channel -> revision it confirmed


def counters(conn: sqlite3.Connection, license_id: int | None, limit: int) -> list[CounterRow]:
    """Consumption counters, newest period first, with what each sync channel has confirmed of them."""
    where, args = ("WHERE c.license_id = ?", [license_id]) if license_id is not None else ("", [])
    chosen = (
        "SELECT c.license_id, c.feature, c.period_start, c.period_end, c.total_milli, c.revision, c.updated_at"
        f" FROM consumption_counters c {where} ORDER BY c.period_start DESC, c.license_id, c.feature LIMIT ?"
    )
    rows = conn.execute(chosen, (*args, limit)).fetchall()
    delivered: dict[tuple[int, str, int], dict[str, int]] = {}
    for lid, feature, start, channel, revision in conn.execute(
        "SELECT d.license_id, d.feature, d.period_start, d.channel, d.revision"
        f" FROM sync_delivered d JOIN ({chosen}) k USING (license_id, feature, period_start)",
        (*args, limit),
    ):
        delivered.setdefault((lid, feature, start), {})[channel] = revision
    return [
        CounterRow(lid, feature, start, end, total, revision, updated, delivered.get((lid, feature, start), {}))
        for lid, feature, start, end, total, revision, updated in rows
    ]


class EventRow(NamedTuple):
    id: int
    feature: str
    quantity_milli: int
    user: str | None
    source: str
    event_id: str | None
    occurred_at: int | None
    received_at: int


def events(
    conn: sqlite3.Connection, license_id: int, before: int | None, limit: int, span: int
) -> tuple[list[EventRow], int | None]:
    """A license's usage events still kept (not compacted), newest first, among the `span` events below id
    `before`, and where the next page starts (None: no older events). usage_events has no index by license (it
    would cost every usage event a B-tree write), so a page reads at most `span` rows of the table: a license
    with few events gets short pages, never a scan of the whole table."""
    if before is None:
        before = (conn.execute("SELECT max(id) FROM usage_events").fetchone()[0] or 0) + 1
    floor = max(before - span, 0)
    rows = [
        EventRow(*row)
        for row in conn.execute(
            "SELECT id, feature, quantity_milli, user, source, event_id, occurred_at, received_at FROM usage_events"
            " WHERE id < ? AND id >= ? AND license_id = ? ORDER BY id DESC LIMIT ?",
            (before, floor, license_id, limit),
        )
    ]
    if len(rows) == limit:
        return rows, rows[-1].id
    return rows, floor if floor > 0 else None


def integrity_problems(conn: sqlite3.Connection) -> list[str]:
    """SQLite's own checks, then ours: every counter equals its compacted part plus its kept events."""
    problems = [row[0] for row in conn.execute("PRAGMA integrity_check") if row[0] != "ok"]
    problems += [f"foreign key: {row[0]} row {row[1]} -> {row[2]}" for row in conn.execute("PRAGMA foreign_key_check")]
    if problems:
        return problems  # the invariants below are meaningless on a damaged file
    return counter_problems(conn)


def counter_problems(conn: sqlite3.Connection) -> list[str]:
    """Every counter equals its compacted part plus its kept events (both backends)."""
    mismatched = conn.execute(
        "SELECT c.license_id, c.feature, c.period_start, c.total_milli, c.compacted_milli + COALESCE(e.total, 0)"
        " FROM consumption_counters c LEFT JOIN (SELECT license_id, feature, period_start,"
        " SUM(quantity_milli) AS total FROM usage_events GROUP BY 1, 2, 3) e"
        " USING (license_id, feature, period_start)"
        " WHERE c.total_milli <> c.compacted_milli + COALESCE(e.total, 0)"
    ).fetchall()
    return [
        f"counter (license {lid}, feature {feature!r}, period {start}) is {total}, its events sum to {events}"
        for lid, feature, start, total, events in mismatched
    ]
