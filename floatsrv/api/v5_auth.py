"""/api/v5/auth: login with a JSON body, token refresh, who am I, change my password, and the admin's user
list and user creation, as LicenseSpring's Floating Server v2 offers them.

Same users, roles, throttling, temporary-password flow and revocation as `GET /auth` and `/v1`: logins go
through `api.meta.password_login`, password changes through `api.account.change_own_password`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from floatsrv.api.account import actor, change_own_password, me
from floatsrv.api.admin import user_view
from floatsrv.api.body import read_json_object
from floatsrv.api.meta import password_login
from floatsrv.api.v5_reply import signed_json
from floatsrv.api.v5_requests import Login, NewUser, PasswordChange
from floatsrv.api.validation import parse
from floatsrv.appkeys import DOMAIN, GUARD, LOGIN
from floatsrv.auth.tokens import TokenClaims
from floatsrv.domain import accounts
from floatsrv.domain import credentials as credentials_domain
from floatsrv.errors import Forbidden, InvalidRequest, MissingParameters
from floatsrv.models import Role
from floatsrv.times import iso


def _token_reply(token: str, claims: TokenClaims, now: datetime) -> dict[str, Any]:
    expires = datetime.fromtimestamp(claims.expires_at, UTC)
    return {
        "token": token,
        "expires_at": iso(expires),  # RFC 3339, UTC
        "expires_in": max(0, claims.expires_at - int(now.timestamp())),
        "username": claims.username,
        "role": claims.role.value,
    }


async def login(request: web.Request) -> web.Response:
    body = parse(Login, await read_json_object(request))
    token, claims, must_change = await password_login(request, body.username, body.password)
    reply = _token_reply(token, claims, request.app[DOMAIN].clock.now())
    if must_change:
        reply["password_change_required"] = True  # only auth/me and auth/change-password answer until then
    return signed_json(request, reply)


async def refresh(request: web.Request) -> web.Response:
    """A new token for the caller's login (the Python SDK asks every 600 s); the old one stays valid until it
    expires or is revoked, so requests already under way with it are not refused."""
    principal = me(request)
    if not principal.credential.startswith("token:"):
        raise Forbidden("only a logged-in user's token can be refreshed (API keys do not expire)")
    domain = request.app[DOMAIN]
    token, claims = request.app[GUARD].issuer.issue(principal.username, principal.role)
    await credentials_domain.record_login(domain.store, domain.clock, claims, request.remote, "token_refreshed")
    return signed_json(request, _token_reply(token, claims, domain.clock.now()))


async def whoami(request: web.Request) -> web.Response:
    principal = me(request)
    return signed_json(
        request,
        {
            "username": principal.username,
            "role": principal.role.value,
            "password_change_required": principal.must_change_password,
        },
    )


async def change_password(request: web.Request) -> web.Response:
    body = parse(PasswordChange, await read_json_object(request))
    principal = me(request)
    if body.username is not None and body.username != principal.username:
        raise Forbidden(
            "a user changes only their own password (an admin resets others': POST /v1/users/{name}/password)"
        )
    current = body.old_password or body.current_password or body.password
    if current is None:
        raise MissingParameters("old_password: the current password is required", param="old_password")
    token, revoked = await change_own_password(request, current, body.new_password)
    return signed_json(request, {"message": "password changed", "token": token, "tokens_revoked": revoked})


async def list_users(request: web.Request) -> web.Response:
    rows = await accounts.list_users(request.app[DOMAIN].store)
    return signed_json(request, [_user(user_view(row)) for row in rows])


def _user(view: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in view.items() if key != "object"}


async def add_user(request: web.Request) -> web.Response:
    body = parse(NewUser, await read_json_object(request))
    try:
        role = Role(body.role.lower())
    except ValueError:
        raise InvalidRequest("role: must be one of admin, user, viewer", param="role") from None
    domain = request.app[DOMAIN]
    temporary = await accounts.create_user(
        domain.store, domain.clock, actor(request), body.username, role, body.password, request.app[LOGIN].gate
    )
    rows = {row.username: row for row in await accounts.list_users(domain.store)}
    reply = _user(user_view(rows[body.username]))
    if temporary is not None:
        reply["temporary_password"] = temporary  # shown once
    return signed_json(request, reply)
