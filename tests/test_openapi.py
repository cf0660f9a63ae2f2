"""The OpenAPI documents kept in the repo are valid and describe exactly the routes that exist."""

from __future__ import annotations

import re
from typing import Any

import pytest
from openapi_spec_validator import validate

from floatsrv.api.meta import openapi_document
from floatsrv.api.routes import ROUTES
from tests.conftest import Api


def routes_under(prefix: str) -> set[tuple[str, str]]:
    return {(r.method.lower(), r.path) for r in ROUTES if r.path.startswith(prefix)}


def documented(document: dict[str, Any]) -> set[tuple[str, str]]:
    methods = {"get", "post", "put", "patch", "delete"}
    return {(method, path) for path, item in document["paths"].items() for method in item if method in methods}


@pytest.mark.parametrize(("name", "prefix"), [("v1", "/v1/")])
def test_document_is_valid_and_complete(name: str, prefix: str) -> None:
    document = openapi_document(name)
    validate(document)
    assert documented(document) == routes_under(prefix)
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
