"""The OpenAPI documents kept in the repo are valid and describe exactly the routes that exist."""

from __future__ import annotations

import re
from typing import Any

import pytest
from openapi_spec_validator import validate

from floatsrv import errors
from floatsrv.api.meta import openapi_document
from floatsrv.api.routes import ROUTES
from tests.conftest import Api

# The v4 document also describes the login and the home page, which LicenseSpring's SDK calls.
OUTSIDE_PREFIX = {"v1": set(), "v4": {("get", "/auth"), ("get", "/")}, "v5": set()}


def routes_under(prefix: str) -> set[tuple[str, str]]:
    return {(r.method.lower(), r.path) for r in ROUTES if r.path.startswith(prefix)}


def documented(document: dict[str, Any]) -> set[tuple[str, str]]:
    methods = {"get", "post", "put", "patch", "delete"}
    return {(method, path) for path, item in document["paths"].items() for method in item if method in methods}


@pytest.mark.parametrize(("name", "prefix"), [("v1", "/v1/"), ("v4", "/api/v4/"), ("v5", "/api/v5/")])
def test_document_is_valid_and_complete(name: str, prefix: str) -> None:
    document = openapi_document(name)
    validate(document)
    assert documented(document) == routes_under(prefix) | OUTSIDE_PREFIX[name]
    # Every route with a role says which role in its summary, so readers see the rule the server applies.
    for route in ROUTES:
        if route.path.startswith(prefix) and route.role is not None:
            summary = document["paths"][route.path][route.method.lower()]["summary"]
            assert re.search(rf"\({route.role.value}\b", summary), (route.path, summary)


async def test_served_at_v1_openapi_json(api: Api) -> None:
    async with api.client.get("/v1/openapi.json") as resp:
        assert resp.status == 200
        document = await resp.json()
    assert document["openapi"] == "3.1.0" and "/v1/usage/events" in document["paths"]


def _error_classes(cls: type[errors.FloatsrvError]) -> list[type[errors.FloatsrvError]]:
    return [cls, *(sub for child in cls.__subclasses__() for sub in _error_classes(child))]


@pytest.mark.parametrize("name", ["v4", "v5"])
def test_error_codes_are_real(name: str) -> None:
    """Every error code the v4 and v5 documents promise is one the server has (docs/errors.md lists them)."""
    document = openapi_document(name)
    promised: set[str] = set(document["components"]["schemas"]["BadRequestCode"]["enum"])
    for response in document["components"]["responses"].values():
        for part in response.get("content", {}).get("application/json", {}).get("schema", {}).get("allOf", []):
            code = part.get("properties", {}).get("code", {})
            promised |= set(code.get("enum", [])) | ({code["const"]} if "const" in code else set())
    known = {cls.code for cls in _error_classes(errors.FloatsrvError)}
    assert promised and promised <= known, promised - known
    if name == "v4":
        assert "/api/v5/ping" not in document["paths"]  # v5 has its own document, and is off by default


async def test_served_at_api_v4_openapi_json(api: Api) -> None:
    async with api.client.get("/api/v4/openapi.json") as resp:  # public: no token
        assert resp.status == 200 and resp.content_type == "application/json"
        document = await resp.json()
    assert document["openapi"] == "3.1.0" and "/api/v4/register" in document["paths"]
    assert document == openapi_document("v4")


def _codes(document: dict[str, Any], response: dict[str, Any]) -> set[str]:
    """The codes a response object of a document promises (following a `$ref` to components/responses)."""
    if "$ref" in response:
        response = document["components"]["responses"][response["$ref"].rsplit("/", 1)[-1]]
    found: set[str] = set()
    for part in response.get("content", {}).get("application/json", {}).get("schema", {}).get("allOf", []):
        code = part.get("properties", {}).get("code", {})
        found |= set(code.get("enum", [])) | ({code["const"]} if "const" in code else set())
    return found


# The routes that check a password (a login, a password change, a user added with one): each may answer 503
# `login_busy` when password checks are saturated.
PASSWORD_CHECKS = {
    "v4": [("/auth", "get")],
    "v5": [("/api/v5/auth/login", "post"), ("/api/v5/auth/change-password", "post"), ("/api/v5/auth/add-user", "post")],
}


@pytest.mark.parametrize("name", ["v4", "v5"])
def test_refusals_the_server_sends_are_promised(name: str) -> None:
    """Every 403 code (the Forbidden family, `seat_owned_by_another_login` included) is in the document's
    Forbidden response, and every route that checks a password promises 503 `login_busy`."""
    document = openapi_document(name)
    forbidden = {cls.code for cls in _error_classes(errors.Forbidden)}
    assert forbidden <= _codes(document, {"$ref": "#/components/responses/Forbidden"}), forbidden
    for path, method in PASSWORD_CHECKS[name]:
        busy = _codes(document, document["paths"][path][method]["responses"]["503"])
        assert {errors.LoginBusy.code, errors.StorageUnavailable.code} <= busy, (path, busy)
