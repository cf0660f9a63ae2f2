"""SQL for the `seats` table: license registrations (feature = '') and floating-feature seats.

A seat is *held* while `ended_at IS NULL`; it *counts* while it is also unexpired (`expires_at > now`).
Ending a seat records when and why; rows are never deleted or revived.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from typing import NamedTuple

from floatsrv.errors import SeatOwnedByAnotherLogin
from floatsrv.models import ClientInfo

LICENSE_SEAT = ""

_COLUMNS = (
    "id, license_id, feature, user, slot, principal, registered_at, heartbeat_at, expires_at, "
    "borrowed_until, ended_at, end_reason, os_hostname, ip_local, user_info, sdk_ver, app_ver"
)


def _expiry_reason(alias: str) -> str:
    """SQL for why an expired seat ended: its borrow ran out, or its holder stopped renewing it."""
    return (
        f"CASE WHEN {alias}.borrowed_until IS NOT NULL AND {alias}.borrowed_until >= {alias}.expires_at "
        "THEN 'borrow_ended' ELSE 'expired' END"
    )


class SeatRow(NamedTuple):
    """A row of `seats`. A NamedTuple, like the other values made per request on the hot path (requests,
    results, counter keys, balances): immutable as a frozen dataclass, and several times cheaper to build."""

    id: int
    license_id: int
    feature: str
    user: str
    slot: int
    principal: str | None
    registered_at: int
    heartbeat_at: int
    expires_at: int
    borrowed_until: int | None
    ended_at: int | None
    end_reason: str | None
    os_hostname: str | None
    ip_local: str | None
    user_info: str | None
    sdk_ver: str | None
    app_ver: str | None


def by_id(conn: sqlite3.Connection, seat_id: int) -> SeatRow | None:
    row = conn.execute(f"SELECT {_COLUMNS} FROM seats WHERE id = ?", (seat_id,)).fetchone()
    return SeatRow(*row) if row else None


def held(conn: sqlite3.Connection, license_id: int, feature: str, user: str) -> SeatRow | None:
    row = conn.execute(
        f"SELECT {_COLUMNS} FROM seats WHERE license_id = ? AND feature = ? AND user = ? AND ended_at IS NULL",
        (license_id, feature, user),
    ).fetchone()
    return SeatRow(*row) if row else None


def end_expired(conn: sqlite3.Connection, now: int, license_id: int | None = None, feature: str | None = None) -> int:
    """End every held seat that has expired (optionally of one license / one feature), at its true end time.

    When a license seat ends, the same user's feature seats on that license end with it. Returns seats ended.
    """
    ended = 0
    if feature in (None, LICENSE_SEAT):
        only = "" if license_id is None else "AND l.license_id = ?"
        ended += conn.execute(
            f"""
            UPDATE seats AS f SET
                ended_at = CASE WHEN f.expires_at <= l.expires_at THEN f.expires_at ELSE l.expires_at END,
                end_reason = CASE WHEN f.expires_at <= l.expires_at THEN {_expiry_reason("f")}
                                  ELSE {_expiry_reason("l")} END
            FROM seats AS l
            WHERE f.ended_at IS NULL AND f.feature <> '' AND l.ended_at IS NULL AND l.feature = ''
              AND l.license_id = f.license_id AND l.user = f.user AND l.expires_at <= ? {only}
            """,
            (now,) if license_id is None else (now, license_id),
        ).rowcount
    sql = (
        f"UPDATE seats AS s SET ended_at = s.expires_at, end_reason = {_expiry_reason('s')} "
        "WHERE s.ended_at IS NULL AND s.expires_at <= ?"
    )
    args: tuple[object, ...] = (now,)
    if license_id is not None:
        sql += " AND s.license_id = ?"
        args += (license_id,)
    if feature is not None:
        sql += " AND s.feature = ?"
        args += (feature,)
    return ended + conn.execute(sql, args).rowcount


def count_live(conn: sqlite3.Connection, license_id: int, feature: str, now: int) -> int:
    row = conn.execute(
        "SELECT COUNT(*) FROM seats WHERE license_id = ? AND feature = ? AND ended_at IS NULL AND expires_at > ?",
        (license_id, feature, now),
    ).fetchone()
    return int(row[0])


def holders(
    conn: sqlite3.Connection, license_id: int, feature: str, now: int
) -> list[tuple[str, str | None, str | None, str | None]]:
    """Who holds the live seats of a license (feature '') or feature: (user, os_hostname, principal, address)."""
    rows = conn.execute(
        "SELECT user, os_hostname, principal, address FROM seats"
        " WHERE license_id = ? AND feature = ? AND ended_at IS NULL AND expires_at > ?",
        (license_id, feature, now),
    )
    return rows.fetchall()


def live_counts(conn: sqlite3.Connection, license_id: int, now: int) -> dict[str, int]:
    """Seats in use per feature of a license ('' = the license seat), in one query."""
    rows = conn.execute(
        "SELECT feature, COUNT(*) FROM seats WHERE license_id = ? AND ended_at IS NULL AND expires_at > ?"
        " GROUP BY feature",
        (license_id, now),
    )
    return dict(rows.fetchall())


def borrowed_counts(conn: sqlite3.Connection, now: int) -> dict[tuple[int, str], int]:
    """Live seats held on a borrow now, per (license, feature) ('' = the license seat)."""
    rows = conn.execute(
        "SELECT license_id, feature, COUNT(*) FROM seats WHERE ended_at IS NULL AND expires_at > ?1"
        " AND borrowed_until IS NOT NULL AND borrowed_until > ?1 GROUP BY license_id, feature",
        (now,),
    )
    return {(int(license_id), str(feature)): int(count) for license_id, feature, count in rows}


def renew_held(
    conn: sqlite3.Connection,
    *,
    license_id: int,
    feature: str,
    user: str,
    now: int,
    timeout_us: int,
    borrow_until: int | None,
    client: ClientInfo,
    owner: str | None = None,
) -> SeatRow | None:
    """Heartbeat: renew the user's unexpired seat, or None when they hold none. With `owner`, a seat another
    login took is not renewed: SeatOwnedByAnotherLogin (seats from before logins were recorded have none).

    A SELECT and an UPDATE by id, not one UPDATE ... RETURNING: SQLite runs RETURNING through a
    temporary result table, which made this, the hottest statement of all, three times as expensive.
    """
    row = conn.execute(_HELD_UNEXPIRED, (license_id, feature, user, now)).fetchone()
    if row is None:
        return None
    (
        seat_id,
        lic,
        feat,
        usr,
        slot,
        principal,
        registered_at,
        _,
        _,
        old_borrow,
        ended_at,
        end_reason,
        os_hostname,
        ip_local,
        user_info,
        sdk_ver,
        app_ver,
    ) = row
    if owner is not None and principal is not None and principal != owner:
        raise SeatOwnedByAnotherLogin(
            f"user {usr!r} holds this seat through another login; only that login or an admin may change it",
            user=usr,
        )
    borrowed_until = borrow_until if borrow_until is not None else old_borrow
    seat = SeatRow(  # built here, not with dataclasses.replace (several times slower, on the hottest path)
        seat_id,
        lic,
        feat,
        usr,
        slot,
        principal,
        registered_at,
        now,
        max(now + timeout_us, borrowed_until or 0),
        borrowed_until,
        ended_at,
        end_reason,
        _or(client.os_hostname, os_hostname),
        _or(client.ip_local, ip_local),
        _or(client.user_info, user_info),
        _or(client.sdk_ver, sdk_ver),
        _or(client.app_ver, app_ver),
    )
    if borrow_until is None and client == _NO_CLIENT_INFO:  # a bare heartbeat changes two columns
        conn.execute("UPDATE seats SET heartbeat_at = ?, expires_at = ? WHERE id = ?", (now, seat.expires_at, seat_id))
        return seat
    conn.execute(
        "UPDATE seats SET heartbeat_at = ?, expires_at = ?, borrowed_until = ?, os_hostname = ?, ip_local = ?,"
        " user_info = ?, sdk_ver = ?, app_ver = ? WHERE id = ?",
        (
            seat.heartbeat_at,
            seat.expires_at,
            seat.borrowed_until,
            seat.os_hostname,
            seat.ip_local,
            seat.user_info,
            seat.sdk_ver,
            seat.app_ver,
            seat.id,
        ),
    )
    return seat


_NO_CLIENT_INFO = ClientInfo()

_HELD_UNEXPIRED = (
    f"SELECT {_COLUMNS} FROM seats"
    " WHERE license_id = ? AND feature = ? AND user = ? AND ended_at IS NULL AND expires_at > ?"
)


def _or(new: str | None, old: str | None) -> str | None:
    return old if new is None else new


def live_feature_counts(conn: sqlite3.Connection, license_id: int, now: int) -> dict[str, int]:
    rows = conn.execute(
        "SELECT feature, COUNT(*) FROM seats WHERE license_id = ? AND feature <> '' "
        "AND ended_at IS NULL AND expires_at > ? GROUP BY feature",
        (license_id, now),
    )
    return {feature: count for feature, count in rows}


def free_slot(conn: sqlite3.Connection, license_id: int, feature: str) -> int:
    """Lowest slot number not held (callers first check that fewer seats than the limit are held)."""
    row = conn.execute(
        """
        SELECT CASE WHEN NOT EXISTS (SELECT 1 FROM seats WHERE license_id = ?1 AND feature = ?2
                                     AND ended_at IS NULL AND slot = 1) THEN 1
               ELSE (SELECT MIN(a.slot) + 1 FROM seats AS a
                     WHERE a.license_id = ?1 AND a.feature = ?2 AND a.ended_at IS NULL
                       AND NOT EXISTS (SELECT 1 FROM seats AS b WHERE b.license_id = ?1 AND b.feature = ?2
                                       AND b.ended_at IS NULL AND b.slot = a.slot + 1))
               END
        """,
        (license_id, feature),
    ).fetchone()
    return int(row[0])


def insert(
    conn: sqlite3.Connection,
    *,
    license_id: int,
    feature: str,
    user: str,
    slot: int,
    principal: str | None,
    now: int,
    expires_at: int,
    borrowed_until: int | None,
    client: ClientInfo,
    address: str | None = None,
) -> SeatRow:
    values = (
        license_id,
        feature,
        user,
        slot,
        principal,
        now,
        now,
        expires_at,
        borrowed_until,
        client.os_hostname,
        client.ip_local,
        client.user_info,
        client.sdk_ver,
        client.app_ver,
    )
    cursor = conn.execute(
        "INSERT INTO seats (license_id, feature, user, slot, principal, registered_at, heartbeat_at, expires_at,"
        " borrowed_until, os_hostname, ip_local, user_info, sdk_ver, app_ver, address)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (*values, address),
    )
    assert cursor.lastrowid is not None
    return SeatRow(cursor.lastrowid, *values[:9], None, None, *values[9:])


def renew(
    conn: sqlite3.Connection,
    seat_id: int,
    *,
    now: int,
    expires_at: int,
    borrowed_until: int | None,
    client: ClientInfo | None,
) -> SeatRow:
    """Heartbeat: move the expiry (and borrow) forward; refresh what the client reports about itself."""
    info = client or ClientInfo()
    row = conn.execute(
        f"""
        UPDATE seats SET heartbeat_at = ?, expires_at = ?, borrowed_until = ?,
            os_hostname = COALESCE(?, os_hostname), ip_local = COALESCE(?, ip_local),
            user_info = COALESCE(?, user_info), sdk_ver = COALESCE(?, sdk_ver), app_ver = COALESCE(?, app_ver)
        WHERE id = ? AND ended_at IS NULL
        RETURNING {_COLUMNS}
        """,
        (
            now,
            expires_at,
            borrowed_until,
            info.os_hostname,
            info.ip_local,
            info.user_info,
            info.sdk_ver,
            info.app_ver,
            seat_id,
        ),
    ).fetchone()
    return SeatRow(*row)


def end_user(conn: sqlite3.Connection, license_id: int, user: str, now: int, reason: str, feature: str | None) -> int:
    """End one user's held seat(s): one feature's, or (feature=None) the license seat and all feature seats."""
    sql = "UPDATE seats SET ended_at = ?, end_reason = ? WHERE license_id = ? AND user = ? AND ended_at IS NULL"
    args: tuple[object, ...] = (now, reason, license_id, user)
    if feature is not None:
        sql += " AND feature = ?"
        args += (feature,)
    return conn.execute(sql, args).rowcount


def end_all(
    conn: sqlite3.Connection,
    license_ids: Iterable[int],
    now: int,
    reason: str,
    *,
    features_only: bool = False,
    feature: str | None = None,
    user: str | None = None,
    principal: str | None = None,
) -> int:
    """End held seats of the given licenses (all of them, or only feature seats / one feature / one user /
    those one login took)."""
    total = 0
    for license_id in license_ids:
        sql = "UPDATE seats SET ended_at = ?, end_reason = ? WHERE license_id = ? AND ended_at IS NULL"
        args: tuple[object, ...] = (now, reason, license_id)
        if features_only:
            sql += " AND feature <> ''"
        if feature is not None:
            sql += " AND feature = ?"
            args += (feature,)
        if user is not None:
            sql += " AND user = ?"
            args += (user,)
        if principal is not None:
            sql += " AND principal = ?"
            args += (principal,)
        total += conn.execute(sql, args).rowcount
    return total


def query(
    conn: sqlite3.Connection,
    *,
    license_ids: list[int] | None,
    feature: str | None,
    user: str | None,
    state: str,
    now: int,
    limit: int,
    host: str | None = None,
    before: int | None = None,
) -> list[SeatRow]:
    """Seats for admins, newest first (ids below `before`). state: held (unexpired, not ended) | borrowed (held
    on a borrow) | ended | all."""
    clauses: list[str] = []
    args: list[object] = []
    if license_ids is not None:
        clauses.append(f"license_id IN ({','.join('?' * len(license_ids))})")
        args.extend(license_ids)
    if feature is not None:
        clauses.append("feature = ?")
        args.append(feature)
    if user is not None:
        clauses.append("user = ?")
        args.append(user)
    if host is not None:
        clauses.append("os_hostname = ?")
        args.append(host)
    if before is not None:
        clauses.append("id < ?")
        args.append(before)
    if state == "held":
        clauses.append("ended_at IS NULL AND expires_at > ?")
        args.append(now)
    elif state == "borrowed":
        clauses.append("ended_at IS NULL AND expires_at > ? AND borrowed_until IS NOT NULL")
        args.append(now)
    elif state == "ended":
        clauses.append("(ended_at IS NOT NULL OR expires_at <= ?)")
        args.append(now)
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    rows = conn.execute(f"SELECT {_COLUMNS} FROM seats {where} ORDER BY id DESC LIMIT ?", (*args, limit))
    return [SeatRow(*row) for row in rows]
