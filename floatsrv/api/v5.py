"""LicenseSpring Floating Server v2 endpoints (`/api/v5/...`, on with `api_v5.enabled`): parse, call the same
domain as /api/v4, shape the reply, sign it.

One license and seat space with /api/v4: a seat taken here counts there, and the reverse. Replies carry the
license object as a v2 client caches it (the v1 `license_json`, unwrapped), built by `api.v4_replies`.
Authentication endpoints are in `api.v5_auth`.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote

from aiohttp import web

from floatsrv.api import v4
from floatsrv.api import v4_replies as replies
from floatsrv.api.body import read_json_object
from floatsrv.api.v4 import client_info, consume_request, owner, principal_of, query_value
from floatsrv.api.v4_cache import V4_CACHE
from floatsrv.api.v5_reply import signed_json, signed_text
from floatsrv.api.v5_requests import (
    Borrow,
    Consumption,
    FeatureConsumption,
    FeatureRegister,
    FeatureRelease,
    Register,
    Unregister,
)
from floatsrv.api.validation import parse
from floatsrv.appkeys import DOMAIN, HEARTBEAT
from floatsrv.domain import consumption, queries, seats
from floatsrv.domain.queries import SeatView
from floatsrv.domain.seats import SeatRequest, Target
from floatsrv.errors import InvalidLicenseId, LicenseNotFound
from floatsrv.times import iso_us

_DIGITS = re.compile(r"[0-9]{1,15}\Z")  # ASCII digits only (str.isdigit() takes "²"); below 2**53


def license_id(request: web.Request) -> int:
    """The `{license_id}` of the path: digits only. An SDK that has no license id asks for `license/None`."""
    raw = request.match_info["license_id"]
    if not _DIGITS.match(raw) or int(raw) == 0:
        shown = raw[:40]
        raise InvalidLicenseId(f"license id {shown!r} in the path must be a positive integer", param="license_id")
    return int(raw)


def _target(request: web.Request) -> Target:
    return Target(None, license_id(request))


def _seat_request(request: web.Request, body: Register | FeatureRegister) -> SeatRequest:
    principal = principal_of(request)
    return SeatRequest(
        _target(request),
        body.username,
        principal.username if principal else None,
        client_info(body),
        owner(request),
        request.remote,
    )


async def ping(request: web.Request) -> web.Response:
    # Both detections: the Python SDK looks for "message": "pong", another SDK for "version": "v5".
    return signed_json(request, {"message": "pong", "version": "v5"})


async def register(request: web.Request) -> web.Response:
    body = parse(Register, await read_json_object(request))
    result = await seats.register(request.app[DOMAIN], _seat_request(request, body))
    request[HEARTBEAT] = not result.created
    return signed_json(request, replies.license_object(request.app[V4_CACHE], result.state, result.seat))


async def borrow(request: web.Request) -> web.Response:
    body = parse(Borrow, await read_json_object(request))
    result = await seats.register(
        request.app[DOMAIN], _seat_request(request, body), borrow=True, borrowed_until=body.borrowed_until
    )
    return signed_json(request, replies.license_object(request.app[V4_CACHE], result.state, result.seat))


async def unregister(request: web.Request) -> web.Response:
    body = parse(Unregister, await read_json_object(request))
    await seats.unregister(request.app[DOMAIN], _target(request), body.username, owner(request))
    return signed_text(request, "user_unregistered")


async def unregister_all(request: web.Request) -> web.Response:
    """Every seat of the license (admin only, as on LicenseSpring's v2 server)."""
    await seats.unregister_all(request.app[DOMAIN], None, license_id(request), owner=owner(request))
    return signed_text(request, "")


async def unregister_everything(request: web.Request) -> web.Response:
    """`GET /api/v5/unregister/all`: v1's unregister/all (optional `product`, `license_id` query), which the
    Python SDK calls under the v5 prefix."""
    await v4.unregister_all(request)
    return signed_text(request, "")


async def _consume(request: web.Request, body: Consumption | FeatureConsumption) -> web.Response:
    consume = consume_request(request, _target(request), body, body.username)
    result = await consumption.add_consumption(request.app[DOMAIN], consume)
    return signed_json(request, replies.consumption_response(request.app[V4_CACHE], result))


async def add_consumption(request: web.Request) -> web.Response:
    return await _consume(request, parse(Consumption, await read_json_object(request)))


async def add_feature_consumption(request: web.Request) -> web.Response:
    return await _consume(request, parse(FeatureConsumption, await read_json_object(request)))


async def feature_register(request: web.Request) -> web.Response:
    body = parse(FeatureRegister, await read_json_object(request))
    result = await seats.register_feature(
        request.app[DOMAIN],
        _seat_request(request, body),
        body.feature,
        borrow_until=body.borrow_until or body.borrowed_until,
    )
    request[HEARTBEAT] = not result.created
    return signed_json(request, replies.feature_register_response(request.app[V4_CACHE], result))


async def feature_release(request: web.Request) -> web.Response:
    body = parse(FeatureRelease, await read_json_object(request))
    await seats.release_feature(request.app[DOMAIN], _target(request), body.username, body.feature, owner(request))
    return signed_text(request, "feature_released")


async def feature_release_all(request: web.Request) -> web.Response:
    """Every feature seat of the license (the caller's own, unless an admin)."""
    await seats.unregister_all(request.app[DOMAIN], None, license_id(request), features_only=True, owner=owner(request))
    return signed_text(request, "")


def _product(request: web.Request) -> str | None:
    """`?product=demo`, or the bare `?demo` the Python SDK sends (`requests` given a string as params)."""
    product = query_value(request, "product")
    raw = request.query_string
    if product is None and raw and "=" not in raw and "&" not in raw:
        product = unquote(raw) or None
    return product


async def list_licenses(request: web.Request) -> web.Response:
    states = await queries.license_states(request.app[DOMAIN], _product(request))
    cache = request.app[V4_CACHE]
    return signed_json(request, [replies.license_object(cache, state) for state in states])


async def _state(request: web.Request) -> Any:
    wanted = license_id(request)
    states = await queries.license_states(request.app[DOMAIN], None, wanted)
    if not states:
        raise LicenseNotFound(f"no license {wanted} is served here", license_id=wanted)
    return states[0]


async def get_license(request: web.Request) -> web.Response:
    return signed_json(request, replies.license_object(request.app[V4_CACHE], await _state(request)))


def _holder(view: SeatView) -> dict[str, Any]:
    row = view.row
    borrowed = row.borrowed_until is not None and row.borrowed_until > row.heartbeat_at
    out: dict[str, Any] = {
        "username": row.user,
        "os_hostname": row.os_hostname,
        "ip_local": row.ip_local,
        "user_info": row.user_info,
        "principal": row.principal,
        "registered_at": iso_us(row.registered_at),
        "last_check": iso_us(row.heartbeat_at),
        "expires_at": iso_us(row.expires_at),
        "is_borrowed": borrowed,
        "borrowed_until": iso_us(row.borrowed_until) if borrowed else None,
    }
    if row.feature:
        out = {"feature": row.feature, **out}
    return out


async def _holders(request: web.Request, features: bool) -> web.Response:
    state = await _state(request)
    views = await queries.seat_views(
        request.app[DOMAIN], license_ids=[state.license.id], feature=None, user=None, state="held", limit=10_000
    )
    return signed_json(request, [_holder(view) for view in views if bool(view.row.feature) == features])


async def license_users(request: web.Request) -> web.Response:
    """Who holds the license's seats now."""
    return await _holders(request, features=False)


async def license_features(request: web.Request) -> web.Response:
    """Who holds the license's feature seats now."""
    return await _holders(request, features=True)
