"""Native read API under /v1: licenses with live usage, and seats with their history.

Envelope: `{"success": true, "data": ...}`; lists are `{"object": "list", "data": [...]}`. The objects are
`domain.views` (the admin commands' `--json` shows the same).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from aiohttp import web
from pydantic import Field

from floatsrv.api.middleware import json_response
from floatsrv.api.validation import StrictBody, Text100, Text256, WireInt, parse
from floatsrv.appkeys import DOMAIN
from floatsrv.domain import queries
from floatsrv.domain.views import license_view, seat_view
from floatsrv.errors import LicenseNotFound


def ok(data: Any) -> web.Response:
    return json_response({"success": True, "data": data})


class LicenseQuery(StrictBody):
    product: Text100 | None = None


class SeatQuery(StrictBody):
    license_id: Annotated[WireInt, Field(gt=0, lt=2**53)] | None = None
    product: Text100 | None = None
    feature: Text100 | None = None
    user: Text256 | None = None
    state: Literal["held", "ended", "all"] = "held"
    limit: Annotated[WireInt, Field(ge=1, le=1000)] = 100


async def list_licenses(request: web.Request) -> web.Response:
    query = parse(LicenseQuery, dict(request.query))
    states = await queries.license_states(request.app[DOMAIN], query.product)
    return ok({"object": "list", "data": [license_view(state) for state in states]})


async def get_license(request: web.Request) -> web.Response:
    domain = request.app[DOMAIN]
    try:
        license_id = int(request.match_info["license_id"])
    except ValueError:
        license_id = 0
    license = domain.catalog.get(license_id)
    if license is None:
        raise LicenseNotFound(f"no license {request.match_info['license_id']}")
    states = await queries.license_states(domain, license.product, license.id)
    return ok(license_view(states[0]))


async def list_seats(request: web.Request) -> web.Response:
    domain = request.app[DOMAIN]
    query = parse(SeatQuery, dict(request.query))
    license_ids = None
    if query.product is not None:
        license_ids = [lic.id for lic in domain.catalog.licenses(query.product)]
    if query.license_id is not None:
        license_ids = [query.license_id] if license_ids is None or query.license_id in license_ids else []
    views = await queries.seat_views(
        domain, license_ids=license_ids, feature=query.feature, user=query.user, state=query.state, limit=query.limit
    )
    return ok({"object": "list", "data": [seat_view(view) for view in views]})
