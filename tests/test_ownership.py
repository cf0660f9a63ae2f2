"""A live seat belongs to the login that took it: another (non-admin) login cannot renew, borrow, release or
end it, on any surface; a shared login used by every app install keeps working; admins may act on any seat;
with authentication off there is no ownership."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from floatsrv.auth.passwords import hash_password
from tests.conftest import Api
from tests.test_v5_api import V5, chain, v5_api

__all__ = ["chain"]  # the fixture: a certificate chain for /api/v5's signed replies

OWNED = {"status": 403, "code": "seat_owned_by_another_login"}


def with_second_login(data: dict[str, Any]) -> None:
    data["auth"]["users"].append(
        {"username": "other", "role": "user", "password_hash": hash_password("other-password", n=2**10)}
    )


@pytest.fixture
async def two(api_factory: Any) -> tuple[Api, str, str, str]:
    api: Api = await api_factory(with_second_login, login=False)
    first = await api.login("demo", "demo-password")
    second = await api.login("other", "other-password")
    admin = await api.login("admin", "admin-password")
    assert (await api.post("/api/v4/register", {"product": "demo", "user": "ws-1"}, token=first))[0] == 200
    feature = {"product": "demo", "user": "ws-1", "feature": "export"}
    assert (await api.post("/api/v4/featureRegister", feature, token=first))[0] == 200
    return api, first, second, admin


def owned(answer: tuple[int, Any]) -> None:
    status, body = answer
    assert status == 403 and body == {**OWNED, "message": body["message"]}, answer


async def test_another_login_cannot_touch_the_seats(two: tuple[Api, str, str, str]) -> None:
    api, first, second, _ = two
    seat = {"product": "demo", "user": "ws-1"}
    feature = {**seat, "feature": "export"}
    owned(await api.post("/api/v4/register", seat, token=second))  # renew (the heartbeat) or take over
    owned(await api.post("/api/v4/borrow", seat, token=second))
    owned(await api.post("/api/v4/unregister", seat, token=second))
    owned(await api.post("/api/v4/featureRegister", feature, token=second))
    owned(await api.post("/api/v4/featureRelease", feature, token=second))
    owned(await api.post("/api/v4/feature_release", feature, token=second))
    owned(
        await api.post(
            "/api/v4/floating/feature_release", {**seat, "hardware_id": "ws-1", "feature": "export"}, token=second
        )
    )
    status, _ = await api.get("/api/v4/check_license_feature", token=second, params={**feature, "hardware_id": "ws-1"})
    assert status == 403
    # The bulk ends act on the caller's own seats only: nothing of the first login's ends.
    assert (await api.get("/api/v4/unregister/all", token=second))[0] == 200
    assert (await api.get("/api/v4/featureRelease/all", token=second))[0] == 200
    assert (await api.get("/api/v4/feature_release/all", token=second))[0] == 200
    held = {(s["user"], s["feature"]) for s in await api.seats(state="held")} if api.token else set()
    api.token = first
    held = {(s["user"], s["feature"]) for s in await api.seats()}
    assert held == {("ws-1", None), ("ws-1", "export")}
    # The owner goes on as before.
    assert (await api.post("/api/v4/register", seat, token=first))[0] == 200
    assert (await api.post("/api/v4/featureRelease", feature, token=first))[0] == 200
    assert (await api.post("/api/v4/unregister", seat, token=first))[0] == 200


async def test_an_admin_may_act_on_any_seat(two: tuple[Api, str, str, str]) -> None:
    api, first, _, admin = two
    assert (await api.post("/api/v4/borrow", {"product": "demo", "user": "ws-1"}, token=admin))[0] == 200
    assert (await api.get("/api/v4/unregister/all", token=admin))[0] == 200
    api.token = admin
    assert await api.seats() == []


async def test_a_shared_login_keeps_working(api: Api) -> None:
    """Every app install of a site uses the demo login: each renews and ends the seats it took."""
    for user in ("ws-1", "ws-2"):
        assert (await api.register(user))[0] == 200
    assert (await api.register("ws-1"))[0] == 200  # the heartbeat
    assert (await api.post("/api/v4/unregister", {"product": "demo", "user": "ws-2"}))[0] == 200
    assert (await api.get("/api/v4/unregister/all"))[0] == 200
    assert await api.seats() == []


async def test_without_authentication_there_is_no_ownership(api_factory: Any) -> None:
    api: Api = await api_factory(lambda d: d["auth"].update(enabled=False), login=False)
    assert (await api.register("ws-1"))[0] == 200
    assert (await api.post("/api/v4/unregister", {"product": "demo", "user": "ws-1"}))[0] == 200


async def test_the_sdk_sees_a_client_error_with_the_code(two: tuple[Api, str, str, str]) -> None:
    from licensespring.api.error import ClientError
    from licensespring.floating_server import FloatingAPIClient

    api, _, second, _ = two
    client = FloatingAPIClient(api_protocol="http", api_domain=f"{api.client.host}:{api.client.port}")
    client.bearer_token = second
    with pytest.raises(ClientError) as err:
        await __import__("asyncio").to_thread(client.register_user, product="demo", user="ws-1")
    assert err.value.code == "seat_owned_by_another_login"


async def test_another_login_cannot_touch_the_seats_on_api_v5(api_factory: Any, chain: tuple[Path, Path]) -> None:
    """The same rule on /api/v5 (signed replies; `username` is the seat's user, the license id is in the path)."""
    first = await v5_api(api_factory, chain, with_second_login)
    api = first.api
    second, admin = V5(api, first.key), V5(api, first.key)
    await first.login("demo", "demo-password")
    await second.login("other", "other-password")
    await admin.login("admin", "admin-password")
    seat = {"username": "ws-1"}
    feature = {**seat, "feature": "export"}
    assert (await first.call("POST", "/license/1001/user/register", seat))[0] == 200
    assert (await first.call("POST", "/license/1001/feature/register", feature))[0] == 200

    owned(await second.call("POST", "/license/1001/user/register", seat))  # renew (the heartbeat) or take over
    owned(await second.call("POST", "/license/1001/user/borrow", seat))
    owned(await second.call("POST", "/license/1001/user/unregister", seat))
    owned(await second.call("POST", "/license/1001/feature/register", feature))
    owned(await second.call("POST", "/license/1001/feature/release", feature))
    # The bulk ends act on the caller's own seats only: nothing of the first login's ends.
    assert await second.call("POST", "/license/1001/feature/release_all") == (200, "")
    assert await second.call("GET", "/unregister/all") == (200, "")
    assert (await second.call("POST", "/license/1001/user/unregister_all"))[1]["code"] == "forbidden"  # admin only
    api.token = admin.token
    assert {(s["user"], s["feature"], s["principal"]) for s in await api.seats()} == {
        ("ws-1", None, "demo"),
        ("ws-1", "export", "demo"),
    }
    # The owner goes on as before; an admin may act on any seat.
    assert (await first.call("POST", "/license/1001/user/register", seat))[0] == 200
    assert await first.call("POST", "/license/1001/feature/release", feature) == (200, "feature_released")
    assert (await admin.call("POST", "/license/1001/user/borrow", seat))[0] == 200
    assert await admin.call("POST", "/license/1001/user/unregister", seat) == (200, "user_unregistered")
    assert await api.seats() == []


async def test_an_api_key_is_a_login_of_its_own(two: tuple[Api, str, str, str]) -> None:
    """A seat taken with an API key belongs to the key (`apikey:NAME`), not to the admin who made the key (a key
    has no user account; `created_by` only says who made it): a user login cannot end or borrow it, nor can
    another key from the same admin; an admin can."""
    api, first, _, admin = two
    keys = []
    for name in ("site-app", "other-app"):
        status, body = await api.post("/v1/api-keys", {"name": name, "role": "user"}, token=admin)
        assert status == 200 and body["data"]["created_by"] == "admin", body
        keys.append(body["data"]["key"])
    key, other_key = keys
    seat = {"product": "demo", "user": "ws-key"}
    feature = {**seat, "feature": "export"}
    assert (await api.post("/api/v4/register", seat, token=key))[0] == 200
    assert (await api.post("/api/v4/featureRegister", feature, token=key))[0] == 200
    api.token = admin
    assert {s["principal"] for s in await api.seats(user="ws-key")} == {"apikey:site-app"}

    for token in (first, other_key):  # a user login; another key of the same admin
        owned(await api.post("/api/v4/register", seat, token=token))
        owned(await api.post("/api/v4/borrow", seat, token=token))
        owned(await api.post("/api/v4/unregister", seat, token=token))
        owned(await api.post("/api/v4/featureRelease", feature, token=token))
        assert (await api.get("/api/v4/unregister/all", token=token))[0] == 200  # its own seats only
    assert {(s["user"], s["feature"]) for s in await api.seats(user="ws-key")} == {
        ("ws-key", None),
        ("ws-key", "export"),
    }
    assert (await api.post("/api/v4/register", seat, token=key))[0] == 200  # the key's own heartbeat

    assert (await api.post("/api/v4/borrow", seat, token=admin))[0] == 200
    assert (await api.post("/api/v4/featureRelease", feature, token=admin))[0] == 200
    assert (await api.post("/api/v4/unregister", seat, token=admin))[0] == 200
    assert await api.seats(user="ws-key") == []
