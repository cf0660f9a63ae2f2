"""Any change of a user's password ends the user's other sessions: every other token is revoked at once, on
every path (own change, admin reset, the `floatsrv user` commands, a new password for a declared user at
start or reload). The caller of an own change keeps working and gets a fresh token in the reply."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from floatsrv.auth.passwords import hash_password
from tests.conftest import Api, make_config, start_api


async def works(api: Api, token: str) -> int:
    return (await api.get("/v1/me", token=token))[0]


async def local_user(api: Api, admin: str, name: str, password: str) -> None:
    status, body = await api.post("/v1/users", {"username": name, "role": "user", "password": password}, token=admin)
    assert status == 200, body
    first = await api.login(name, password)
    status, body = await api.post(
        "/v1/me/password", {"current_password": password, "new_password": password + "-2"}, token=first
    )
    assert status == 200, body


async def test_own_change_revokes_every_other_token_and_hands_a_fresh_one(api: Api) -> None:
    admin = await api.login("admin", "admin-password")
    await local_user(api, admin, "ann", "anns-password")
    here, elsewhere = await api.login("ann", "anns-password-2"), await api.login("ann", "anns-password-2")
    status, body = await api.post(
        "/v1/me/password", {"current_password": "anns-password-2", "new_password": "anns-password-3"}, token=here
    )
    assert status == 200 and body["data"]["tokens_revoked"] >= 2, body
    fresh = body["data"]["token"]
    assert await works(api, elsewhere) == 401  # the other session must log in again
    assert await works(api, here) == 200 and await works(api, fresh) == 200
    status, body = await api.get("/v1/tokens", token=admin, params={"username": "ann"})
    live = {t["id"] for t in body["data"]["data"] if t["revoked_at"] is None}
    assert len(live) == 2


async def test_admin_reset_and_cli_revoke_every_token(api: Api) -> None:
    admin = await api.login("admin", "admin-password")
    await local_user(api, admin, "bob", "bobs-password")
    tokens = [await api.login("bob", "bobs-password-2") for _ in range(2)]
    status, body = await api.post("/v1/users/bob/password", {"password": "bobs-reset-password"}, token=admin)
    assert status == 200, body
    assert [await works(api, token) for token in tokens] == [401, 401]

    tokens = [await api.login("bob", "bobs-reset-password") for _ in range(2)]
    result = await api.cli("user", "passwd", "bob", "--password-stdin", stdin="bobs-cli-password\n")
    assert result.returncode == 0, result.stderr
    assert [await works(api, token) for token in tokens] == [401, 401]


async def test_a_new_password_for_a_declared_user_revokes_its_tokens(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    api, client = await start_api(config)
    try:
        tokens = [await api.login("demo", "demo-password") for _ in range(2)]
        clock = api.clock
    finally:
        await client.close()

    def new_hash(data: dict[str, Any]) -> None:
        demo = next(u for u in data["auth"]["users"] if u["username"] == "demo")
        demo.pop("password")
        demo["password_hash"] = hash_password("demos-new-password", n=2**10)

    api, client = await start_api(make_config(tmp_path, new_hash), clock)
    try:
        assert [await works(api, token) for token in tokens] == [401, 401]
        assert await works(api, await api.login("demo", "demos-new-password")) == 200
    finally:
        await client.close()
