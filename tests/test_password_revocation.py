"""Any change of a user's password ends the user's other sessions: every other token is revoked at once, on
every path (own change on /v1, /api/v5 and in the console, admin reset on /v1 and in the console, the
`floatsrv user` commands, a new password for a declared user at start or reload). The caller of an own change
keeps working and gets a fresh token in the reply. Each test holds two or more tokens of the user, and one of
another user that must go on working."""

from __future__ import annotations

from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import yaml

from floatsrv.app import declared_users
from floatsrv.auth.passwords import hash_password
from floatsrv.config import parse_config
from floatsrv.reload import reload
from tests.conftest import Api, example_dict, make_config, start_api
from tests.console import console_login, csrf_token, page, post_form
from tests.licensing import sign_licenses
from tests.test_v5_api import V5, chain, v5_api

__all__ = ["chain"]  # the fixture: a certificate chain for /api/v5's signed replies


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


async def test_a_reload_with_a_new_password_hash_revokes_the_users_older_tokens(tmp_path: Path) -> None:
    """SIGHUP's reload (`floatsrv.reload.reload`, run here on the live app as the signal handler runs it)."""
    data = example_dict()
    data["storage"]["data_dir"] = str(tmp_path / "data")
    sign_licenses(data, tmp_path)  # once: the reloaded config serves the same license file
    api, client = await start_api(parse_config(yaml.safe_dump(data), tmp_path))
    try:
        tokens = [await api.login("demo", "demo-password") for _ in range(2)]
        admin = await api.login("admin", "admin-password")
        demo = next(u for u in data["auth"]["users"] if u["username"] == "demo")
        demo.pop("password")
        demo["password_hash"] = hash_password("demos-new-password", n=2**10)
        new = parse_config(yaml.safe_dump(data), tmp_path)
        assert await reload(api.app, lambda: new, lambda config: declared_users(config, {}))
        assert [await works(api, token) for token in tokens] == [401, 401]
        assert await works(api, admin) == 200  # only that user's tokens
        assert await works(api, await api.login("demo", "demos-new-password")) == 200
    finally:
        await client.close()


async def test_a_change_at_api_v5_revokes_every_other_token_and_hands_a_fresh_one(
    api_factory: Any, chain: tuple[Path, Path]
) -> None:
    v5 = await v5_api(api_factory, chain)
    api = v5.api
    admin = await api.login("admin", "admin-password")
    await local_user(api, admin, "ann", "anns-password")
    here, elsewhere = V5(api, v5.key), V5(api, v5.key)
    await here.login("ann", "anns-password-2")
    await elsewhere.login("ann", "anns-password-2")
    v4_token = await api.login("ann", "anns-password-2")
    status, body = await here.call(
        "POST", "/auth/change-password", {"old_password": "anns-password-2", "new_password": "anns-password-3"}
    )
    assert status == 200 and body["tokens_revoked"] >= 2, body
    assert (await elsewhere.call("GET", "/auth/me"))[0] == 401  # the other sessions must log in again
    assert await works(api, v4_token) == 401
    assert (await here.call("GET", "/auth/me"))[0] == 200  # the caller goes on
    status, me = await here.call("GET", "/auth/me", token=body["token"])  # and so does its fresh token
    assert (status, me["username"]) == (200, "ann"), me
    assert await works(api, admin) == 200


def _session_of(login: Any) -> str:
    """The console session (its token) a login form's answer set as the cookie."""
    cookie: SimpleCookie = SimpleCookie()
    for header in login.headers.getall("Set-Cookie"):
        cookie.load(header)
    value: str = cookie["floatsrv_session"].value
    return value


async def console_session_works(api: Api, session: str) -> bool:
    """Whether a browser holding this session cookie (alone) gets a console page."""
    jar = api.client.session.cookie_jar
    jar.clear()
    jar.update_cookies({"floatsrv_session": session})
    status, _ = await page(api, "/ui/")
    jar.clear()
    return status == 200


async def test_a_change_in_the_console_revokes_the_users_other_tokens_and_sessions(api_factory: Any) -> None:
    api: Api = await api_factory()
    admin = await api.login("admin", "admin-password")
    await local_user(api, admin, "ann", "anns-password")
    other_browser = _session_of(await console_login(api, "ann", "anns-password-2"))
    api.client.session.cookie_jar.clear()  # another browser: its login does not end the first session
    app_token = await api.login("ann", "anns-password-2")
    await console_login(api, "ann", "anns-password-2")
    form = {"current_password": "anns-password-2", "new_password": "anns-password-3"}
    form |= {"confirm_password": form["new_password"], "csrf_token": await csrf_token(api, "/ui/password")}
    status, _, location = await post_form(api, "/ui/password", form)
    assert (status, location) == (303, "/ui/?done=password_changed")
    assert (await page(api, "/ui/"))[0] == 200  # this session goes on (on a fresh cookie)
    assert await works(api, app_token) == 401
    assert not await console_session_works(api, other_browser)
    assert await works(api, admin) == 200


async def test_an_admin_reset_in_the_console_revokes_the_users_tokens_and_sessions(api_factory: Any) -> None:
    api: Api = await api_factory()
    admin = await api.login("admin", "admin-password")
    await local_user(api, admin, "bob", "bobs-password")
    bobs_browser = _session_of(await console_login(api, "bob", "bobs-password-2"))
    assert await console_session_works(api, bobs_browser)
    tokens = [await api.login("bob", "bobs-password-2") for _ in range(2)]
    admins_browser = _session_of(await console_login(api))
    form = {"csrf_token": await csrf_token(api, "/ui/users"), "username": "bob"}
    status, text, _ = await post_form(api, "/ui/users/password", form)
    assert status == 200 and "Shown this once" in text, text
    assert [await works(api, token) for token in tokens] == [401, 401]
    assert not await console_session_works(api, bobs_browser)
    assert await console_session_works(api, admins_browser) and await works(api, admin) == 200
