"""Every LicenseSpring client's v1 requests, replayed exactly as its public source builds them (issue 19, part 1;
docs/compatibility.md says where each shape comes from): the Python SDK's (nulls for absent client fields, JSON
numbers and booleans), the v1 docs' examples (`"user_info": ""`, numbers as strings), and the Go SDK's
(`User`/`Product` keys, the License API's `floating/` paths, `?Product=`, a `null` body). Each gets 200 and its
effect; what is actually wrong is still refused."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.conftest import Api

PYTHON_CLIENT = {"os_hostname": "build-7", "ip_local": None, "user_info": None, "sdk_ver": "PythonSDK 4.0.0"}


async def raw(api: Api, method: str, path: str, body: str | None = None, **params: str) -> tuple[int, Any]:
    """A request with exactly this body text (Go's `null` included)."""
    headers = {**api.headers(), "Content-Type": "application/json"}
    async with api.client.request(method, path, data=body, params=params, headers=headers) as resp:
        text = await resp.text()
        try:
            return resp.status, json.loads(text)
        except ValueError:
            return resp.status, text


async def held_users(api: Api) -> set[str]:
    return {seat["user"] for seat in await api.seats(state="held") if seat["feature"] is None}


async def test_the_python_sdk_shapes(api_factory: Any) -> None:
    api: Api = await api_factory()
    register = {"product": "demo", "user": "202481601234567", **PYTHON_CLIENT}
    assert (await api.post("/api/v4/register", register))[0] == 200
    borrow = {**register, "user": "202481601234568", "borrowed_until": None}  # always sent, null without a date
    assert (await api.post("/api/v4/borrow", borrow))[0] == 200
    consume = {"product": "demo", "user": "202481601234567", "sdk_ver": "PythonSDK 4.0.0", "consumptions": 1,
               "max_overages": 0, "allow_overages": False}  # fmt: skip
    status, body = await api.post("/api/v4/add_consumption", consume)
    assert status == 200 and body["total_consumptions"] == 1, body
    feature = {**register, "feature": "export"}
    assert (await api.post("/api/v4/featureRegister", feature))[0] == 200
    release = {"product": "demo", "user": "202481601234567", "sdk_ver": "PythonSDK 4.0.0", "feature": "export"}
    assert (await api.post("/api/v4/featureRelease", release))[0] == 200
    assert await held_users(api) == {"202481601234567", "202481601234568"}


async def test_the_v1_docs_examples(api_factory: Any) -> None:
    api: Api = await api_factory()
    # LicenseSpring's register example: every optional client field an empty string (refused before).
    register = {"product": "demo", "user": "docs-user", "os_hostname": "", "ip_local": "", "user_info": ""}
    status, body = await api.post("/api/v4/register", register)
    assert status == 200, body
    [seat] = await api.seats(state="held")
    assert seat["client"]["user_info"] is None and seat["client"]["os_hostname"] is None, seat  # "" is no value
    status, body = await api.post("/api/v4/add_consumption", {"product": "demo", "consumptions": "2"})
    assert status == 200 and body["total_consumptions"] == 2, body
    feature = {"product": "demo", "feature": "render", "consumptions": "2"}
    assert (await api.post("/api/v4/add_feature_consumption", feature))[0] == 200


async def test_camel_case_and_letter_case_variants_are_the_same_fields(api_factory: Any) -> None:
    api: Api = await api_factory()
    status, body = await api.post(
        "/api/v4/add_consumption",
        {"Product": "demo", "consumptions": "3", "allowOverages": "false", "maxOverages": "0", "licenseId": "1001"},
    )
    assert status == 200 and body["total_consumptions"] == 3, body
    # The field's own name wins over a variant of it.
    status, body = await api.post("/api/v4/register", {"product": "demo", "Product": "nope", "user": "u", "User": "v"})
    assert status == 200 and await held_users(api) == {"u"}, body


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"product": "", "user": "u"}, "validation_error"),  # an empty product is still wrong
        ({"product": "demo", "user": ""}, "validation_error"),
        ({"product": "demo"}, "missing_parameters"),
        ({"product": "demo", "user": "u", "user_info": "line\nbreak"}, "validation_error"),
        ({"product": "demo", "user": "u", "os_hostname": "h" * 257}, "validation_error"),
    ],
)
async def test_what_is_actually_wrong_is_still_refused(api_factory: Any, body: dict[str, Any], code: str) -> None:
    api: Api = await api_factory()
    status, reply = await api.post("/api/v4/register", body)
    assert status == 400 and reply["code"] == code, reply


def without_auth(data: dict[str, Any]) -> None:
    data["auth"]["enabled"] = False  # the Go SDK sends `Authorization: ""` and has no login


async def test_the_go_sdk_shapes(api_factory: Any) -> None:
    api: Api = await api_factory(without_auth, login=False)
    status, body = await raw(api, "POST", "/api/v4/floating/register", '{"User":"go-1","Product":"demo"}')
    assert status == 200 and body["floating_slots_in_use"] == 1, body
    status, body = await raw(api, "GET", "/api/v4/floating/license", Product="demo")
    assert status == 200 and [lic["id"] for lic in body] == [1001], body
    assert (await raw(api, "GET", "/api/v4/floating/health"))[0] == 200
    status, body = await raw(api, "POST", "/api/v4/floating/unregister", '{"User":"go-1","Product":"demo"}')
    assert status == 200, body
    assert (await raw(api, "POST", "/api/v4/floating/register", '{"User":"go-2","Product":"demo"}'))[0] == 200
    assert (await raw(api, "POST", "/api/v4/floating/unregister/all", "null"))[0] == 200
    assert await held_users(api) == set()
    # Go's AddConsumption names no quantity: refused as LicenseSpring's API refuses it, changing nothing.
    status, body = await raw(api, "POST", "/api/v4/floating/add_consumption", '{"Product":"demo"}')
    assert status == 400 and body["code"] == "missing_parameters", body
