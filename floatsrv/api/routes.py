"""The whole route table on one screen. Every route declares the least role it needs (None: public);
a test walks this table, so a route without a rule cannot slip in.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web
from aiohttp.typedefs import Handler

from floatsrv.api import (
    account,
    addons,
    admin,
    licensefiles,
    meta,
    metrics,
    native,
    ops,
    reports,
    sync,
    usage,
    v4,
    v5,
    v5_auth,
)
from floatsrv.appkeys import ROUTE_ROLES
from floatsrv.models import Role


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    path: str  # as documented and as requests are logged and authorised (the resource's canonical path)
    handler: Handler
    role: Role | None
    pattern: str | None = None  # what the router matches instead, where a variable must exclude a sibling path


ADMIN, USER, VIEWER = Role.ADMIN, Role.USER, Role.VIEWER

ROUTES: tuple[Route, ...] = (
    # Meta. `/` must answer 200 without a token: the SDK's is_online() calls it bare.
    Route("GET", "/", meta.home, None),
    Route("GET", "/auth", meta.login, None),
    Route("GET", "/api/v4/health", meta.health, VIEWER),
    # Operations: probes are public (service managers call them bare); metrics need a viewer or the metrics token.
    Route("GET", "/healthz", ops.healthz, None),
    Route("GET", "/readyz", ops.readyz, None),
    Route("GET", "/metrics", metrics.metrics, VIEWER),
    Route("GET", "/api/v4/openapi.json", meta.openapi_v4, None),
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
    # LicenseSpring's offline license upload takes a floatsrv license file (spec §1.5).
    Route("POST", "/api/v4/license/upload", licensefiles.v4_upload, ADMIN),
    Route("POST", "/api/v4/license/generate", licensefiles.v4_generate, ADMIN),
    # License-API-compatible twins (spec §1.7).
    Route("GET", "/api/v4/check_license_feature", v4.check_license_feature, USER),
    Route("POST", "/api/v4/feature_release", v4.feature_release, USER),
    Route("POST", "/api/v4/floating/feature_release", v4.feature_release, USER),
    # The paths the Go, C++ and Swift SDKs call (`floating/...`, the License API's names; docs/compatibility.md).
    Route("POST", "/api/v4/floating/register", v4.register, USER),
    Route("POST", "/api/v4/floating/unregister", v4.unregister, USER),
    Route("POST", "/api/v4/floating/unregister/all", v4.unregister_all, USER),
    Route("POST", "/api/v4/floating/borrow", v4.borrow, USER),
    Route("POST", "/api/v4/floating/add_consumption", v4.add_consumption, USER),
    Route("POST", "/api/v4/floating/add_feature_consumption", v4.add_feature_consumption, USER),
    Route("GET", "/api/v4/floating/license", v4.list_licenses, VIEWER),
    Route("GET", "/api/v4/floating/health", meta.health, VIEWER),
    Route("GET", "/api/v4/feature_release/all", v4.feature_release_all, USER),
    # LicenseSpring Floating Server v2 (only with api_v5.enabled: the SDK switches to v5 once ping answers).
    Route("GET", "/api/v5/ping", v5.ping, None),
    Route("POST", "/api/v5/auth/login", v5_auth.login, None),
    Route("POST", "/api/v5/auth/refresh", v5_auth.refresh, VIEWER),
    Route("GET", "/api/v5/auth/me", v5_auth.whoami, VIEWER),
    Route("POST", "/api/v5/auth/change-password", v5_auth.change_password, VIEWER),
    Route("GET", "/api/v5/auth/users", v5_auth.list_users, ADMIN),
    Route("POST", "/api/v5/auth/add-user", v5_auth.add_user, ADMIN),
    Route("GET", "/api/v5/license", v5.list_licenses, VIEWER),
    Route("GET", "/api/v5/license/{license_id}", v5.get_license, VIEWER),
    Route("GET", "/api/v5/license/{license_id}/user", v5.license_users, VIEWER),
    Route("GET", "/api/v5/license/{license_id}/feature", v5.license_features, VIEWER),
    Route("POST", "/api/v5/license/{license_id}/user/register", v5.register, USER),
    Route("POST", "/api/v5/license/{license_id}/user/unregister", v5.unregister, USER),
    Route("POST", "/api/v5/license/{license_id}/user/borrow", v5.borrow, USER),
    Route("POST", "/api/v5/license/{license_id}/user/unregister_all", v5.unregister_all, ADMIN),
    Route("POST", "/api/v5/license/{license_id}/consumption/add", v5.add_consumption, USER),
    Route("POST", "/api/v5/license/{license_id}/consumption/feature/add", v5.add_feature_consumption, USER),
    Route("POST", "/api/v5/license/{license_id}/feature/register", v5.feature_register, USER),
    Route("POST", "/api/v5/license/{license_id}/feature/release", v5.feature_release, USER),
    Route("POST", "/api/v5/license/{license_id}/feature/release_all", v5.feature_release_all, USER),
    # The Python SDK keeps its v1 path under the v5 prefix.
    Route("GET", "/api/v5/unregister/all", v5.unregister_everything, USER),
    # Native API. Its OpenAPI document is public, like the home page.
    Route("GET", "/v1/openapi.json", meta.openapi_v1, None),
    Route("GET", "/v1/licenses", native.list_licenses, VIEWER),
    Route("GET", "/v1/licenses/{license_id}", native.get_license, VIEWER),
    Route("GET", "/v1/seats", native.list_seats, VIEWER),
    Route("GET", "/v1/reports/denials", reports.denial_log, VIEWER),
    Route("GET", "/v1/reports/concurrency", reports.concurrency, VIEWER),
    Route("GET", "/v1/reports/consumption", reports.consumption, VIEWER),
    Route("POST", "/v1/seats/{seat_id}/revoke", admin.revoke_seat, ADMIN),
    # Native metering: pre-check, usage events, credits, add-ons.
    Route("POST", "/v1/usage/check", usage.check_usage, VIEWER),
    Route("POST", "/v1/usage/events", usage.record_events, USER),
    Route("GET", "/v1/licenses/{license_id}/credits", usage.get_credits, VIEWER),
    Route("POST", "/v1/licenses/{license_id}/credits", usage.grant_credits, ADMIN),
    Route("GET", "/v1/licenses/{license_id}/credits/ledger", usage.credit_ledger, VIEWER),
    Route("GET", "/v1/addons", addons.list_addons, VIEWER),
    Route("POST", "/v1/addons", addons.create_addon, ADMIN),
    Route("GET", "/v1/addons/{addon_id}", addons.get_addon, VIEWER),
    Route("PUT", "/v1/addons/{addon_id}", addons.replace_addon, ADMIN),
    Route("DELETE", "/v1/addons/{addon_id}", addons.delete_addon, ADMIN),
    Route("GET", "/v1/licenses/{license_id}/addons", addons.list_active, VIEWER),
    Route("POST", "/v1/licenses/{license_id}/addons", addons.activate, ADMIN),
    Route("DELETE", "/v1/licenses/{license_id}/addons/{addon_id}", addons.deactivate, ADMIN),
    # Vendor-signed license files.
    Route("GET", "/v1/license-files", licensefiles.list_files, VIEWER),
    Route("POST", "/v1/license-files", licensefiles.import_file, ADMIN),
    Route("POST", "/v1/license-files/requests", licensefiles.create_request, ADMIN),
    # Not "requests": that is POST /v1/license-files/requests (so DELETE there is a 405, not a file id).
    Route(
        "DELETE",
        "/v1/license-files/{file_id}",
        licensefiles.remove_file,
        ADMIN,
        pattern="/v1/license-files/{file_id:(?!requests$)[^{}/]+}",
    ),
    # Upstream sync.
    Route("GET", "/v1/sync", sync.get_status, VIEWER),
    Route("POST", "/v1/sync/run", sync.run_now, ADMIN),
    Route("POST", "/v1/sync/retry", sync.retry_parked, ADMIN),
    # The caller's own account (the only routes open while a temporary password must be changed).
    Route("GET", "/v1/me", account.whoami, VIEWER),
    Route("POST", "/v1/me/password", account.change_password, VIEWER),
    # Administration: users, tokens, API keys, the signing key, the audit log.
    Route("GET", "/v1/users", admin.list_users, ADMIN),
    Route("POST", "/v1/users", admin.create_user, ADMIN),
    Route("GET", "/v1/users/{username}", admin.get_user, ADMIN),
    Route("PATCH", "/v1/users/{username}", admin.update_user, ADMIN),
    Route("DELETE", "/v1/users/{username}", admin.delete_user, ADMIN),
    Route("POST", "/v1/users/{username}/password", admin.reset_password, ADMIN),
    Route("POST", "/v1/users/{username}/revoke-tokens", admin.revoke_user_tokens, ADMIN),
    Route("GET", "/v1/tokens", admin.list_tokens, ADMIN),
    Route("DELETE", "/v1/tokens/{token_id}", admin.revoke_token, ADMIN),
    Route("POST", "/v1/signing-key/rotate", admin.rotate_signing_key, ADMIN),
    Route("GET", "/v1/api-keys", admin.list_api_keys, ADMIN),
    Route("POST", "/v1/api-keys", admin.create_api_key, ADMIN),
    Route("DELETE", "/v1/api-keys/{key_id}", admin.revoke_api_key, ADMIN),
    Route("GET", "/v1/audit", admin.audit_log, ADMIN),
)


V5_PREFIX = "/api/v5/"


def setup_routes(app: web.Application, *, v5: bool = False) -> None:
    """Add the routes; /api/v5 only with `v5` (api_v5.enabled), so that without it every v5 path is a 404."""
    roles: dict[tuple[str, str], Role | None] = {}
    for route in ROUTES:
        if route.path.startswith(V5_PREFIX) and not v5:
            continue
        added = app.router.add_route(route.method, route.pattern or route.path, route.handler)
        assert added.resource is not None and added.resource.canonical == route.path, route
        roles[(route.method, route.path)] = route.role
    app[ROUTE_ROLES] = roles
