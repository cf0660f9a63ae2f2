"""User management: temporary passwords that must be changed, roles and disabling that apply at once,
declared users (config/env) that only their file can change."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.conftest import Api, make_config, start_api


async def admin_api(api: Api) -> str:
    return await api.login("admin", "admin-password")


async def test_new_user_must_change_the_temporary_password_first(api: Api) -> None:
    admin = await admin_api(api)
    status, body = await api.post("/v1/users", {"username": "carol", "role": "user"}, token=admin)
    assert status == 200, body
    temporary = body["data"]["temporary_password"]
    assert body["data"]["password_change_required"] is True

    token = await api.login("carol", temporary)
    status, body = await api.post("/api/v4/register", {"product": "demo", "user": "c1"}, token=token)
    assert (status, body["code"]) == (403, "password_change_required")
    status, body = await api.get("/v1/me", token=token)
    assert status == 200 and body["data"]["password_change_required"] is True

    status, body = await api.post(
        "/v1/me/password", {"current_password": "nope", "new_password": "x" * 12}, token=token
    )
    assert (status, body["error"]["code"]) == (400, "invalid_current_password")
    status, body = await api.post(
        "/v1/me/password", {"current_password": temporary, "new_password": "short"}, token=token
    )
    assert (status, body["error"]["code"]) == (400, "weak_password")
    status, body = await api.post(
        "/v1/me/password", {"current_password": temporary, "new_password": "carols-new-secret"}, token=token
    )
    assert status == 200, body
    # The same token works now; the new password logs in; the temporary one no longer does.
    assert (await api.post("/api/v4/register", {"product": "demo", "user": "c1"}, token=token))[0] == 200
    assert await api.login("carol", "carols-new-secret")
    async with api.client.get("/auth", headers={"Authorization": _basic("carol", temporary)}) as resp:
        assert resp.status == 401


def _basic(username: str, password: str) -> str:
    from tests.conftest import basic

    return basic(username, password)


async def test_admin_can_set_the_initial_password_and_reset_it(api: Api) -> None:
    admin = await admin_api(api)
    status, body = await api.post(
        "/v1/users", {"username": "dave", "role": "viewer", "password": "daves-initial-pw"}, token=admin
    )
    assert status == 200 and "temporary_password" not in body["data"]
    token = await api.login("dave", "daves-initial-pw")
    assert (await api.get("/v1/licenses", token=token))[0] == 403  # must change first, even for reads
    status, body = await api.post("/v1/users/dave/password", {}, token=admin)
    temporary = body["data"]["temporary_password"]
    assert (await api.get("/v1/me", token=token))[0] == 401  # a reset revokes existing tokens
    assert await api.login("dave", temporary)


async def test_role_change_and_disable_apply_on_the_next_request(api: Api) -> None:
    admin = await admin_api(api)
    await api.post("/v1/users", {"username": "erin", "role": "user", "password": "erins-password1"}, token=admin)
    token = await api.login("erin", "erins-password1")
    await api.post(
        "/v1/me/password", {"current_password": "erins-password1", "new_password": "erins-password2"}, token=token
    )
    assert (await api.post("/api/v4/register", {"product": "demo", "user": "e"}, token=token))[0] == 200

    status, body = await _patch(api, "/v1/users/erin", {"role": "viewer"}, admin)
    assert status == 200 and body["data"]["role"] == "viewer"
    status, body = await api.post("/api/v4/register", {"product": "demo", "user": "e"}, token=token)
    assert (status, body["code"]) == (403, "forbidden")
    assert (await api.get("/v1/licenses", token=token))[0] == 200

    await _patch(api, "/v1/users/erin", {"disabled": True}, admin)
    status, body = await api.get("/v1/licenses", token=token)
    assert (status, body["error"]["code"]) == (401, "invalid_token")
    async with api.client.get("/auth", headers={"Authorization": _basic("erin", "erins-password2")}) as resp:
        assert resp.status == 401


async def _patch(api: Api, path: str, body: dict[str, Any], token: str) -> tuple[int, Any]:
    async with api.client.patch(path, json=body, headers={"Authorization": f"Bearer {token}"}) as resp:
        return resp.status, await resp.json()


async def test_delete_user(api: Api) -> None:
    admin = await admin_api(api)
    await api.post("/v1/users", {"username": "fred", "password": "freds-password"}, token=admin)
    token = await api.login("fred", "freds-password")
    async with api.client.delete("/v1/users/fred", headers={"Authorization": f"Bearer {admin}"}) as resp:
        assert resp.status == 200
    assert (await api.get("/v1/me", token=token))[0] == 401
    status, body = await api.get("/v1/users/fred", token=admin)
    assert (status, body["error"]["code"]) == (404, "user_not_found")


async def test_user_errors(api: Api) -> None:
    admin = await admin_api(api)
    status, body = await api.post("/v1/users", {"username": "demo"}, token=admin)
    assert (status, body["error"]["code"]) == (409, "user_exists")
    status, body = await api.post("/v1/users/demo/password", {}, token=admin)
    assert (status, body["error"]["code"]) == (409, "user_managed_by_config")
    status, body = await _patch(api, "/v1/users/admin", {"role": "viewer"}, admin)
    assert (status, body["error"]["code"]) == (409, "user_managed_by_config")
    status, body = await api.post("/v1/users", {"username": "bad name"}, token=admin)
    assert (status, body["error"]["code"]) == (400, "validation_error")
    status, body = await api.post("/v1/users", {"username": "gina", "role": "root"}, token=admin)
    assert (status, body["error"]["code"]) == (400, "validation_error")
    status, body = await api.post("/v1/users", {"username": "hank", "password": "hank"}, token=admin)
    assert (status, body["error"]["code"]) == (400, "weak_password")
    # Declared users cannot change their password through the API either: the config owns it.
    demo = await api.login("demo", "demo-password")
    status, body = await api.post(
        "/v1/me/password", {"current_password": "demo-password", "new_password": "something-longer"}, token=demo
    )
    assert (status, body["error"]["code"]) == (409, "user_managed_by_config")


async def test_declared_users_follow_the_config_and_environment(tmp_path: Path) -> None:
    env = {"FLOATSRV_ADMIN_USERNAME": "root", "FLOATSRV_ADMIN_PASSWORD": "root-bootstrap-pw"}
    config = make_config(tmp_path)
    api, client = await start_api(config, environ=env)
    try:
        admin = await api.login("root", "root-bootstrap-pw")
        status, body = await api.get("/v1/users", token=admin)
        sources = {u["username"]: (u["source"], u["role"], u["password_change_required"]) for u in body["data"]["data"]}
        assert sources == {
            "admin": ("config", "admin", False),
            "demo": ("config", "user", False),
            "root": ("env", "admin", False),
        }
    finally:
        await client.close()

    def drop_demo(data: dict[str, Any]) -> None:
        data["auth"]["users"] = [u for u in data["auth"]["users"] if u["username"] != "demo"]

    api2, client = await start_api(make_config(tmp_path, drop_demo), api.clock, environ={})
    try:
        admin = await api2.login("admin", "admin-password")
        status, body = await api2.get("/v1/users", token=admin)
        assert [u["username"] for u in body["data"]["data"]] == ["admin"]  # demo and the env admin are gone
        async with api2.client.get("/auth", headers={"Authorization": _basic("demo", "demo-password")}) as resp:
            assert resp.status == 401
    finally:
        await client.close()


def temporary_of(output: str) -> str:
    return output.strip().splitlines()[-1].split()[-1]


async def test_user_commands_against_a_running_server(api: Api) -> None:
    import json

    added = await api.cli("user", "add", "lee", "--role", "user")
    assert added.returncode == 0, added.stderr
    token = await api.login("lee", temporary_of(added.stdout))
    assert (await api.get("/v1/licenses", token=token))[1]["error"]["code"] == "password_change_required"

    reset = await api.cli("user", "passwd", "lee")
    assert reset.returncode == 0
    assert (await api.get("/v1/me", token=token))[0] == 401  # the reset revoked the old session
    token = await api.login("lee", temporary_of(reset.stdout))
    await api.post(
        "/v1/me/password",
        {"current_password": temporary_of(reset.stdout), "new_password": "lees-own-password"},
        token=token,
    )
    assert (await api.get("/v1/licenses", token=token))[0] == 200

    assert (await api.cli("user", "set", "lee", "--role", "viewer")).returncode == 0
    assert (await api.post("/api/v4/register", {"product": "demo", "user": "l"}, token=token))[0] == 403

    listed = json.loads((await api.cli("user", "list", "--json")).stdout)
    assert {u["username"]: (u["role"], u["source"]) for u in listed} == {
        "admin": ("admin", "config"),
        "demo": ("user", "config"),
        "lee": ("viewer", "local"),
    }
    assert (await api.cli("user", "passwd", "demo")).stderr.startswith("floatsrv: user_managed_by_config")
    missing = await api.cli("user", "rm", "nobody")
    assert missing.returncode == 1 and "user_not_found" in missing.stderr

    assert (await api.cli("user", "rm", "lee")).returncode == 0
    assert (await api.get("/v1/me", token=token))[0] == 401

    chosen = await api.cli("user", "add", "mia", "--password-stdin", stdin="mias-chosen-password\n")
    assert chosen.returncode == 0 and "temporary password" not in chosen.stdout
    assert await api.login("mia", "mias-chosen-password")
