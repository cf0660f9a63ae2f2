"""User accounts: declared users synced from config/env, users made by admins, passwords.

Every change writes its audit row in the same transaction. Password hashing (scrypt, deliberately slow)
always happens before the write unit, on the login gate's executor in the server (`auth.hashing`) or a
worker thread in admin commands: the writer never waits on it. Any change of a user's password revokes
every token of that user (an own change hands the caller a fresh one).
A user created or reset by an admin gets a temporary password and must change it before anything else.
"""

from __future__ import annotations

import asyncio
import secrets
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from floatsrv.auth.hashing import GateBusy, HashGate
from floatsrv.auth.passwords import MIN_PASSWORD_LENGTH, hash_password, verify_password
from floatsrv.auth.tokens import TokenClaims
from floatsrv.clock import Clock
from floatsrv.db import accounts as db
from floatsrv.db import audit
from floatsrv.db.accounts import UserRow as UserRow  # re-exported for the API layer
from floatsrv.db.store import Store
from floatsrv.errors import (
    InvalidCurrentPassword,
    LoginBusy,
    ManagedByConfig,
    UserExists,
    UserNotFound,
    WeakPassword,
)
from floatsrv.models import Role
from floatsrv.times import to_us

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Actor:
    """Who asks for a change, as the audit log names them, and from where."""

    name: str
    peer: str | None = None

    def audit(
        self,
        conn: sqlite3.Connection,
        at: int,
        action: str,
        target: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        """Record an action this actor took, in the transaction that makes the change."""
        audit.record(conn, at=at, action=action, actor=self.name, target=target, peer=self.peer, detail=detail)


@dataclass(frozen=True, slots=True)
class DeclaredUser:
    """A user from the config file or the environment: plain password or scrypt hash."""

    username: str
    role: Role
    source: str  # "config" | "env"
    password: str | None = None
    password_hash: str | None = None


def check_password_strength(password: str, username: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise WeakPassword(f"passwords need at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > 256:
        raise WeakPassword("passwords may have at most 256 characters")
    if password.lower() == username.lower():
        raise WeakPassword("the password must differ from the username")


def _declared_hash(user: DeclaredUser, existing: UserRow | None) -> str:
    if user.password_hash is not None:
        return user.password_hash
    assert user.password is not None
    if existing is not None and verify_password(user.password, existing.password_hash):
        return existing.password_hash  # unchanged: keep the stored hash (no churn, no token revocation)
    return hash_password(user.password)


async def sync_declared_users(store: Store, clock: Clock, declared: list[DeclaredUser]) -> list[str]:
    """Make config/env users in the database match `declared`; returns the usernames removed."""
    existing = {row.username: row for row in await store.read(db.all_users)}
    hashes = await asyncio.to_thread(
        lambda: {u.username: _declared_hash(u, existing.get(u.username)) for u in declared}
    )

    def unit(conn: sqlite3.Connection) -> list[str]:
        now = to_us(clock.now())
        wanted = {user.username for user in declared}
        for user in declared:
            row = db.get_user(conn, user.username)
            if row is None:
                db.insert_user(
                    conn,
                    username=user.username,
                    role=user.role.value,
                    password_hash=hashes[user.username],
                    source=user.source,
                    must_change_password=False,
                    now=now,
                )
                audit.record(
                    conn,
                    at=now,
                    action="user_created",
                    actor="system",
                    target=user.username,
                    detail={"role": user.role.value, "source": user.source},
                )
            elif (row.role, row.password_hash, row.source, row.must_change_password, row.disabled) != (
                user.role.value,
                hashes[user.username],
                user.source,
                False,
                False,
            ):
                db.update_user(
                    conn,
                    user.username,
                    now,
                    role=user.role.value,
                    password_hash=hashes[user.username],
                    source=user.source,
                    must_change_password=False,
                    disabled=False,
                )
                if row.password_hash != hashes[user.username]:
                    db.revoke_user_tokens(conn, user.username, now, "system")
                audit.record(
                    conn,
                    at=now,
                    action="user_updated",
                    actor="system",
                    target=user.username,
                    detail={"role": user.role.value, "source": user.source},
                )
        removed = []
        for row in db.all_users(conn):
            if row.source in ("config", "env") and row.username not in wanted:
                db.delete_user(conn, row.username)
                db.revoke_user_tokens(conn, row.username, now, "system")
                audit.record(
                    conn,
                    at=now,
                    action="user_deleted",
                    actor="system",
                    target=row.username,
                    detail={"source": row.source},
                )
                removed.append(row.username)
        return removed

    return await store.write(unit)


def _local_user(conn: sqlite3.Connection, username: str) -> UserRow:
    row = db.get_user(conn, username)
    if row is None:
        raise UserNotFound(f"no user {username!r}", param="username")
    if row.source != "local":
        raise ManagedByConfig(f"user {username!r} is declared in the {row.source}; change it there")
    return row


async def _new_password(username: str, password: str | None, gate: HashGate | None = None) -> tuple[str | None, str]:
    """A password an admin sets for a user: theirs (strength-checked) or a generated temporary one.
    Returns (the temporary password to show once, or None; the hash to store)."""
    temporary = None
    if password is None:
        temporary = password = secrets.token_urlsafe(12)
    else:
        check_password_strength(password, username)
    chosen = password
    return temporary, await _hashing(gate, lambda: hash_password(chosen))


async def create_user(
    store: Store,
    clock: Clock,
    actor: Actor,
    username: str,
    role: Role,
    password: str | None = None,
    gate: HashGate | None = None,
) -> str | None:
    """Create a local user who must change the password at first login. Returns the temporary password
    when none was given (it is shown once and never stored in clear)."""
    temporary, encoded = await _new_password(username, password, gate)

    def unit(conn: sqlite3.Connection) -> None:
        now = to_us(clock.now())
        if db.get_user(conn, username) is not None:
            raise UserExists(f"user {username!r} exists", param="username")
        db.insert_user(
            conn,
            username=username,
            role=role.value,
            password_hash=encoded,
            source="local",
            must_change_password=True,
            now=now,
        )
        actor.audit(conn, now, "user_created", target=username, detail={"role": role.value, "source": "local"})

    await store.write(unit)
    return temporary


async def reset_password(
    store: Store,
    clock: Clock,
    actor: Actor,
    username: str,
    password: str | None = None,
    gate: HashGate | None = None,
) -> str | None:
    """Give a local user a new temporary password (they must change it) and revoke their tokens."""
    temporary, encoded = await _new_password(username, password, gate)

    def unit(conn: sqlite3.Connection) -> None:
        now = to_us(clock.now())
        _local_user(conn, username)
        db.update_user(conn, username, now, password_hash=encoded, must_change_password=True)
        revoked = db.revoke_user_tokens(conn, username, now, actor.name)
        actor.audit(conn, now, "password_reset", target=username, detail={"tokens_revoked": revoked})

    await store.write(unit)
    return temporary


async def _hashing(gate: HashGate | None, work: Callable[[], T]) -> T:
    """Run password hashing on the login gate's executor (bounded, never the database's) when there is one
    (the server); admin commands, which have none, use a worker thread."""
    if gate is None:
        return await asyncio.to_thread(work)
    try:
        return await gate.run(work, priority=True)
    except GateBusy as exc:
        raise LoginBusy(
            f"password checks are saturated; try again in {exc.retry_after} s", retry_after=exc.retry_after
        ) from None


async def change_own_password(
    store: Store,
    clock: Clock,
    actor: Actor,
    username: str,
    current: str,
    new: str,
    *,
    fresh: TokenClaims | None = None,
    keep: str | None = None,
    gate: HashGate | None = None,
) -> int:
    """A user changes their own password (this clears a forced change). Every other token of the user is
    revoked (other sessions must log in again; `keep` is the caller's), and `fresh`, a new token the caller
    gets back, is recorded in the same transaction. Returns how many tokens were revoked."""
    row = await store.read(lambda conn: db.get_user(conn, username))
    if row is None:
        raise UserNotFound(f"no user {username!r}")
    if row.source != "local":
        raise ManagedByConfig(f"user {username!r} is declared in the {row.source}; change it there")
    if not await _hashing(gate, lambda: verify_password(current, row.password_hash)):
        raise InvalidCurrentPassword(param="current_password")
    check_password_strength(new, username)
    if new == current:
        raise WeakPassword("the new password must differ from the current one", param="new_password")
    encoded = await _hashing(gate, lambda: hash_password(new))

    def unit(conn: sqlite3.Connection) -> int:
        now = to_us(clock.now())
        fresh_row = db.get_user(conn, username)
        if fresh_row is None or fresh_row.password_hash != row.password_hash:  # changed meanwhile: verify again
            raise InvalidCurrentPassword("the password was changed meanwhile; try again", param="current_password")
        db.update_user(conn, username, now, password_hash=encoded, must_change_password=False)
        revoked = db.revoke_user_tokens(conn, username, now, actor.name, keep=keep)
        if fresh is not None:
            db.insert_token(
                conn,
                jti=fresh.token_id,
                username=username,
                issued_at=fresh.issued_at * 1_000_000,
                expires_at=fresh.expires_at * 1_000_000,
                peer=actor.peer,
            )
        actor.audit(conn, now, "password_changed", target=username, detail={"tokens_revoked": revoked})
        return revoked

    return await store.write(unit)


async def update_user(
    store: Store, clock: Clock, actor: Actor, username: str, *, role: Role | None = None, disabled: bool | None = None
) -> UserRow:
    def unit(conn: sqlite3.Connection) -> UserRow:
        now = to_us(clock.now())
        _local_user(conn, username)
        changes: dict[str, object] = {}
        if role is not None:
            changes["role"] = role.value
        if disabled is not None:
            changes["disabled"] = disabled
        if changes:
            db.update_user(conn, username, now, **changes)
            if disabled:
                db.revoke_user_tokens(conn, username, now, actor.name)
            actor.audit(conn, now, "user_updated", target=username, detail={k: v for k, v in changes.items()})
        row = db.get_user(conn, username)
        assert row is not None
        return row

    return await store.write(unit)


async def delete_user(store: Store, clock: Clock, actor: Actor, username: str) -> None:
    def unit(conn: sqlite3.Connection) -> None:
        now = to_us(clock.now())
        _local_user(conn, username)
        db.delete_user(conn, username)
        revoked = db.revoke_user_tokens(conn, username, now, actor.name)
        actor.audit(conn, now, "user_deleted", target=username, detail={"tokens_revoked": revoked})

    await store.write(unit)


async def list_users(store: Store) -> list[UserRow]:
    return await store.read(db.all_users)
