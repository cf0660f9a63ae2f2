"""Service endpoints: the home page, login (`GET /auth`) and health."""

from __future__ import annotations

import asyncio
import base64
import html

from aiohttp import web

from floatsrv import __version__
from floatsrv.api.middleware import json_response
from floatsrv.appkeys import DOMAIN, TOKENS, USERS
from floatsrv.errors import Unauthenticated
from floatsrv.log import get_logger
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


async def login(request: web.Request) -> web.Response:
    """HTTP Basic in, bearer token out: `{"message": "Login successful", "token": "<JWT>"}`."""
    credentials = basic_credentials(request.headers.get("Authorization", ""))
    if credentials is None:
        raise Unauthenticated("log in with HTTP Basic credentials (Authorization: Basic ...)")
    username, password = credentials
    # scrypt is slow on purpose; keep it off the event loop.
    principal = await asyncio.to_thread(request.app[USERS].authenticate, username, password)
    if principal is None:
        log.warning("login_failed", username=username[:100], peer=request.remote)
        raise Unauthenticated("invalid username or password")
    token = request.app[TOKENS].issue(principal.username, principal.role)
    log.info("login_succeeded", username=principal.username, role=principal.role.value, peer=request.remote)
    return json_response({"message": "Login successful", "token": token})


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
