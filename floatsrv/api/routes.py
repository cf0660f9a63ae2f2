"""The whole route table on one screen. Every route declares the least role it needs (None: public);
a test walks this table, so a route without a rule cannot slip in.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web
from aiohttp.typedefs import Handler

from floatsrv.api import meta, native, v4
from floatsrv.appkeys import ROUTE_ROLES
from floatsrv.models import Role


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    path: str
    handler: Handler
    role: Role | None


USER, VIEWER = Role.USER, Role.VIEWER

ROUTES: tuple[Route, ...] = (
    # Meta. `/` must answer 200 without a token: the SDK's is_online() calls it bare.
    Route("GET", "/", meta.home, None),
    Route("GET", "/auth", meta.login, None),
    Route("GET", "/api/v4/health", meta.health, VIEWER),
    # LicenseSpring Floating Server v1 (spec §1.4-1.6).
    Route("POST", "/api/v4/register", v4.register, USER),
    Route("POST", "/api/v4/unregister", v4.unregister, USER),
    Route("GET", "/api/v4/unregister/all", v4.unregister_all, USER),
    Route("POST", "/api/v4/borrow", v4.borrow, USER),
    Route("POST", "/api/v4/add_consumption", v4.add_consumption, USER),
    Route("POST", "/api/v4/add_feature_consumption", v4.add_feature_consumption, USER),
    Route("POST", "/api/v4/featureRegister", v4.feature_register, USER),
    Route("POST", "/api/v4/featureRelease", v4.feature_release, USER),
    Route("GET", "/api/v4/featureRelease/all", v4.feature_release_all, USER),
    Route("GET", "/api/v4/license", v4.list_licenses, VIEWER),
    # License-API-compatible twins (spec §1.7).
    Route("GET", "/api/v4/check_license_feature", v4.check_license_feature, USER),
    Route("POST", "/api/v4/feature_release", v4.feature_release, USER),
    Route("POST", "/api/v4/floating/feature_release", v4.feature_release, USER),
    Route("GET", "/api/v4/feature_release/all", v4.feature_release_all, USER),
    # Native read API.
    Route("GET", "/v1/licenses", native.list_licenses, VIEWER),
    Route("GET", "/v1/licenses/{license_id}", native.get_license, VIEWER),
    Route("GET", "/v1/seats", native.list_seats, VIEWER),
)


def setup_routes(app: web.Application) -> None:
    roles: dict[tuple[str, str], Role | None] = {}
    for route in ROUTES:
        app.router.add_route(route.method, route.path, route.handler)
        roles[(route.method, route.path)] = route.role
    app[ROUTE_ROLES] = roles
