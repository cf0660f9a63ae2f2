"""Service endpoints: the home page, login (`GET /auth`), the OpenAPI documents and health."""

from __future__ import annotations

import base64
import functools
import html
from datetime import timedelta
from importlib import resources
from typing import Any

import orjson
import yaml
from aiohttp import web

from floatsrv import __version__
from floatsrv.api.middleware import json_response
from floatsrv.appkeys import DOMAIN, GUARD, LOGIN
from floatsrv.auth.hashing import GateBusy
from floatsrv.auth.passwords import dummy_hash, verify_password
from floatsrv.auth.tokens import TokenClaims
from floatsrv.domain import credentials as credentials_domain
from floatsrv.errors import LoginBusy, TooManyRequests, Unauthenticated
from floatsrv.log import get_logger
from floatsrv.models import Role
from floatsrv.times import iso

log = get_logger("floatsrv.auth")

_HOME = """<!doctype html>
<html><head><meta charset="utf-8"><title>floatsrv</title></head>
<body><h1>floatsrv {version}</h1><p>The floating license server is running.</p>
<p>API: <code>/api/v4</code> (LicenseSpring Floating Server v1 compatible), <code>/v1</code> (native).</p>
</body></html>
"""


async def home(request: web.Request) -> web.Response:
    # The LicenseSpring SDK's is_online() only needs a 200 here.
    return web.Response(text=_HOME.format(version=html.escape(__version__)), content_type="text/html")


def basic_credentials(header: str) -> tuple[str, str] | None:
    """(username, password) from an `Authorization: Basic ...` header, or None when it is not one."""
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic" or not encoded.strip():
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return None
    username, sep, password = decoded.partition(":")
    return (username, password) if sep and username else None


def _check(password: str, encoded: str | None) -> bool:
    """On the hashing gate's thread. Unknown users cost the same as known ones (`dummy_hash`)."""
    return verify_password(password, encoded if encoded is not None else dummy_hash())


async def login(request: web.Request) -> web.Response:
    """HTTP Basic in, bearer token out: `{"message": "Login successful", "token": "<JWT>"}`."""
    credentials = basic_credentials(request.headers.get("Authorization", ""))
    if credentials is None:
        raise Unauthenticated("log in with HTTP Basic credentials (Authorization: Basic ...)")
    token, _, must_change = await password_login(request, *credentials)
    body: dict[str, object] = {"message": "Login successful", "token": token}
    if must_change:
        body["message"] = "Login successful; change your temporary password first (POST /v1/me/password)"
        body["password_change_required"] = True
    return json_response(body)


async def password_login(
    request: web.Request, username: str, password: str, lifetime: timedelta | None = None
) -> tuple[str, TokenClaims, bool]:
    """Check a password and issue a token: (token, its claims, must the password be changed first). Every
    login surface (`GET /auth`, `/api/v5/auth/login`, the console's form) comes through here, so they share
    one throttle. `lifetime` shortens the token's (a console session's)."""
    peer = request.remote or "-"
    domain, guard, defense = request.app[DOMAIN], request.app[GUARD], request.app[LOGIN]
    user = guard.user(username)
    # Unknown usernames are never kept as typed (it may be a password in the wrong field): a keyed label.
    shown = user.username if user is not None else defense.unknown_label(username)
    attempt = await defense.admit(peer, username)  # counted before the check, so bursts cannot outrun it
    if isinstance(attempt, int):
        log.warning("login_throttled", username=shown, peer=peer, retry_after=attempt)
        raise TooManyRequests(f"too many failed logins; try again in {attempt} seconds", retry_after=attempt)
    encoded = user.password_hash if user else None
    try:
        ok = await defense.gate.run(functools.partial(_check, password, encoded), priority=attempt.clean)
    except GateBusy as exc:
        await defense.not_checked(attempt)
        log.warning("login_busy", username=shown, peer=peer, retry_after=exc.retry_after)
        wait = exc.retry_after
        raise LoginBusy(f"password checks are saturated; try again in {wait} s", retry_after=wait) from None
    if not ok or user is None:
        await credentials_domain.record_login_failure(
            domain.store, domain.clock, shown, peer, "wrong_password" if user else "unknown_user"
        )
        log.warning("login_failed", username=shown, peer=peer)
        raise Unauthenticated("invalid username or password")
    await defense.succeeded(attempt)
    token, claims = guard.issuer.issue(user.username, Role(user.role), lifetime)
    await credentials_domain.record_login(domain.store, domain.clock, claims, peer)
    log.info("login_succeeded", username=user.username, role=user.role, peer=peer)
    return token, claims, user.must_change_password


def openapi_document(name: str) -> dict[str, Any]:
    """An OpenAPI document kept in the repo (floatsrv/api/openapi/<name>.yaml), read now (the application
    serves it from its `OpenApiDocuments`)."""
    text = resources.files("floatsrv.api").joinpath("openapi", f"{name}.yaml").read_text(encoding="utf-8")
    document: dict[str, Any] = yaml.safe_load(text)
    document["info"]["x-floatsrv-version"] = __version__
    return document


class OpenApiDocuments:
    """The OpenAPI documents served, each read and rendered to JSON once, at its first request. Owner: the
    application (`OPENAPI`); lifetime: the application's (the documents are package data)."""

    def __init__(self) -> None:
        self._bodies: dict[str, bytes] = {}

    def body(self, name: str) -> bytes:
        found = self._bodies.get(name)
        if found is None:
            found = self._bodies[name] = orjson.dumps(openapi_document(name))
        return found


OPENAPI = web.AppKey("openapi", OpenApiDocuments)


async def openapi_v1(request: web.Request) -> web.Response:
    return json_response(request.app[OPENAPI].body("v1"))


async def openapi_v4(request: web.Request) -> web.Response:
    return json_response(request.app[OPENAPI].body("v4"))


async def health(request: web.Request) -> web.Response:
    domain = request.app[DOMAIN]
    return json_response(
        {
            "status": "ok",
            "version": __version__,
            "time": iso(domain.clock.now()),
            "licenses": len(domain.catalog.licenses()),
        }
    )
