"""Every route declares its role, and the server enforces it: no token -> 401, a weaker role -> 403,
the declared role -> neither. A route added without a rule makes this suite fail."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from floatsrv.api.routes import ROUTES
from floatsrv.appkeys import ROUTE_ROLES
from floatsrv.auth.passwords import hash_password
from floatsrv.models import Role
from floatsrv.v5chain import make_chain
from tests.conftest import Api

PUBLIC = {
    ("GET", "/"),
    ("GET", "/auth"),
    ("GET", "/v1/openapi.json"),
    ("GET", "/api/v4/openapi.json"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
}
# Public only while api_v5 is on (and absent, 404, while it is off).
PUBLIC_V5 = {("GET", "/api/v5/ping"), ("POST", "/api/v5/auth/login")}
PARAMS = {
    "license_id": "1001",
    "username": "nobody",
    "token_id": "0" * 32,
    "key_id": "0" * 12,
    "seat_id": "999",
    "addon_id": "addon_missing",
    "file_id": "lf-missing",
}
WEAKER = {Role.USER: Role.VIEWER, Role.ADMIN: Role.USER}


def with_viewer(data: dict[str, Any]) -> None:
    data["auth"]["users"].append(
        {"username": "watcher", "role": "viewer", "password_hash": hash_password("watcher-password", n=2**10)}
    )


async def call(api: Api, method: str, path: str, token: str) -> int:
    url = re.sub(r"\{(\w+)\}", lambda m: PARAMS[m.group(1)], path)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    kwargs: dict[str, Any] = {"headers": headers}
    if method in ("POST", "PATCH", "PUT"):
        kwargs["json"] = {}
    async with api.client.request(method, url, **kwargs) as resp:
        return resp.status


# Console routes open without a session: the login form and its post, the way in, the static files, and the
# password form (which sends a caller without a session to the login form itself).
CONSOLE_PUBLIC = {
    ("GET", "/ui"),
    ("GET", "/ui/login"),
    ("POST", "/ui/login"),
    ("GET", "/ui/password"),
    ("GET", "/ui/static/{name}"),
    ("GET", "/ui/{tail}"),
}


async def test_every_registered_route_has_a_rule(api: Api) -> None:
    """API routes have their role in the route table; console routes declare theirs through the wrapper that
    checks the session (`console.session.page` / `action`), or are one of the few public ones."""
    routes = [r for r in api.app.router.routes() if r.resource is not None]
    console = {(r.method, r.resource.canonical): r.handler for r in routes if r.resource.canonical.startswith("/ui")}
    registered = {(r.method, r.resource.canonical) for r in routes} - set(console)
    rules = api.app[ROUTE_ROLES]
    assert registered == set(rules), registered ^ set(rules)
    assert {route for route, role in rules.items() if role is None} == PUBLIC
    undeclared = {route for route, handler in console.items() if not hasattr(handler, "console_role")}
    assert undeclared == CONSOLE_PUBLIC, undeclared ^ CONSOLE_PUBLIC
    for (method, path), handler in console.items():
        if method == "POST" and (method, path) not in CONSOLE_PUBLIC:  # every console change is an admin's ...
            wanted = Role.VIEWER if path in CONSOLE_VIEWER_POSTS else Role.ADMIN  # ... but one's own session
            assert handler.console_role is wanted, (path, handler.console_role)


# The only console forms a viewer may post: leaving, and changing their own password.
CONSOLE_VIEWER_POSTS = {"/ui/logout", "/ui/password"}


async def test_console_routes_need_a_session(api: Api) -> None:
    """Without a session cookie every console route but the public ones sends the browser to the login form
    and does nothing (even with a valid bearer token: the console reads only its cookie)."""
    token = await api.login("admin", "admin-password")
    for route in api.app.router.routes():
        canonical = route.resource.canonical if route.resource is not None else ""
        if not canonical.startswith("/ui") or (route.method, canonical) in CONSOLE_PUBLIC:
            continue
        url = re.sub(r"\{(\w+)(:[^}]*)?\}", lambda m: PARAMS.get(m.group(1), "delete"), canonical)
        headers = {"Authorization": f"Bearer {token}"}
        async with api.client.request(route.method, url, headers=headers, allow_redirects=False) as resp:
            assert resp.status == 303 and resp.headers["Location"].startswith("/ui/login"), (route.method, url)


async def test_route_table_enforces_roles(api_factory: Any, tmp_path: Path) -> None:
    chain, key = make_chain(tmp_path / "v5")

    def setup(data: dict[str, Any]) -> None:
        with_viewer(data)
        data["api_v5"] = {"enabled": True, "signing_key": str(key), "certificate_chain": str(chain)}

    api: Api = await api_factory(setup, login=False)
    rules = api.app[ROUTE_ROLES]
    assert {route for route, role in rules.items() if role is None} == PUBLIC | PUBLIC_V5
    tokens = {
        Role.VIEWER: await api.login("watcher", "watcher-password"),
        Role.USER: await api.login("demo", "demo-password"),
        Role.ADMIN: await api.login("admin", "admin-password"),
    }
    # Rotating the signing key invalidates every token: check it last.
    routes = sorted((r for r in ROUTES if r.role is not None), key=lambda r: r.path == "/v1/signing-key/rotate")
    checked = 0
    for route in routes:
        assert route.role is not None
        assert await call(api, route.method, route.path, "") == 401, route
        weaker = WEAKER.get(route.role)
        if weaker is not None:
            assert await call(api, route.method, route.path, tokens[weaker]) == 403, (route, weaker)
        status = await call(api, route.method, route.path, tokens[route.role])
        assert status not in (401, 403), (route, status)
        checked += 1
    assert checked == len(ROUTES) - len(PUBLIC) - len(PUBLIC_V5)


async def test_home_and_login_are_public(api: Api) -> None:
    assert await call(api, "GET", "/", "") == 200
    assert await call(api, "GET", "/auth", "") == 401  # public, but it asks for Basic credentials
