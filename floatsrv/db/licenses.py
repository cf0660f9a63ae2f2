"""SQL for the `licenses` and `license_features` tables."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class LicenseRow:
    id: int
    product: str
    added_seq: int
    removed_at: int | None
    definition: str
    floating_users: int
    file_id: str | None  # the license file it comes from; None: inline in the YAML config
    entitlements: str  # signed | demo | unsigned
    definition_format: int  # how `definition` is written (domain.catalog.DEFINITION_FORMAT)


def all_licenses(conn: sqlite3.Connection) -> list[LicenseRow]:
    rows = conn.execute(
        "SELECT id, product, added_seq, removed_at, definition, floating_users, file_id, entitlements,"
        " definition_format FROM licenses ORDER BY added_seq"
    )
    return [LicenseRow(*row) for row in rows]


def upsert_license(
    conn: sqlite3.Connection,
    *,
    license_id: int,
    product: str,
    floating_users: int,
    definition: str,
    definition_format: int,
    now: int,
    file_id: str | None,
    entitlements: str,
) -> None:
    """Insert a new license (next added_seq) or update an existing one; a re-added license counts as new."""
    conn.execute(
        """
        INSERT INTO licenses (id, product, added_seq, added_at, floating_users, definition, updated_at, file_id,
                              entitlements, definition_format)
        VALUES (?1, ?2, (SELECT COALESCE(MAX(added_seq), 0) + 1 FROM licenses), ?5, ?3, ?4, ?5, ?6, ?7, ?8)
        ON CONFLICT (id) DO UPDATE SET
            product = excluded.product,
            floating_users = excluded.floating_users,
            definition = excluded.definition,
            definition_format = excluded.definition_format,
            updated_at = excluded.updated_at,
            file_id = excluded.file_id,
            entitlements = excluded.entitlements,
            added_seq = CASE WHEN licenses.removed_at IS NULL THEN licenses.added_seq ELSE excluded.added_seq END,
            removed_at = NULL
        """,
        (license_id, product, floating_users, definition, now, file_id, entitlements, definition_format),
    )


def mark_removed(conn: sqlite3.Connection, license_id: int, now: int) -> None:
    conn.execute(
        "UPDATE licenses SET removed_at = ?, updated_at = ? WHERE id = ? AND removed_at IS NULL", (now, now, license_id)
    )


def upsert_feature(conn: sqlite3.Connection, *, license_id: int, code: str, floating_users: int | None) -> None:
    conn.execute(
        """
        INSERT INTO license_features (license_id, code, feature_id, floating_users)
        VALUES (?, ?, (SELECT COALESCE(MAX(feature_id), 0) + 1 FROM license_features), ?)
        ON CONFLICT (license_id, code) DO UPDATE SET floating_users = excluded.floating_users, removed_at = NULL
        """,
        (license_id, code, floating_users),
    )


def set_feature_seat_limit(conn: sqlite3.Connection, license_id: int, code: str, floating_users: int) -> None:
    """The seat limit the slot trigger enforces: the configured seats plus active seat add-ons."""
    conn.execute(
        "UPDATE license_features SET floating_users = ? WHERE license_id = ? AND code = ?",
        (floating_users, license_id, code),
    )


def feature_seat_limits(conn: sqlite3.Connection, license_id: int) -> dict[str, int]:
    rows = conn.execute(
        "SELECT code, floating_users FROM license_features WHERE license_id = ? AND floating_users IS NOT NULL",
        (license_id,),
    )
    return dict(rows.fetchall())


def feature_seat_limit(conn: sqlite3.Connection, license_id: int, code: str) -> int:
    row = conn.execute(
        "SELECT floating_users FROM license_features WHERE license_id = ? AND code = ?", (license_id, code)
    ).fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def mark_feature_removed(conn: sqlite3.Connection, license_id: int, code: str, now: int) -> None:
    conn.execute(
        "UPDATE license_features SET removed_at = ? WHERE license_id = ? AND code = ? AND removed_at IS NULL",
        (now, license_id, code),
    )


def feature_rows(conn: sqlite3.Connection) -> list[tuple[int, str, int, int | None]]:
    """(license_id, code, feature_id, removed_at) for every feature ever known."""
    return list(conn.execute("SELECT license_id, code, feature_id, removed_at FROM license_features"))


def seats_over_limit(conn: sqlite3.Connection, now: int) -> list[tuple[int, str, int, int]]:
    """(license, feature or '', held, limit) wherever more seats are held now than the limit allows (after the
    limit was lowered: held seats stay until they end)."""
    rows = conn.execute(
        """
        SELECT license_id, feature, held, seat_limit FROM (
            SELECT s.license_id, s.feature, COUNT(*) AS held,
                   MAX(CASE WHEN s.feature = '' THEN l.floating_users ELSE COALESCE(f.floating_users, 0) END)
                       AS seat_limit
            FROM seats AS s
            JOIN licenses AS l ON l.id = s.license_id
            LEFT JOIN license_features AS f ON f.license_id = s.license_id AND f.code = s.feature
            WHERE s.ended_at IS NULL AND s.expires_at > ?
            GROUP BY s.license_id, s.feature
        ) AS counted
        WHERE held > seat_limit
        ORDER BY license_id, feature
        """,
        (now,),
    )
    return [(int(a), str(b), int(c), int(d)) for a, b, c, d in rows.fetchall()]
