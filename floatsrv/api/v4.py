"""LicenseSpring Floating Server v1 endpoints (`/api/v4/...`): parse, call the domain, shape the reply.

Bodies that the SDK returns as text (`unregister`, `featureRelease`, the `/all` variants) are plain text,
as its docstrings expect: `user_unregistered`, `feature_released`, and an empty body.
"""

from __future__ import annotations

from aiohttp import web

from floatsrv.api import v4_replies as replies
from floatsrv.api import v5_requests
from floatsrv.api.body import read_json_object
from floatsrv.api.middleware import json_response
from floatsrv.api.v4_cache import V4_CACHE
from floatsrv.api.v4_requests import (
    BorrowBody,
    ClientFields,
    ConsumptionBody,
    FeatureConsumptionBody,
    FeatureRegisterBody,
    FeatureReleaseBody,
    RegisterBody,
    UnregisterBody,
)
from floatsrv.api.validation import field_name, parse, wire_int
from floatsrv.appkeys import DOMAIN, GUARD, HEARTBEAT, PRINCIPAL
from floatsrv.domain import consumption, queries, seats
from floatsrv.domain.consumption import ConsumeRequest
from floatsrv.domain.seats import SeatRequest, Target
from floatsrv.errors import InvalidRequest
from floatsrv.models import ClientInfo, Principal, Role


def principal_of(request: web.Request) -> Principal | None:
    return request.get(PRINCIPAL)


def owner(request: web.Request) -> str | None:
    """The login whose seats this request may touch: None for an admin, or with authentication off."""
    principal: Principal | None = request.get(PRINCIPAL)
    if principal is None or principal.role is Role.ADMIN or not request.app[GUARD].enabled:
        return None
    return principal.username


def client_info(body: ClientFields) -> ClientInfo:
    return ClientInfo(
        os_hostname=body.os_hostname,
        ip_local=body.ip_local,
        user_info=body.user_info,
        sdk_ver=body.sdk_ver,
        app_ver=body.app_ver,
    )


def _seat_request(request: web.Request, body: RegisterBody | FeatureRegisterBody) -> SeatRequest:
    principal = principal_of(request)
    return SeatRequest(
        Target(body.product, body.license_id),
        body.user,
        principal.username if principal else None,
        client_info(body),
        owner(request),
        request.remote,
    )


async def register(request: web.Request) -> web.Response:
    body = parse(RegisterBody, await read_json_object(request))
    result = await seats.register(request.app[DOMAIN], _seat_request(request, body))
    request[HEARTBEAT] = not result.created
    return json_response(replies.register_answer(request.app[V4_CACHE], result))


async def borrow(request: web.Request) -> web.Response:
    body = parse(BorrowBody, await read_json_object(request))
    result = await seats.register(
        request.app[DOMAIN], _seat_request(request, body), borrow=True, borrowed_until=body.borrowed_until
    )
    return json_response(replies.borrow_response(result))


async def unregister(request: web.Request) -> web.Response:
    body = parse(UnregisterBody, await read_json_object(request))
    await seats.unregister(request.app[DOMAIN], Target(body.product, body.license_id), body.user, owner(request))
    return web.Response(text="user_unregistered")


def query_value(request: web.Request, name: str) -> str | None:
    """A query parameter by name, or in another letter case (Go's SDK sends `?Product=`); "" is no value."""
    value = request.query.get(name)
    if value is None:
        value = next((v for k, v in request.query.items() if field_name(k) == name), None)
    return value or None


def _query_scope(request: web.Request) -> tuple[str | None, int | None]:
    product = query_value(request, "product")
    raw_id = query_value(request, "license_id")
    license_id = None
    if raw_id is not None:
        try:
            license_id = wire_int(raw_id)
        except ValueError:
            raise InvalidRequest("license_id: must be an integer", param="license_id") from None
    return product, license_id


async def unregister_all(request: web.Request) -> web.Response:
    product, license_id = _query_scope(request)
    await seats.unregister_all(request.app[DOMAIN], product, license_id, owner=owner(request))
    return web.Response(text="")


def consume_request(
    request: web.Request,
    target: Target,
    body: ConsumptionBody | FeatureConsumptionBody | v5_requests.Consumption | v5_requests.FeatureConsumption,
    user: str | None,
) -> ConsumeRequest:
    """The domain's consumption request from a v4 or v5 body (plain consumption bodies carry the overage
    terms; feature ones a `feature`)."""
    principal = principal_of(request)
    return ConsumeRequest(
        target,
        body.consumptions,
        feature=None if isinstance(body, (ConsumptionBody, v5_requests.Consumption)) else body.feature,
        user=user,
        principal=principal.username if principal else None,
        address=request.remote,
        allow_overages=body.allow_overages if isinstance(body, (ConsumptionBody, v5_requests.Consumption)) else None,
        max_overages=body.max_overages if isinstance(body, (ConsumptionBody, v5_requests.Consumption)) else None,
    )


async def _consume(request: web.Request, body: ConsumptionBody | FeatureConsumptionBody) -> web.Response:
    consume = consume_request(request, Target(body.product, body.license_id), body, body.user)
    result = await consumption.add_consumption(request.app[DOMAIN], consume)
    return json_response(replies.consumption_answer(request.app[V4_CACHE], result))


async def add_consumption(request: web.Request) -> web.Response:
    return await _consume(request, parse(ConsumptionBody, await read_json_object(request)))


async def add_feature_consumption(request: web.Request) -> web.Response:
    return await _consume(request, parse(FeatureConsumptionBody, await read_json_object(request)))


async def feature_register(request: web.Request) -> web.Response:
    body = parse(FeatureRegisterBody, await read_json_object(request))
    result = await seats.register_feature(
        request.app[DOMAIN],
        _seat_request(request, body),
        body.feature,
        borrow_until=body.borrow_until or body.borrowed_until,
    )
    request[HEARTBEAT] = not result.created
    return json_response(replies.feature_register_response(request.app[V4_CACHE], result))


async def check_license_feature(request: web.Request) -> web.Response:
    """License-API twin of featureRegister: GET with query `product, feature, hardware_id` (= user)."""
    query = {key: value for key, value in request.query.items()}
    if "hardware_id" in query and "user" not in query:
        query["user"] = query.pop("hardware_id")
    body = parse(FeatureRegisterBody, query)
    result = await seats.register_feature(request.app[DOMAIN], _seat_request(request, body), body.feature)
    return json_response(replies.feature_register_response(request.app[V4_CACHE], result))


async def feature_release(request: web.Request) -> web.Response:
    data = await read_json_object(request)
    if "hardware_id" in data and "user" not in data:  # the License-API twin names the user hardware_id
        data["user"] = data.pop("hardware_id")
    body = parse(FeatureReleaseBody, data)
    target = Target(body.product, body.license_id)
    await seats.release_feature(request.app[DOMAIN], target, body.user, body.feature, owner(request))
    return web.Response(text="feature_released")


async def feature_release_all(request: web.Request) -> web.Response:
    product, license_id = _query_scope(request)
    await seats.unregister_all(
        request.app[DOMAIN],
        product,
        license_id,
        features_only=True,
        feature=request.query.get("feature") or None,
        user=request.query.get("user") or None,
        owner=owner(request),
    )
    return web.Response(text="")


async def list_licenses(request: web.Request) -> web.Response:
    domain = request.app[DOMAIN]
    states = await queries.license_states(domain, query_value(request, "product"))
    return json_response([replies.license_object(request.app[V4_CACHE], state) for state in states])
