"""Admin endpoints under /v1: users, tokens, API keys, the signing key, the audit log, seat revocation.

Secrets created here (temporary passwords, API keys) are returned once in the response and never again.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from aiohttp import web
from pydantic import Field, StrictBool

from floatsrv.api.account import actor
from floatsrv.api.body import read_json_object
from floatsrv.api.native import ok
from floatsrv.api.validation import StrictBody, Text100, WireInstant, WireInt, parse
from floatsrv.appkeys import CONFIG, DOMAIN, LOGIN
from floatsrv.domain import accounts, credentials, queries, seats
from floatsrv.domain.accounts import UserRow
from floatsrv.domain.credentials import ApiKeyRow, AuditQuery, AuditRow, TokenRow
from floatsrv.domain.views import seat_view
from floatsrv.errors import UserNotFound
from floatsrv.models import Role
from floatsrv.times import iso_us

# No colon (HTTP Basic splits on it), no white space, no control characters (NUL included).
Username = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[^:\s\x00-\x1f\x7f]+$")]


class NewUser(StrictBody):
    username: Username
    role: Role = Role.USER
    password: str | None = Field(default=None, min_length=1, max_length=256)


class UserChange(StrictBody):
    role: Role | None = None
    disabled: StrictBool | None = None  # strict: 0, 1, "yes" or "off" are not booleans


class PasswordReset(StrictBody):
    password: str | None = Field(default=None, min_length=1, max_length=256)


class NewApiKey(StrictBody):
    name: Text100
    role: Role = Role.USER


class TokenQuery(StrictBody):
    username: Text100 | None = None
    state: Literal["live", "all"] = "live"
    limit: Annotated[WireInt, Field(ge=1, le=1000)] = 100


class AuditFilter(StrictBody):
    action: Text100 | None = None
    actor: Text100 | None = None
    target: Text100 | None = None
    since: WireInstant = None
    until: WireInstant = None
    before: Annotated[WireInt, Field(gt=0)] | None = None
    limit: Annotated[WireInt, Field(ge=1, le=1000)] = 100


def user_view(row: UserRow) -> dict[str, Any]:
    return {
        "object": "user",
        "username": row.username,
        "role": row.role,
        "source": row.source,
        "password_change_required": row.must_change_password,
        "disabled": row.disabled,
        "created_at": iso_us(row.created_at),
        "updated_at": iso_us(row.updated_at),
    }


def token_view(row: TokenRow) -> dict[str, Any]:
    return {
        "object": "token",
        "id": row.jti,
        "username": row.username,
        "issued_at": iso_us(row.issued_at),
        "expires_at": iso_us(row.expires_at),
        "peer": row.peer,
        "revoked_at": iso_us(row.revoked_at),
        "revoked_by": row.revoked_by,
    }


def api_key_view(row: ApiKeyRow) -> dict[str, Any]:
    return {
        "object": "api_key",
        "id": row.id,
        "name": row.name,
        "role": row.role,
        "created_at": iso_us(row.created_at),
        "created_by": row.created_by,
        "revoked_at": iso_us(row.revoked_at),
        "revoked_by": row.revoked_by,
    }


def audit_view(row: AuditRow) -> dict[str, Any]:
    return {
        "object": "audit_event",
        "id": row.id,
        "at": iso_us(row.at),
        "action": row.action,
        "actor": row.actor,
        "target": row.target,
        "peer": row.peer,
        "detail": row.detail,
    }


def listing(items: list[dict[str, Any]]) -> web.Response:
    return ok({"object": "list", "data": items})


async def list_users(request: web.Request) -> web.Response:
    return listing([user_view(row) for row in await accounts.list_users(request.app[DOMAIN].store)])


async def _user(request: web.Request, username: str) -> dict[str, Any]:
    rows = {row.username: row for row in await accounts.list_users(request.app[DOMAIN].store)}
    if username not in rows:
        raise UserNotFound(f"no user {username!r}", param="username")
    return user_view(rows[username])


async def get_user(request: web.Request) -> web.Response:
    return ok(await _user(request, request.match_info["username"]))


async def create_user(request: web.Request) -> web.Response:
    body = parse(NewUser, await read_json_object(request))
    domain = request.app[DOMAIN]
    temporary = await accounts.create_user(
        domain.store, domain.clock, actor(request), body.username, body.role, body.password, request.app[LOGIN].gate
    )
    view = await _user(request, body.username)
    if temporary is not None:
        view["temporary_password"] = temporary  # shown once
    return ok(view)


async def update_user(request: web.Request) -> web.Response:
    body = parse(UserChange, await read_json_object(request))
    domain = request.app[DOMAIN]
    row = await accounts.update_user(
        domain.store,
        domain.clock,
        actor(request),
        request.match_info["username"],
        role=body.role,
        disabled=body.disabled,
    )
    return ok(user_view(row))


async def reset_password(request: web.Request) -> web.Response:
    body = parse(PasswordReset, await read_json_object(request))
    domain = request.app[DOMAIN]
    username = request.match_info["username"]
    gate = request.app[LOGIN].gate
    temporary = await accounts.reset_password(domain.store, domain.clock, actor(request), username, body.password, gate)
    view = await _user(request, username)
    if temporary is not None:
        view["temporary_password"] = temporary
    return ok(view)


async def delete_user(request: web.Request) -> web.Response:
    domain = request.app[DOMAIN]
    username = request.match_info["username"]
    await accounts.delete_user(domain.store, domain.clock, actor(request), username)
    return ok({"object": "user", "username": username, "deleted": True})


async def revoke_user_tokens(request: web.Request) -> web.Response:
    domain = request.app[DOMAIN]
    username = request.match_info["username"]
    count = await credentials.revoke_user_tokens(domain.store, domain.clock, actor(request), username)
    return ok({"object": "token_revocation", "username": username, "revoked": count})


async def list_tokens(request: web.Request) -> web.Response:
    query = parse(TokenQuery, dict(request.query))
    domain = request.app[DOMAIN]
    rows = await credentials.list_tokens(domain.store, domain.clock, query.username, query.state == "live", query.limit)
    return listing([token_view(row) for row in rows])


async def revoke_token(request: web.Request) -> web.Response:
    domain = request.app[DOMAIN]
    jti = request.match_info["token_id"]
    await credentials.revoke_token(domain.store, domain.clock, actor(request), jti)
    return ok({"object": "token", "id": jti, "revoked": True})


async def rotate_signing_key(request: web.Request) -> web.Response:
    domain = request.app[DOMAIN]
    path = request.app[CONFIG].token_key_path
    generation = await credentials.rotate_signing_key(domain.store, domain.clock, actor(request), path)
    return ok({"object": "signing_key", "generation": generation})


async def list_api_keys(request: web.Request) -> web.Response:
    return listing([api_key_view(row) for row in await credentials.list_api_keys(request.app[DOMAIN].store)])


async def create_api_key(request: web.Request) -> web.Response:
    body = parse(NewApiKey, await read_json_object(request))
    domain = request.app[DOMAIN]
    created = await credentials.create_api_key(domain.store, domain.clock, actor(request), body.name, body.role)
    return ok({**api_key_view(created.row), "key": created.plaintext})  # shown once


async def revoke_api_key(request: web.Request) -> web.Response:
    domain = request.app[DOMAIN]
    key_id = request.match_info["key_id"]
    await credentials.revoke_api_key(domain.store, domain.clock, actor(request), key_id)
    return ok({"object": "api_key", "id": key_id, "revoked": True})


async def audit_log(request: web.Request) -> web.Response:
    query = parse(AuditFilter, dict(request.query))
    rows = await credentials.audit_entries(
        request.app[DOMAIN].store,
        AuditQuery(
            action=query.action,
            actor=query.actor,
            target=query.target,
            since=query.since,
            until=query.until,
            before_id=query.before,
            limit=query.limit,
        ),
    )
    return listing([audit_view(row) for row in rows])


def seat_id(request: web.Request) -> int:
    """The `{seat_id}` of the path. Seat ids are positive SQLite integers: anything else (a sign, "1_0", other
    scripts' digits, 2**64) is a seat that does not exist (0), not an int() for SQLite to overflow on."""
    raw = request.match_info["seat_id"]
    return int(raw) if raw.isascii() and raw.isdigit() and len(raw) <= 18 else 0


async def revoke_seat(request: web.Request) -> web.Response:
    domain = request.app[DOMAIN]
    who = actor(request)
    seat = await seats.revoke_seat(domain, seat_id(request), who.name, who.peer)
    return ok(seat_view(await queries.seat_view(domain, seat.id)))
