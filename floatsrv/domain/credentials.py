"""Credentials: logins and the tokens they issue, API keys, signing-key rotation, the audit trail.

Issuing a token records it (and the login) in one transaction before the token is returned, so every
token in circulation can be listed and revoked. Revocations bump the auth version (a schema trigger),
which every server process checks on each request: a revoked credential fails on the very next request.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from floatsrv.auth import apikeys
from floatsrv.auth.tokens import TokenClaims, load_or_create_key, write_new_key
from floatsrv.clock import Clock
from floatsrv.db import accounts as db
from floatsrv.db import audit, shared_keys

# Row types re-exported for the API layer.
from floatsrv.db.accounts import ApiKeyRow as ApiKeyRow
from floatsrv.db.accounts import TokenRow as TokenRow
from floatsrv.db.audit import AuditRow as AuditRow
from floatsrv.db.store import Store
from floatsrv.domain.accounts import Actor
from floatsrv.errors import ApiKeyExists, ApiKeyNotFound, TokenNotFound, UserNotFound
from floatsrv.models import Role
from floatsrv.signing import load_or_create_private_key
from floatsrv.times import to_us

SECOND_US = 1_000_000


async def record_login(
    store: Store, clock: Clock, claims: TokenClaims, peer: str | None, action: str = "login_succeeded"
) -> None:
    """Store the issued token and audit the login (or the token refresh), together."""

    def unit(conn: sqlite3.Connection) -> None:
        now = to_us(clock.now())
        db.insert_token(
            conn,
            jti=claims.token_id,
            username=claims.username,
            issued_at=claims.issued_at * SECOND_US,
            expires_at=claims.expires_at * SECOND_US,
            peer=peer,
        )
        audit.record(
            conn,
            at=now,
            action=action,
            actor=claims.username,
            target=claims.token_id,
            peer=peer,
            detail={"role": claims.role.value},
        )

    await store.write(unit)


async def record_login_failure(store: Store, clock: Clock, username: str, peer: str | None, reason: str) -> None:
    def unit(conn: sqlite3.Connection) -> None:
        audit.record(
            conn,
            at=to_us(clock.now()),
            action="login_failed",
            actor=username[:100],
            peer=peer,
            detail={"reason": reason},
        )

    await store.write(unit)


async def list_tokens(store: Store, clock: Clock, username: str | None, live_only: bool, limit: int) -> list[TokenRow]:
    now = to_us(clock.now())
    return await store.read(
        lambda conn: db.list_tokens(conn, username=username, live_only=live_only, now=now, limit=limit)
    )


async def revoke_token(store: Store, clock: Clock, actor: Actor, jti: str) -> None:
    def unit(conn: sqlite3.Connection) -> None:
        now = to_us(clock.now())
        token = db.get_token(conn, jti)
        if token is None or token.expires_at <= now or not db.revoke_token(conn, jti, now, actor.name):
            raise TokenNotFound(f"no live token {jti!r}", param="jti")
        actor.audit(conn, now, "token_revoked", target=jti, detail={"username": token.username})

    await store.write(unit)


async def revoke_user_tokens(store: Store, clock: Clock, actor: Actor, username: str) -> int:
    def unit(conn: sqlite3.Connection) -> int:
        now = to_us(clock.now())
        if db.get_user(conn, username) is None:
            raise UserNotFound(f"no user {username!r}", param="username")
        count = db.revoke_user_tokens(conn, username, now, actor.name)
        actor.audit(conn, now, "user_tokens_revoked", target=username, detail={"tokens_revoked": count})
        return count

    return await store.write(unit)


async def rotate_signing_key(store: Store, clock: Clock, actor: Actor, key_path: Path) -> int:
    """New signing key: every token issued so far stops working. Returns the new key generation."""
    write_new_key(key_path)  # first the file, atomically; the version bump below makes servers reload it

    def unit(conn: sqlite3.Connection) -> int:
        if store.shared:  # every node signs with the new key (db.shared_keys)
            shared_keys.publish(conn, shared_keys.TOKEN, key_path, to_us(clock.now()))
        generation = db.bump_key_generation(conn)
        actor.audit(conn, to_us(clock.now()), "signing_key_rotated", detail={"key_generation": generation})
        return generation

    return await store.write(unit)


async def share_keys(store: Store, clock: Clock, token_key: Path, identity_key: Path) -> None:
    """On PostgreSQL, before the keys are read: this node's key files become the site's shared ones (the
    database's win; the first node's become them). See db.shared_keys."""

    def unit(conn: sqlite3.Connection) -> None:
        now = to_us(clock.now())
        shared_keys.adopt(conn, shared_keys.TOKEN, token_key, load_or_create_key, now)
        shared_keys.adopt(conn, shared_keys.IDENTITY, identity_key, load_or_create_private_key, now)

    await store.write(unit)


@dataclass(frozen=True, slots=True)
class CreatedKey:
    row: ApiKeyRow
    plaintext: str  # shown once


async def create_api_key(store: Store, clock: Clock, actor: Actor, name: str, role: Role) -> CreatedKey:
    new = apikeys.generate()

    def unit(conn: sqlite3.Connection) -> CreatedKey:
        now = to_us(clock.now())
        if any(key.name == name for key in db.all_api_keys(conn, include_revoked=False)):
            raise ApiKeyExists(f"a live API key named {name!r} exists", param="name")
        db.insert_api_key(
            conn, key_id=new.key_id, name=name, role=role.value, secret_sha256=new.secret_sha256, now=now, by=actor.name
        )
        actor.audit(conn, now, "api_key_created", target=new.key_id, detail={"name": name, "role": role.value})
        row = next(key for key in db.all_api_keys(conn) if key.id == new.key_id)
        return CreatedKey(row, new.plaintext)

    return await store.write(unit)


async def list_api_keys(store: Store) -> list[ApiKeyRow]:
    return await store.read(db.all_api_keys)


async def revoke_api_key(store: Store, clock: Clock, actor: Actor, key_id: str) -> None:
    def unit(conn: sqlite3.Connection) -> None:
        now = to_us(clock.now())
        if not db.revoke_api_key(conn, key_id, now, actor.name):
            raise ApiKeyNotFound(f"no live API key {key_id!r}", param="id")
        actor.audit(conn, now, "api_key_revoked", target=key_id)

    await store.write(unit)


async def prune_expired_tokens(store: Store, clock: Clock, keep_for_days: int = 30) -> int:
    """Forget tokens that expired over `keep_for_days` ago (they can no longer be used anyway)."""
    before = to_us(clock.now()) - keep_for_days * 86_400 * SECOND_US
    return await store.write(lambda conn: db.delete_expired_tokens(conn, before))


@dataclass(frozen=True, slots=True)
class AuditQuery:
    action: str | None = None
    actor: str | None = None
    target: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    before_id: int | None = None
    limit: int = 100


async def audit_entries(store: Store, query: AuditQuery) -> list[AuditRow]:
    return await store.read(
        lambda conn: audit.query(
            conn,
            action=query.action,
            actor=query.actor,
            target=query.target,
            since=to_us(query.since) if query.since else None,
            until=to_us(query.until) if query.until else None,
            before_id=query.before_id,
            limit=query.limit,
        )
    )
