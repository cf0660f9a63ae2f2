"""Hostile numbers and ids, everywhere: a JSON number no decimal context can hold, a huge exponent in every
numeric body field, an integer past SQLite's 64 bits in every integer query parameter, and a NUL in a
username. Each gets a 4xx in the surface's error shape, never a 5xx, and a 400 always names the field: `param`
on /v1, the message on /api/v4 and /api/v5. The sweep walks all three OpenAPI documents (v1, v4, v5; /api/v5
is switched on for it), so a field added later is covered too."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from floatsrv.api.meta import openapi_document
from tests.conftest import Api
from tests.test_v5_api import chain, enable

__all__ = ["chain"]  # the fixture: a certificate chain for /api/v5's signed replies
DOCUMENTS = ("v1", "v4", "v5")

# Raw JSON number literals: each one broke the server once (decimal.InvalidOperation, decimal.Overflow).
HUGE_NUMBERS = ["1e1000000000000000000", "1e999999999", "-1e999999999", "1e-999999999", "9223372036854775808"]
TOO_BIG_INT = "9223372036854775808"  # 2**63: past what SQLite can bind
# Plausible values for required fields, so a request reaches the field under test.
FILL = {
    "product": "demo",
    "user": "u1",
    "username": "u1",
    "hardware_id": "u1",
    "feature": "render",
    "license_id": 1001,
    "event_id": "e-1",
    "name": "n",
}


def _resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        node: Any = document
        for part in schema["$ref"].lstrip("#/").split("/"):
            node = node[part]
        schema = node
    return schema


def _numeric(document: dict[str, Any], schema: dict[str, Any]) -> bool:
    schema = _resolve(document, schema)
    kinds = schema.get("type")
    kinds = kinds if isinstance(kinds, list) else [kinds]
    if "integer" in kinds or "number" in kinds:
        return True
    return any(_numeric(document, option) for option in schema.get("oneOf", []) + schema.get("anyOf", []))


def _filler(document: dict[str, Any], name: str, schema: dict[str, Any]) -> Any:
    if name in FILL:
        return FILL[name]
    if _numeric(document, schema):
        return 1
    schema = _resolve(document, schema)
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type")
    kind = kind[0] if isinstance(kind, list) else kind
    return {"integer": 1, "number": 1, "boolean": True, "array": [], "object": {}}.get(str(kind), "x")


def body_cases() -> list[tuple[str, str, str, str]]:
    """(method, path, field, raw body) for every numeric property of every JSON request body."""
    cases = []
    for name in DOCUMENTS:
        document = openapi_document(name)
        for path, item in document["paths"].items():
            for method, operation in item.items():
                if method not in ("post", "put", "patch"):
                    continue
                body = _resolve(document, operation.get("requestBody", {}))
                content = body.get("content", {}).get("application/json")
                if content is None:
                    continue
                schema = _resolve(document, content["schema"])
                for variant in schema.get("oneOf", [schema]):
                    variant = _resolve(document, variant)
                    props = variant.get("properties", {})
                    required = variant.get("required", [])
                    for field, prop in props.items():
                        if not _numeric(document, prop):
                            continue
                        # Every other field a request needs (required, or one of FILL: LicenseSpring's
                        # documents leave `user` optional where `hardware_id` may stand in for it), valid.
                        wanted = [key for key in props if key != field and (key in required or key in FILL)]
                        filled = {key: _filler(document, key, props[key]) for key in wanted}
                        text = json.dumps(filled)[:-1] + (", " if filled else "") + f'"{field}": HOSTILE}}'
                        cases.append((method.upper(), path, field, text))
    return cases


def query_cases() -> list[tuple[str, str, dict[str, str]]]:
    """(path, parameter, the other query parameters a request needs) for every integer query parameter."""
    cases = []
    for name in DOCUMENTS:
        document = openapi_document(name)
        for path, item in document["paths"].items():
            get = item.get("get")
            params = [_resolve(document, param) for param in (get or {}).get("parameters", [])]
            query = [param for param in params if param.get("in") == "query"]
            for param in query:
                if _numeric(document, param.get("schema", {})):
                    others = {
                        other["name"]: str(FILL[other["name"]])
                        for other in query
                        if other["name"] != param["name"] and other["name"] in FILL
                    }
                    cases.append((path, param["name"], others))
    return cases


def concrete(path: str) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: {"license_id": "1001", "username": "demo"}.get(m[1], "x"), path)


def check_error(path: str, status: int, body: Any, field: str | None = None) -> None:
    """A 4xx in the surface's error shape; with `field`, a 400 that names it (`param` on /v1, the message on
    /api/v4 and /api/v5)."""
    assert 400 <= status < 500, (path, status, body)
    if path.startswith("/v1/"):
        assert body["success"] is False and body["error"]["code"], body
    else:
        assert set(body) == {"status", "code", "message"} and body["status"] == status, body
    if field is None:
        return
    assert status == 400, (path, field, body)
    if path.startswith("/v1/"):
        assert body["error"]["param"] is not None and field in body["error"]["param"], (path, field, body)
    else:
        assert field in body["message"], (path, field, body)


@pytest.fixture
async def admin(api_factory: Any, chain: tuple[Path, Path]) -> Api:
    """An admin of a server that serves all three surfaces (/api/v5 is off by default)."""
    api: Api = await api_factory(enable(chain))
    await api.login("admin", "admin-password")
    return api


@pytest.mark.parametrize(("method", "path", "field", "template"), body_cases())
async def test_hostile_numbers_in_every_numeric_body_field(
    admin: Api, method: str, path: str, field: str, template: str
) -> None:
    for number in HUGE_NUMBERS:
        raw = template.replace("HOSTILE", number).encode()
        headers = {**admin.headers(), "Content-Type": "application/json"}
        async with admin.client.request(method, concrete(path), data=raw, headers=headers) as resp:
            body = await resp.json()
        check_error(path, resp.status, body, field)


@pytest.mark.parametrize(("path", "param", "others"), query_cases())
async def test_integers_past_64_bits_in_every_integer_query_parameter(
    admin: Api, path: str, param: str, others: dict[str, str]
) -> None:
    status, body = await admin.get(concrete(path), params={**others, param: TOO_BIG_INT})
    check_error(path, status, body, param)


async def test_the_reported_shapes_get_400_naming_the_field(admin: Api) -> None:
    status, body = await admin.post(
        "/api/v4/register", None, raw=b'{"product": "demo", "user": "u", "x": 1e1000000000000000000}'
    )
    assert (status, body["code"]) == (400, "invalid_json") and body["message"].startswith("x: "), body
    status, body = await admin.post(
        "/v1/usage/check", None, raw=b'{"feature": "render", "quantity": [-1e1000000000000000000]}'
    )
    assert (status, body["error"]["code"], body["error"]["param"]) == (400, "invalid_json", "quantity"), body
    consume = b'{"product": "demo", "user": "u", "feature": "render", "consumptions": 1e999999999}'
    status, body = await admin.post("/api/v4/add_feature_consumption", None, raw=consume)
    assert (status, body["code"]) == (400, "validation_error") and "consumptions" in body["message"], body
    status, body = await admin.post(
        "/api/v4/register", None, raw=b'{"product": "demo", "user": "u", "license_id": 1e999999999}'
    )
    assert (status, body["code"]) == (400, "validation_error") and "license_id" in body["message"], body
    event = b'{"event_id": "e1", "product": "demo", "feature": "render", "quantity": 1e999999999}'
    status, body = await admin.post("/v1/usage/events", None, raw=event)
    assert (status, body["error"]["code"]) == (400, "invalid_quantity"), body
    for path in ("/v1/audit", "/v1/licenses/1001/credits/ledger"):
        for big in (TOO_BIG_INT, "1" + "0" * 19, "-" + "9" * 40):  # 2^63; 20 digits and more: said to be too big
            status, body = await admin.get(path, params={"before": big})
            assert (status, body["error"]["param"]) == (400, "before"), body
            assert "between -2^63 and 2^63-1" in body["error"]["message"], body
    status, body = await admin.post("/v1/users", {"username": "eve\x00il"})
    assert (status, body["error"]["param"]) == (400, "username"), body
