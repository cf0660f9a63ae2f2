"""Bad input gets a 4xx JSON error with a stable code, in the surface's shape, and changes nothing."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from tests.conftest import Api

REGISTER = "/api/v4/register"


async def assert_nothing_changed(api: Api) -> None:
    assert await api.seats(state="all") == []
    assert (await api.license())["consumption"]["total"] == "0"


@pytest.mark.parametrize(
    ("path", "raw", "code"),
    [
        (REGISTER, b"{not json", "invalid_json"),
        (REGISTER, b"", "invalid_json"),
        (REGISTER, b"[1, 2]", "invalid_json"),
        (REGISTER, b'"just a string"', "invalid_json"),
        (REGISTER, b'{"product": "demo", "user": "a", "user": "b"}', "invalid_json"),  # duplicate key
        (REGISTER, b'{"product": "demo", "user": "\xff\xfe"}', "invalid_json"),  # not UTF-8
        ("/api/v4/add_consumption", b'{"product": "demo", "consumptions": NaN}', "invalid_json"),
        ("/api/v4/add_consumption", b'{"product": "demo", "consumptions": Infinity}', "invalid_json"),
        ("/api/v4/add_consumption", b'{"product": "demo", "consumptions": 1' + b"0" * 5000 + b"}", "invalid_json"),
        (REGISTER, b"[" * 20_000 + b"]" * 20_000, "invalid_json"),  # nested too deeply
    ],
)
async def test_malformed_bodies(api: Api, path: str, raw: bytes, code: str) -> None:
    status, body = await api.post(path, None, raw=raw)
    assert (status, body["code"]) == (400, code), body  # each is under server.max_body_bytes: never a 413
    assert set(body) == {"status", "code", "message"} and body["status"] == status
    await assert_nothing_changed(api)


@pytest.mark.parametrize(
    ("path", "body", "code"),
    [
        (REGISTER, {"user": "a"}, "missing_parameters"),
        (REGISTER, {"product": "demo"}, "missing_parameters"),
        (REGISTER, {}, "missing_parameters"),
        (REGISTER, {"product": 7, "user": "a"}, "validation_error"),
        (REGISTER, {"product": "demo", "user": ["a"]}, "validation_error"),
        (REGISTER, {"product": "demo", "user": ""}, "validation_error"),
        (REGISTER, {"product": "demo", "user": "x" * 10_000}, "validation_error"),
        (REGISTER, {"product": "demo", "user": "a\u0000b"}, "validation_error"),
        (REGISTER, {"product": "demo", "user": "a", "license_id": "abc"}, "validation_error"),
        (REGISTER, {"product": "demo", "user": "a", "license_id": -5}, "validation_error"),
        (REGISTER, {"product": "demo", "user": "a", "license_id": 1.5}, "validation_error"),
        (REGISTER, {"product": "demo", "user": "a", "license_id": True}, "validation_error"),
        (REGISTER, {"product": "nope", "user": "a"}, "unknown_product"),
        (REGISTER, {"product": "'; DROP TABLE seats; --", "user": "a"}, "unknown_product"),
        (REGISTER, {"product": "demo", "user": "a", "license_id": 4242}, "license_not_found"),
        ("/api/v4/borrow", {"product": "demo", "user": "a", "borrowed_until": "next tuesday"}, "validation_error"),
        ("/api/v4/borrow", {"product": "demo", "user": "a", "borrowed_until": 12}, "validation_error"),
        ("/api/v4/add_consumption", {"product": "demo", "user": "a"}, "missing_parameters"),
        ("/api/v4/add_consumption", {"product": "demo", "consumptions": "2.5"}, "validation_error"),
        ("/api/v4/add_consumption", {"product": "demo", "consumptions": 2.5}, "validation_error"),
        ("/api/v4/add_consumption", {"product": "demo", "consumptions": "1e3"}, "validation_error"),
        ("/api/v4/add_consumption", {"product": "demo", "consumptions": 10**12}, "validation_error"),
        ("/api/v4/add_consumption", {"product": "demo", "consumptions": {"n": 1}}, "validation_error"),
        (
            "/api/v4/add_consumption",
            {"product": "demo", "consumptions": 1, "allow_overages": "maybe"},
            "validation_error",
        ),
        ("/api/v4/add_feature_consumption", {"product": "demo", "consumptions": 1}, "missing_parameters"),
        (
            "/api/v4/add_feature_consumption",
            {"product": "demo", "feature": "ghost", "consumptions": 1},
            "unsupported_product_feature",
        ),
        (
            "/api/v4/featureRegister",
            {"product": "demo", "user": "a", "feature": "ghost"},
            "unsupported_product_feature",
        ),
        ("/api/v4/featureRelease", {"product": "demo", "user": "a"}, "missing_parameters"),
    ],
)
async def test_invalid_fields(api: Api, path: str, body: dict[str, Any], code: str) -> None:
    status, reply = await api.post(path, body)
    assert (status, reply["code"]) == (400, code), reply
    assert isinstance(reply["message"], str) and reply["message"]
    await assert_nothing_changed(api)


async def test_numbers_and_booleans_as_strings_are_accepted(api: Api) -> None:
    status, body = await api.post(REGISTER, {"product": "demo", "user": "a", "license_id": "1001"})
    assert status == 200, body
    status, body = await api.post(
        "/api/v4/add_consumption",
        {
            "product": "demo",
            "user": "a",
            "consumptions": " 3 ",
            "allow_overages": "true",
            "max_overages": "10",
        },
    )
    assert status == 200 and body["total_consumptions"] == 3


async def test_zero_time_means_not_borrowed(api: Api) -> None:
    status, body = await api.post(
        REGISTER,
        {
            "product": "demo",
            "user": "a",
            "registered_at": "2026-01-15T12:00:00+01:00",
            "borrowed_until": "0001-01-01T00:00:00Z",
        },
    )
    assert status == 200 and body["borrowed_until"] is None and body["is_borrowed"] is False


async def test_wrong_content_type_and_oversized_body(api: Api) -> None:
    status, body = await api.post(
        REGISTER, None, raw=b"product=demo&user=a", headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert (status, body["code"]) == (415, "unsupported_media_type")
    big = b'{"product": "demo", "user": "a", "pad": "' + b"x" * 70_000 + b'"}'
    status, body = await api.post(REGISTER, None, raw=big)
    assert (status, body["code"]) == (413, "payload_too_large")
    await assert_nothing_changed(api)


def body_limit_2k(data: dict[str, Any]) -> None:
    data["server"]["max_body_bytes"] = 2048


def register_body(user: str, size: int) -> bytes:
    """A valid registration of exactly `size` bytes, padded with a field /api/v4 ignores (unknown fields are)."""
    head, tail = b'{"product": "demo", "user": "' + user.encode() + b'", "pad": "', b'"}'
    raw = head + b"h" * (size - len(head) - len(tail)) + tail
    assert len(raw) == size
    return raw


def usage_events(prefix: str, count: int) -> dict[str, Any]:
    """A /v1 batch of `count` one-unit events on the demo license's `render` feature, ~290 bytes each."""
    return {
        "events": [
            {"event_id": f"{prefix}-{i}", "product": "demo", "feature": "render", "quantity": 1, "user": "u" * 200}
            for i in range(count)
        ]
    }


