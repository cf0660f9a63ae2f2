"""SQL for users, issued tokens, API keys and the auth version row."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class UserRow:
    username: str
    role: str
    password_hash: str
    source: str
    must_change_password: bool
    disabled: bool
    created_at: int
    updated_at: int


@dataclass(frozen=True, slots=True)
class TokenRow:
    jti: str
    username: str
    issued_at: int
    expires_at: int
    peer: str | None
    revoked_at: int | None
    revoked_by: str | None


@dataclass(frozen=True, slots=True)
class ApiKeyRow:
    id: str
    name: str
    role: str
    secret_sha256: bytes
    created_at: int
    created_by: str
    revoked_at: int | None
    revoked_by: str | None


_USER = "username, role, password_hash, source, must_change_password, disabled, created_at, updated_at"
_TOKEN = "jti, username, issued_at, expires_at, peer, revoked_at, revoked_by"  # noqa: S105 -- column names
_KEY = "id, name, role, secret_sha256, created_at, created_by, revoked_at, revoked_by"


def _user(row: tuple[object, ...]) -> UserRow:
    values = list(row)
    values[4], values[5] = bool(values[4]), bool(values[5])
    return UserRow(*values)  # type: ignore[arg-type]


def auth_version(conn: sqlite3.Connection) -> tuple[int, int]:
    """(version, key_generation): `version` moves whenever any credential may have changed."""
    row = conn.execute("SELECT version, key_generation FROM auth_state WHERE id = 1").fetchone()
    return int(row[0]), int(row[1])


def bump_key_generation(conn: sqlite3.Connection) -> int:
    conn.execute("UPDATE auth_state SET key_generation = key_generation + 1, version = version + 1 WHERE id = 1")
    return auth_version(conn)[1]


def all_users(conn: sqlite3.Connection) -> list[UserRow]:
    return [_user(row) for row in conn.execute(f"SELECT {_USER} FROM users ORDER BY username")]


def get_user(conn: sqlite3.Connection, username: str) -> UserRow | None:
    row = conn.execute(f"SELECT {_USER} FROM users WHERE username = ?", (username,)).fetchone()
    return _user(row) if row else None


def insert_user(
    conn: sqlite3.Connection,
    *,
    username: str,
    role: str,
    password_hash: str,
    source: str,
    must_change_password: bool,
    now: int,
) -> None:
    conn.execute(
        "INSERT INTO users (username, role, password_hash, source, must_change_password, created_at, updated_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        (username, role, password_hash, source, int(must_change_password), now, now),
    )


def update_user(conn: sqlite3.Connection, username: str, now: int, **changes: object) -> bool:
    """Set the given columns (role, password_hash, source, must_change_password, disabled)."""
    allowed = {"role", "password_hash", "source", "must_change_password", "disabled"}
    assert set(changes) <= allowed, set(changes) - allowed
    values = [int(v) if isinstance(v, bool) else v for v in changes.values()]
    assignments = ", ".join(f"{column} = ?" for column in changes)
    cursor = conn.execute(
        f"UPDATE users SET {assignments}, updated_at = ? WHERE username = ?", (*values, now, username)
    )
    return cursor.rowcount == 1


def delete_user(conn: sqlite3.Connection, username: str) -> bool:
    return conn.execute("DELETE FROM users WHERE username = ?", (username,)).rowcount == 1


def insert_token(
    conn: sqlite3.Connection, *, jti: str, username: str, issued_at: int, expires_at: int, peer: str | None
) -> None:
    conn.execute(
        "INSERT INTO issued_tokens (jti, username, issued_at, expires_at, peer) VALUES (?, ?, ?, ?, ?)",
        (jti, username, issued_at, expires_at, peer),
    )


def get_token(conn: sqlite3.Connection, jti: str) -> TokenRow | None:
    row = conn.execute(f"SELECT {_TOKEN} FROM issued_tokens WHERE jti = ?", (jti,)).fetchone()
    return TokenRow(*row) if row else None


def revoked_token_ids(conn: sqlite3.Connection, now: int) -> set[str]:
    """Revoked tokens that have not expired yet (expired ones are rejected anyway)."""
    rows = conn.execute("SELECT jti FROM issued_tokens WHERE revoked_at IS NOT NULL AND expires_at > ?", (now,))
    return {row[0] for row in rows}


def list_tokens(
    conn: sqlite3.Connection, *, username: str | None, live_only: bool, now: int, limit: int
) -> list[TokenRow]:
    sql = f"SELECT {_TOKEN} FROM issued_tokens WHERE 1 = 1"
    args: list[object] = []
    if username is not None:
        sql += " AND username = ?"
        args.append(username)
    if live_only:
        sql += " AND revoked_at IS NULL AND expires_at > ?"
        args.append(now)
    rows = conn.execute(sql + " ORDER BY issued_at DESC LIMIT ?", (*args, limit))
    return [TokenRow(*row) for row in rows]


def revoke_token(conn: sqlite3.Connection, jti: str, now: int, by: str) -> bool:
    cursor = conn.execute(
        "UPDATE issued_tokens SET revoked_at = ?, revoked_by = ? WHERE jti = ? AND revoked_at IS NULL", (now, by, jti)
    )
    return cursor.rowcount == 1


def revoke_user_tokens(conn: sqlite3.Connection, username: str, now: int, by: str, keep: str | None = None) -> int:
    """Revoke every live token of a user (but `keep`, a token id, if given); returns how many."""
    sql = (
        "UPDATE issued_tokens SET revoked_at = ?, revoked_by = ? WHERE username = ? AND revoked_at IS NULL"
        " AND expires_at > ?"
    )
    if keep is None:
        return conn.execute(sql, (now, by, username, now)).rowcount
    return conn.execute(sql + " AND jti <> ?", (now, by, username, now, keep)).rowcount


def delete_expired_tokens(conn: sqlite3.Connection, before: int) -> int:
    return conn.execute("DELETE FROM issued_tokens WHERE expires_at < ?", (before,)).rowcount


def insert_api_key(
    conn: sqlite3.Connection, *, key_id: str, name: str, role: str, secret_sha256: bytes, now: int, by: str
) -> None:
    conn.execute(
        "INSERT INTO api_keys (id, name, role, secret_sha256, created_at, created_by) VALUES (?, ?, ?, ?, ?, ?)",
        (key_id, name, role, secret_sha256, now, by),
    )


def all_api_keys(conn: sqlite3.Connection, include_revoked: bool = True) -> list[ApiKeyRow]:
    sql = f"SELECT {_KEY} FROM api_keys" + ("" if include_revoked else " WHERE revoked_at IS NULL")
    return [ApiKeyRow(*row) for row in conn.execute(sql + " ORDER BY created_at, id")]


def revoke_api_key(conn: sqlite3.Connection, key_id: str, now: int, by: str) -> bool:
    cursor = conn.execute(
        "UPDATE api_keys SET revoked_at = ?, revoked_by = ? WHERE id = ? AND revoked_at IS NULL", (now, by, key_id)
    )
    return cursor.rowcount == 1
