"""Probes for service managers and orchestrators: `/healthz` (the process answers) and `/readyz` (it can
do its job: the database takes writes, its schema is current, the config is loaded; clock trouble is
reported without failing readiness). Both are public and reveal nothing about licenses or users."""

from __future__ import annotations

from aiohttp import web

from floatsrv import __version__
from floatsrv.api.middleware import json_response
from floatsrv.appkeys import DOMAIN
from floatsrv.domain import health


async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok", "version": __version__})


async def readyz(request: web.Request) -> web.Response:
    ready, checks = await health.readiness(request.app[DOMAIN])
    body = {"status": "ready" if ready else "not_ready", "checks": checks}
    if not ready:
        body["code"] = "not_ready"
    return json_response(body, status=200 if ready else 503, headers=None if ready else {"Retry-After": "5"})
