"""Revocation is immediate: a revoked token, a user's tokens, a rotated key or a revoked API key fail on
the very next request, whether revoked through the admin API or by the CLI from another process."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import jwt

from tests.conftest import Api


def jti(token: str) -> str:
    return str(jwt.decode(token, options={"verify_signature": False})["jti"])


async def works(api: Api, token: str) -> int:
    # A read any login may make (a register would meet seat ownership: each login its own seats).
    return (await api.get("/api/v4/license", token=token))[0]


async def test_revoke_one_token(api: Api) -> None:
    admin = await api.login("admin", "admin-password")
    first, second = await api.login(), await api.login()
    status, body = await api.get("/v1/tokens", token=admin, params={"username": "demo"})
    assert {t["id"] for t in body["data"]["data"]} >= {jti(first), jti(second)}
    async with api.client.delete(f"/v1/tokens/{jti(first)}", headers={"Authorization": f"Bearer {admin}"}) as resp:
        assert resp.status == 200
    status, body = await api.post("/api/v4/register", {"product": "demo", "user": "r"}, token=first)
    assert (status, body["code"]) == (401, "invalid_token") and "revoked" in body["message"]
    assert await works(api, second) == 200
    async with api.client.delete(f"/v1/tokens/{jti(first)}", headers={"Authorization": f"Bearer {admin}"}) as resp:
        assert resp.status == 404  # already revoked


async def test_revoke_all_of_a_users_tokens(api: Api) -> None:
    admin = await api.login("admin", "admin-password")
    tokens = [await api.login() for _ in range(3)]
    status, body = await api.post("/v1/users/demo/revoke-tokens", {}, token=admin)
    assert status == 200 and body["data"]["revoked"] == 4  # the fixture's login too
    for token in tokens:
        assert await works(api, token) == 401
    assert await works(api, admin) == 200
    assert await works(api, await api.login()) == 200  # logging in again is fine


async def test_rotating_the_signing_key_invalidates_every_token(api: Api) -> None:
    admin = await api.login("admin", "admin-password")
    user = await api.login()
    status, body = await api.post("/v1/signing-key/rotate", {}, token=admin)
    assert status == 200 and body["data"]["generation"] == 2
    assert await works(api, user) == 401
    assert await works(api, admin) == 401
    fresh = await api.login()
    assert await works(api, fresh) == 200
    assert api.config.token_key_path.stat().st_mode & 0o777 == 0o600


async def test_api_keys(api: Api) -> None:
    admin = await api.login("admin", "admin-password")
    status, body = await api.post("/v1/api-keys", {"name": "render-farm", "role": "user"}, token=admin)
    assert status == 200
    key, key_id = body["data"]["key"], body["data"]["id"]
    assert key.startswith("fsk_")
    status, listing = await api.get("/v1/api-keys", token=admin)
    assert "key" not in listing["data"]["data"][0] and key not in str(listing)  # shown once only
    assert await works(api, key) == 200
    assert (await api.post("/api/v4/register", {"product": "demo", "user": "r-key"}, token=key))[0] == 200
    [seat] = [s for s in await api.seats() if s["user"] == "r-key"]
    assert seat["principal"] == "apikey:render-farm"
    status, body = await api.post("/v1/api-keys", {"name": "render-farm"}, token=admin)
    assert (status, body["error"]["code"]) == (409, "api_key_exists")

    _, body = await api.post("/v1/api-keys", {"name": "dashboard", "role": "viewer"}, token=admin)
    viewer_key = body["data"]["key"]
    assert (await api.get("/v1/licenses", token=viewer_key))[0] == 200
    assert (await api.post("/api/v4/register", {"product": "demo", "user": "v"}, token=viewer_key))[0] == 403

    async with api.client.delete(f"/v1/api-keys/{key_id}", headers={"Authorization": f"Bearer {admin}"}) as resp:
        assert resp.status == 200
    status, body = await api.post("/api/v4/register", {"product": "demo", "user": "r"}, token=key)
    assert (status, body["code"]) == (401, "invalid_token")
    tampered = key[:-1] + ("A" if key[-1] != "A" else "B")
    assert await works(api, tampered) == 401


async def test_cli_revocation_reaches_the_running_server_on_the_next_request(api: Api) -> None:
    token = api.token or ""
    assert await works(api, token) == 200
    listed = await api.cli("token", "list", "--user", "demo", "--json")
    assert listed.returncode == 0, listed.stderr
    assert jti(token) in listed.stdout
    result = await api.cli("token", "revoke", jti(token))
    assert result.returncode == 0, result.stderr
    assert await works(api, token) == 401

    created = await api.cli("apikey", "create", "ci-runner", "--role", "user")
    key = created.stdout.strip().splitlines()[-1].split()[-1]
    assert await works(api, key) == 200
    key_id = key.split("_")[1]
    assert (await api.cli("apikey", "revoke", key_id)).returncode == 0
    assert await works(api, key) == 401

    fresh = await api.login()
    assert (await api.cli("token", "rotate-key")).returncode == 0
    assert await works(api, fresh) == 401


def stored_bytes(api: Api) -> bytes:
    """Every byte the server keeps on disk: floatsrv.db, its -wal and -shm, and anything else in the data dir."""
    data_dir = Path(api.config.storage.data_dir)
    files = sorted(p for p in data_dir.rglob("*") if p.is_file())
    assert api.config.db_path in files and Path(f"{api.config.db_path}-wal") in files
    return b"".join(p.read_bytes() for p in files)


async def test_api_keys_are_stored_hashed(api: Api) -> None:
    admin = await api.login("admin", "admin-password")
    status, body = await api.post("/v1/api-keys", {"name": "render-farm", "role": "user"}, token=admin)
    assert status == 200, body
    from_api = body["data"]["key"]
    from_cli = (await api.cli("apikey", "create", "ci-runner")).stdout.strip().splitlines()[-1].split()[-1]
    assert await works(api, from_api) == 200 and await works(api, from_cli) == 200  # both are live keys
    on_disk = stored_bytes(api)
    for key in (from_api, from_cli):
        key_id, secret = key.removeprefix("fsk_").split("_", 1)
        assert key.encode() not in on_disk and secret.encode() not in on_disk
        assert key_id.encode() in on_disk  # the public id is stored, so this scan does see the rows
        assert hashlib.sha256(secret.encode()).digest() in on_disk  # ... and the secret only as its hash


async def test_cli_apikey_list_shows_keys_without_their_secret(api: Api) -> None:
    created = await api.cli("apikey", "create", "nightly", "--role", "viewer")
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip().splitlines()[-1].split()[-1]
    key_id = key.split("_")[1]
    admin = await api.login("admin", "admin-password")
    _, body = await api.post("/v1/api-keys", {"name": "dashboard", "role": "user"}, token=admin)
    other = body["data"]["key"]

    listed = await api.cli("apikey", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = {r["name"]: r for r in json.loads(listed.stdout)}
    assert set(rows) == {"nightly", "dashboard"}
    assert (rows["nightly"]["id"], rows["nightly"]["role"], rows["nightly"]["revoked_at"]) == (key_id, "viewer", None)
    assert rows["nightly"]["created_by"].startswith("cli:") and rows["dashboard"]["created_by"] == "admin"
    assert set(rows["nightly"]) == {"id", "name", "role", "created_at", "created_by", "revoked_at"}
    table = (await api.cli("apikey", "list")).stdout
    assert table.splitlines()[0].split() == ["ID", "NAME", "ROLE", "CREATED_AT", "CREATED_BY", "REVOKED_AT"]
    assert key_id in table
    for secret in (key.split("_", 2)[2], other.split("_", 2)[2]):
        assert secret not in listed.stdout and secret not in table

    assert (await api.cli("apikey", "revoke", key_id)).returncode == 0
    rows = {r["name"]: r for r in json.loads((await api.cli("apikey", "list", "--json")).stdout)}
    assert rows["nightly"]["revoked_at"] is not None and rows["dashboard"]["revoked_at"] is None
    assert (await api.get("/v1/licenses", token=key))[0] == 401


async def test_cli_revoke_user_reaches_the_running_server_on_the_next_request(api: Api) -> None:
    demo_tokens = [api.token or "", await api.login()]
    admin = await api.login("admin", "admin-password")
    for token in (*demo_tokens, admin):
        assert await works(api, token) == 200
    result = await api.cli("token", "revoke-user", "demo")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "revoked 2 tokens of 'demo'"
    for token in demo_tokens:
        status, body = await api.post("/api/v4/register", {"product": "demo", "user": "r"}, token=token)
        assert (status, body["code"]) == (401, "invalid_token")
    assert await works(api, admin) == 200  # another user's token is untouched
    assert await works(api, await api.login()) == 200  # and demo may log in again
    status, body = await api.get("/v1/audit", token=admin, params={"action": "user_tokens_revoked"})
    [row] = body["data"]["data"]
    assert row["target"] == "demo" and row["actor"].startswith("cli:")
    missing = await api.cli("token", "revoke-user", "nobody")
    assert missing.returncode == 1 and "user_not_found" in missing.stderr