async def render_total(api: Api) -> str:
    [render] = [f for f in (await api.license())["features"] if f["code"] == "render"]
    total: str = render["consumption"]["total"]
    return total


async def test_configured_body_limit(api_factory: Any) -> None:
    api: Api = await api_factory(body_limit_2k)
    assert api.config.server.max_body_bytes == 2048
    refused = [
        ("/api/v4/register", register_body("over-by-one", 2049)),
        ("/api/v4/register", register_body("three-kb", 3000)),
        (
            "/api/v4/add_consumption",
            b'{"product": "demo", "consumptions": 5, "pad": "' + b"p" * 3000 + b'"}',
        ),
    ]
    for path, raw in refused:
        status, body = await api.post(path, None, raw=raw)
        assert (status, body.get("code")) == (413, "payload_too_large"), (path, len(raw), body)
        assert body["status"] == 413 and "2048" in body["message"]
    v1 = orjson.dumps(usage_events("big", 10))
    assert 2800 < len(v1) < 3200
    status, body = await api.post("/v1/usage/events", None, raw=v1)
    assert status == 413 and body["success"] is False, body  # the native envelope
    assert body["error"]["code"] == "payload_too_large"
    await assert_nothing_changed(api)
    assert await render_total(api) == "0"

    # At or under the limit: accepted, on both surfaces.
    for user, size in (("at-limit", 2048), ("small", 1500)):
        status, body = await api.post("/api/v4/register", None, raw=register_body(user, size))
        assert status == 200, (size, body)
    assert sorted(seat["user"] for seat in await api.seats()) == ["at-limit", "small"]
    v1 = orjson.dumps(usage_events("ok", 5))
    assert 1300 < len(v1) < 1600
    status, body = await api.post("/v1/usage/events", None, raw=v1)
    assert status == 200 and body["success"] is True, body
    assert await render_total(api) == "5"


async def test_unicode_user_names_are_fine(api: Api) -> None:
    status, body = await api.register("Zoë-ワークステーション-🖥")
    assert status == 200, body
    [seat] = await api.seats()
    assert seat["user"] == "Zoë-ワークステーション-🖥"


async def test_routing_errors_are_json(api: Api) -> None:
    status, body = await api.get("/api/v5/ping")
    assert (status, body["code"]) == (404, "not_found")  # never "pong": the SDK would switch to v5
    status, body = await api.get("/api/v4/register")
    assert (status, body["code"]) == (405, "method_not_allowed")
    status, body = await api.get("/v1/nothing-here")
    assert status == 404 and body["success"] is False and body["error"]["code"] == "not_found"


async def test_native_errors_use_the_native_envelope(api: Api) -> None:
    status, body = await api.get("/v1/licenses/77")
    assert status == 404
    assert body["success"] is False
    assert set(body["error"]) == {"type", "code", "message", "param", "details", "doc_url"}
    assert body["error"]["code"] == "license_not_found"
    status, body = await api.get("/v1/seats", params={"limit": "0"})
    assert (status, body["error"]["code"], body["error"]["param"]) == (400, "validation_error", "limit")
    status, body = await api.get("/v1/seats", params={"colour": "red"})
    assert (status, body["error"]["code"]) == (400, "validation_error")
