"""Using the console over plain HTTP from a test: log in through the form, read a page's CSRF token, post a form
(what a browser does, without one; the browser tests drive a real one)."""

from __future__ import annotations

import re
from typing import Any

from tests.conftest import Api

NONCE = re.compile(r'name="nonce" value="([^"]+)"')
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


async def console_login(api: Api, username: str = "admin", password: str = "admin-password") -> Any:
    """Log `api`'s client in to the console (its cookie jar keeps the session); the login's response."""
    async with api.client.get("/ui/login") as form:
        nonce = NONCE.search(await form.text())
    assert nonce is not None
    resp = await api.client.post(
        "/ui/login",
        data={"username": username, "password": password, "nonce": nonce.group(1), "next": "/ui/"},
        allow_redirects=False,
    )
    await resp.release()
    return resp


async def page(api: Api, path: str) -> tuple[int, str]:
    async with api.client.get(path, allow_redirects=False) as resp:
        return resp.status, await resp.text()


async def csrf_token(api: Api, path: str = "/ui/") -> str:
    status, text = await page(api, path)
    assert status == 200, text
    found = CSRF.search(text)
    assert found is not None, text
    return found.group(1)


async def post_form(api: Api, path: str, data: dict[str, Any]) -> tuple[int, str, str | None]:
    """(status, body, Location) of a form post, redirects not followed."""
    async with api.client.post(path, data=data, allow_redirects=False) as resp:
        return resp.status, await resp.text(), resp.headers.get("Location")
