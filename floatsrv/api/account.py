"""The caller's own account: who am I, and change my password (the only thing a user with a temporary
password may do besides this)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from aiohttp import web
from pydantic import Field

from floatsrv.api.body import read_json_object
from floatsrv.api.native import ok
from floatsrv.api.validation import StrictBody, parse
from floatsrv.appkeys import DOMAIN, GUARD, LOGIN, PRINCIPAL
from floatsrv.domain import accounts
from floatsrv.domain.accounts import Actor
from floatsrv.errors import Forbidden
from floatsrv.models import Principal


def actor(request: web.Request) -> Actor:
    principal = request.get(PRINCIPAL)
    return Actor(principal.actor if principal else "anonymous", request.remote)


def me(request: web.Request) -> Principal:
    # Every /v1 route needs a role, so the middleware has set the principal.
    return request[PRINCIPAL]


async def whoami(request: web.Request) -> web.Response:
    principal = me(request)
    body: dict[str, Any] = {
        "object": "principal",
        "username": principal.username,
        "role": principal.role.value,
        "password_change_required": principal.must_change_password,
        "credential": principal.credential.split(":", 1)[0],
    }
    return ok(body)


class PasswordChange(StrictBody):
    current_password: str = Field(min_length=1, max_length=256)
    new_password: str = Field(min_length=1, max_length=256)


async def change_password(request: web.Request) -> web.Response:
    body = parse(PasswordChange, await read_json_object(request))
    token, revoked = await change_own_password(request, body.current_password, body.new_password)
    return ok({"object": "password_change", "changed": True, "token": token, "tokens_revoked": revoked})


async def change_own_password(
    request: web.Request, current: str, new: str, lifetime: timedelta | None = None
) -> tuple[str, int]:
    """The caller changes their own password: (a fresh token, how many other tokens were revoked). Every
    surface that lets users change their password (`/v1/me/password`, `/api/v5/auth/change-password`)."""
    principal = me(request)
    if not principal.credential.startswith("token:"):
        raise Forbidden("only a logged-in user can change a password (API keys have none)")
    domain = request.app[DOMAIN]
    # Every other token of the user is revoked; the caller keeps this one and gets a fresh one too.
    token, claims = request.app[GUARD].issuer.issue(principal.username, principal.role, lifetime)
    revoked = await accounts.change_own_password(
        domain.store,
        domain.clock,
        actor(request),
        principal.username,
        current,
        new,
        fresh=claims,
        keep=principal.credential.removeprefix("token:"),
        gate=request.app[LOGIN].gate,
    )
    return token, revoked
