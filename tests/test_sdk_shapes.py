"""Every LicenseSpring client's v1 requests, replayed exactly as its public source builds them (issue 19, part 1;
docs/compatibility.md says where each shape comes from): the Python SDK's (nulls for absent client fields, JSON
numbers and booleans), the Node SDK's (`"user_info": ""`, camelCase `allowOverages`, nulls for "no overage
request", bodyless GETs with a JSON Content-Type), the v1 docs' examples (`"user_info": ""`, numbers as strings),
and the Go SDK's (`User`/`Product` keys, the License API's `floating/` paths, `?Product=`, a POST without a body).
Each gets 200 and its effect; what is actually wrong is still refused."""

from __future__ import annotations

import base64
import json
from datetime import timedelta
from typing import Any

import pytest

from tests.conftest import Api

PYTHON_CLIENT = {"os_hostname": "build-7", "ip_local": None, "user_info": None, "sdk_ver": "PythonSDK 4.0.0"}


async def raw(api: Api, method: str, path: str, body: str | None = None, **params: str) -> tuple[int, Any]:
    """A request with exactly this body text, or none at all (`body=None`), with a JSON Content-Type either way."""
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


# @licensespring/node-sdk 1.4.17, dist/src/floating.js, class FloatingAPI (the v1 client; axios sends each body as
# JSON.stringify writes it: compact, keys in the order the object was built, `undefined` left out). `user` is
# `getHardwareId(0)` (64 hex digits) except where registerUser/unregisterUser are given a username.
NODE_HWID = "4f0c2a9e7d61b3c58a2e9f07d4c61b85a3e0f92d7c6b15a48e3d2c1b0a9f8e7d"
NODE_VERSIONS = {"sdk_ver": "JavascriptSDK 1.4.17", "app_ver": "MyApp 2.1"}  # app_ver: config.appVersion, required
NODE_HOST = {"ip_local": "192.0.2.2", "os_hostname": "build-9"}  # hardwareRequestData(): first external IPv4


def stringify(body: dict[str, Any]) -> str:
    """JSON.stringify of a body of strings, integers, booleans and nulls (what axios sends)."""
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False)


def node(**fields: Any) -> str:
    """A FloatingAPI body: product, user, sdk_ver, app_ver, the call's own fields, then license_id if set."""
    license_id = fields.pop("license_id", None)
    body = {"product": "demo", "user": fields.pop("user", NODE_HWID), **NODE_VERSIONS, **fields}
    if license_id:
        body["license_id"] = license_id
    return stringify(body)


async def test_the_node_sdk_shapes(api_factory: Any) -> None:
    api: Api = await api_factory(login=False)
    # authenticate(): GET auth with Basic credentials and a JSON Content-Type, no body; the token is then a bearer.
    basic = "Basic " + base64.b64encode(b"demo:demo-password").decode()
    headers = {"Authorization": basic, "Content-Type": "application/json"}
    async with api.client.get("/auth", headers=headers) as resp:
        assert resp.status == 200, await resp.text()
        api.token = (await resp.json())["token"]

    # registerUser(undefined, 1001): floatingRequestData (license_id last), then hardwareRequestData (user_info "").
    register = stringify(
        {"product": "demo", "user": NODE_HWID, **NODE_VERSIONS, "license_id": 1001, **NODE_HOST, "user_info": ""}
    )
    status, body = await raw(api, "POST", "/api/v4/register", register)
    assert status == 200 and body["floating_slots_in_use"] == 1, body
    # registerUser("cad-user", undefined, "shift B") from an app configured with appVersion "" (no license_id).
    named = {"product": "demo", "user": "cad-user", **NODE_VERSIONS, "app_ver": ""}
    status, body = await raw(api, "POST", "/api/v4/register", stringify({**named, **NODE_HOST, "user_info": "shift B"}))
    assert status == 200 and body["floating_slots_in_use"] == 2, body
    seats = {seat["user"]: seat["client"] for seat in await api.seats(state="held")}
    assert seats[NODE_HWID]["user_info"] is None and seats[NODE_HWID]["os_hostname"] == "build-9", seats  # "" is none
    assert seats["cad-user"]["user_info"] == "shift B", seats

    # addConsumption(n, 1001, maxOverages, allowOverages): License.syncConsumption() sends null, null (no overage
    # request); with overages 0 it sends 0, false; with N > 0, N, true. The boolean is camelCase.
    for quantity, max_overages, allow, total in ((3, None, None, 3), (2, 0, False, 5), (1, 5, True, 6)):
        consume = node(consumptions=quantity, max_overages=max_overages, allowOverages=allow, license_id=1001)
        status, body = await raw(api, "POST", "/api/v4/add_consumption", consume)
        assert status == 200 and body["total_consumptions"] == total, body
    # addConsumption(995, 1001, null, false): allowOverages alone is read as allow_overages, so the license's 100
    # units of overage are not taken and 1001 of 1000 is refused (without it, 1001 of 1100 would be counted).
    consume = node(consumptions=995, max_overages=None, allowOverages=False, license_id=1001)
    status, body = await raw(api, "POST", "/api/v4/add_consumption", consume)
    assert (status, body["code"]) == (400, "license_not_enough_consumptions"), body
    # addFeatureConsumption("render", 2, 1001)
    status, body = await raw(api, "POST", "/api/v4/add_feature_consumption",
                             node(consumptions=2, feature="render", license_id=1001))  # fmt: skip
    assert status == 200 and body["code"] == "render" and body["total_consumptions"] == 2, body

    # registerFeature("export", 1001): the feature, the client fields (user_info ""), then license_id.
    feature = node(feature="export", **NODE_HOST, user_info="", license_id=1001)
    status, body = await raw(api, "POST", "/api/v4/featureRegister", feature)
    assert status == 200 and body["floating_in_use_devices"] == 1, body
    assert [seat["user"] for seat in await api.seats(state="held", feature="export")] == [NODE_HWID]
    # featureRelease("export", 1001)
    status, body = await raw(api, "POST", "/api/v4/featureRelease", node(feature="export", license_id=1001))
    assert status == 200, body
    assert await api.seats(state="held", feature="export") == []

    # borrow(borrowUntil, 1001): the app's string, typically Date.toISOString() (milliseconds, Z); no client fields.
    until = (api.clock.now() + timedelta(hours=24)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    status, body = await raw(api, "POST", "/api/v4/borrow", node(borrowed_until=until, license_id=1001))
    assert status == 200 and body["is_borrowed"] is True and body["borrowed_until"].startswith(until[:19]), body

    # unregisterUser("cad-user", 1001), then floatingUnregisterAll(): GET, JSON Content-Type, no body.
    status, body = await raw(api, "POST", "/api/v4/unregister", node(user="cad-user", license_id=1001))
    assert status == 200 and await held_users(api) == {NODE_HWID}, body
    assert (await raw(api, "GET", "/api/v4/unregister/all"))[0] == 200
    assert await held_users(api) == set()


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
    # resty (v2.7.0) given a nil body sends none: Content-Type application/json, no bytes.
    assert (await raw(api, "POST", "/api/v4/floating/unregister/all"))[0] == 200
    assert await held_users(api) == set()
    # Go's AddConsumption names no quantity: refused as LicenseSpring's API refuses it, changing nothing.
    status, body = await raw(api, "POST", "/api/v4/floating/add_consumption", '{"Product":"demo"}')
    assert status == 400 and body["code"] == "missing_parameters", body
