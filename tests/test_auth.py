"""Login and bearer tokens: only tokens this server issued, for users it knows, are accepted."""

from __future__ import annotations

import base64
import json
import warnings
from datetime import timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest

from tests.conftest import Api, basic


def server_key(api: Api) -> bytes:
    return api.config.token_key_path.read_bytes()


def claims(api: Api, **overrides: Any) -> dict[str, Any]:
    """The claims of the logged-in token (a jti the server really issued), with some changed."""
    assert api.token
    base: dict[str, Any] = jwt.decode(api.token, options={"verify_signature": False})
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def hs512(payload: dict[str, Any], key: bytes) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PyJWT rightly warns that 32 bytes is short for HS512
        return jwt.encode(payload, key, algorithm="HS512")


async def register_with(api: Api, token: str) -> tuple[int, Any]:
    return await api.post("/api/v4/register", {"product": "demo", "user": "x"}, token=token)


async def test_login_returns_a_working_token(api: Api) -> None:
    token = await api.login("admin", "admin-password")
    header = jwt.get_unverified_header(token)
    payload = jwt.decode(token, options={"verify_signature": False})
    assert header["alg"] == "HS256"
    assert {"sub", "role", "iat", "exp", "jti", "iss", "aud"} <= set(payload)
    assert (payload["sub"], payload["role"]) == ("admin", "admin")
    assert payload["exp"] - payload["iat"] == 365 * 86400  # the default lifetime
    assert (await register_with(api, token))[0] == 200


def test_signing_key_file_is_private(api: Api) -> None:
    assert api.config.token_key_path.stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize(
    "header", ["", "Basic", "Basic !!!", "Bearer abc", basic("demo", "wrong"), basic("nobody", "demo-password")]
)
async def test_bad_logins_get_401_json(api: Api, header: str) -> None:
    async with api.client.get("/auth", headers={"Authorization": header} if header else {}) as resp:
        assert resp.status == 401
        body = await resp.json()
    assert body["code"] == "unauthorized" and body["status"] == 401


async def test_token_table(api: Api) -> None:
    key = server_key(api)
    now = int(api.clock.now().timestamp())
    good = jwt.encode(claims(api), key, algorithm="HS256")  # re-signed by us: still accepted
    header, _, signature = good.split(".")
    cases = {
        "alg none": jwt.encode(claims(api), None, algorithm="none"),  # type: ignore[arg-type]
        "other server's key": jwt.encode(claims(api), b"k" * 32, algorithm="HS256"),
        "tampered payload": f"{header}.{b64(claims(api, role='admin', sub='admin'))}.{signature}",
        "HS512 with our key": hs512(claims(api), key),
        "wrong audience": jwt.encode(claims(api, aud="someone-else"), key, algorithm="HS256"),
        "wrong issuer": jwt.encode(claims(api, iss="evil"), key, algorithm="HS256"),
        "expired": jwt.encode(claims(api, exp=now - 1), key, algorithm="HS256"),
        "not yet valid": jwt.encode(claims(api, iat=now + 3600, nbf=now + 3600), key, algorithm="HS256"),
        "no exp": jwt.encode(claims(api, exp=None), key, algorithm="HS256"),
        "no jti": jwt.encode(claims(api, jti=None), key, algorithm="HS256"),
        "never issued": jwt.encode(claims(api, jti="f" * 32), key, algorithm="HS256"),
        "unknown user": jwt.encode(claims(api, sub="mallory"), key, algorithm="HS256"),
        "bad role": jwt.encode(claims(api, role="root"), key, algorithm="HS256"),
        "malformed": "definitely.not.a-jwt",
        "garbage": "x" * 5000,
        "api-key shaped": "fsk_0123456789ab_" + "A" * 43,
    }
    assert (await register_with(api, good))[0] == 200
    for name, token in cases.items():
        status, body = await register_with(api, token)
        assert (status, body["code"]) == (401, "invalid_token"), name
    async with api.client.post(
        "/api/v4/register", json={"product": "demo", "user": "x"}, headers={"Authorization": "Token abc"}
    ) as resp:
        assert resp.status == 401 and (await resp.json())["code"] == "invalid_token"


async def test_tokens_expire_by_the_servers_clock(api: Api) -> None:
    assert (await register_with(api, api.token or ""))[0] == 200
    api.clock.advance(timedelta(hours=api.config.auth.token_lifetime_hours, seconds=1))
    status, body = await register_with(api, api.token or "")
    assert (status, body["code"]) == (401, "invalid_token")
    assert "expired" in body["message"]


async def test_no_token_is_401(api: Api) -> None:
    for path in ("/api/v4/license", "/api/v4/health", "/v1/seats", "/v1/licenses", "/v1/me"):
        status, body = await api.get(path, token="")
        assert status == 401, path
        code = body["code"] if "code" in body else body["error"]["code"]
        assert code == "unauthorized"
    async with api.client.get("/") as resp:
        assert resp.status == 200


async def test_auth_can_be_switched_off_for_user_routes_only(api_factory: Any) -> None:
    def no_auth(data: dict[str, Any]) -> None:
        data["auth"]["enabled"] = False

    api = await api_factory(no_auth, login=False)
    status, body = await api.register("a")
    assert status == 200, body
    [seat] = await api.seats()
    assert seat["principal"] == "anonymous"
    status, body = await api.get("/v1/users")
    assert (status, body["error"]["code"]) == (403, "forbidden")  # admin routes still need an admin
    await api.login("admin", "admin-password")
    assert (await api.get("/v1/users"))[0] == 200


async def test_demo_passwords_and_disabled_auth_are_warned_about(tmp_path: Path) -> None:
    from structlog.testing import capture_logs

    from tests.conftest import make_config, start_api

    def no_auth(data: dict[str, Any]) -> None:
        data["auth"]["enabled"] = False

    # The test's licenses come from a file signed with the published demo key: that is warned about too.
    demo = {("demo_password_in_use", "demo"), ("demo_password_in_use", "admin"), ("demo_licenses_in_use", None)}
    for subdir, mutate, expected in (("demo", None, demo), ("off", no_auth, demo | {("auth_disabled", None)})):
        with capture_logs() as logs:
            api, client = await start_api(make_config(tmp_path / subdir, mutate))
            await client.close()
        warnings = {(e["event"], e.get("username")) for e in logs if e["log_level"] == "warning"}
        assert warnings == expected
        assert all("demo-password" not in str(e) and "admin-password" not in str(e) for e in logs)

    def hashed(data: dict[str, Any]) -> None:
        from floatsrv.auth.passwords import hash_password

        for user in data["auth"]["users"]:
            user["password_hash"] = hash_password(user.pop("password"), n=2**10)

    with capture_logs() as logs:
        api, client = await start_api(make_config(tmp_path / "hashed", hashed))
        try:
            assert await api.login("admin", "admin-password")
        finally:
            await client.close()
    # Hashed passwords: no warning about them (the demo-signed test license is warned about, as above).
    assert [e["event"] for e in logs if e["log_level"] == "warning"] == ["demo_licenses_in_use"]
