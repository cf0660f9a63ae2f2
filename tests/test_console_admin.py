"""The console's admin actions over real HTTP: users and API keys (secrets shown once, and usable), the
air-gapped usage report and the vendor's receipt, sync now, license files; each audited like its API twin."""

from __future__ import annotations

import re
from typing import Any

from aiohttp import FormData
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from floatsrv.appkeys import IDENTITY
from floatsrv.signing import RECEIPT, REPORT, public_key_text, sign, verify
from tests.conftest import Api, basic
from tests.console import console_login, csrf_token, page, post_form
from tests.licensing import signed_file

SECRET = re.compile(r'<output class="secret">([^<]+)</output>')


async def test_an_admin_adds_a_user_whose_temporary_password_works_once_shown(api_factory: Any) -> None:
    api: Api = await api_factory()
    await console_login(api)
    token = await csrf_token(api, "/ui/users")
    status, text, _ = await post_form(api, "/ui/users", {"csrf_token": token, "username": "dora", "role": "viewer"})
    assert status == 200 and "Shown this once" in text
    found = SECRET.search(text)
    assert found is not None
    async with api.client.get("/auth", headers={"Authorization": basic("dora", found.group(1))}) as resp:
        assert resp.status == 200 and (await resp.json())["password_change_required"] is True
    status, text = await page(api, "/ui/users")
    assert "dora" in text and "must change password" in text
    status, _, location = await post_form(api, "/ui/users/disable", {"csrf_token": token, "username": "dora"})
    assert status == 303 and location == "/ui/users?done=user_changed"
    await api.login("admin", "admin-password")
    status, body = await api.get("/v1/audit", params={"target": "dora"})
    assert {e["action"] for e in body["data"]["data"]} >= {"user_created", "user_updated"}
    assert {e["actor"] for e in body["data"]["data"]} == {"admin"}


async def test_an_api_key_made_in_the_console_is_shown_once_and_authenticates(api_factory: Any) -> None:
    api: Api = await api_factory()
    await console_login(api)
    token = await csrf_token(api, "/ui/users")
    status, text, _ = await post_form(api, "/ui/api-keys", {"csrf_token": token, "name": "ci-bot", "role": "viewer"})
    found = SECRET.search(text)
    assert status == 200 and found is not None
    async with api.client.get("/v1/licenses", headers={"Authorization": f"Bearer {found.group(1)}"}) as resp:
        assert resp.status == 200
    status, text = await page(api, "/ui/users")
    assert "ci-bot" in text and found.group(1) not in text  # never shown again
    status, _, _ = await post_form(api, "/ui/api-keys", {"csrf_token": token, "name": "x", "role": "root"})
    assert status == 400


async def test_the_air_gapped_report_and_receipt_round_trip_through_the_console(api_factory: Any) -> None:
    vendor = Ed25519PrivateKey.generate()
    api: Api = await api_factory(lambda d: d["sync"].update(vendor_public_key=public_key_text(vendor)))
    for n in (2, 3):
        await api.post("/api/v4/add_consumption", {"product": "demo", "user": "u", "consumptions": n})
    await console_login(api)
    token = await csrf_token(api, "/ui/sync")
    async with api.client.post("/ui/sync/export", data={"csrf_token": token}) as resp:
        assert resp.status == 200 and "attachment" in resp.headers["Content-Disposition"]
        document = await resp.read()
    report = verify(REPORT, document, api.app[IDENTITY].public_key())  # signed by this server
    assert report["records"] and report["server_id"]
    receipt = {
        "report_id": report["report_id"],
        "server_id": report["server_id"],
        "acknowledged_at": "2026-01-15T12:00:00Z",
        "records": len(report["records"]),
    }
    signed = sign(RECEIPT, receipt, vendor)

    forged = FormData({"csrf_token": token})
    forged.add_field("receipt", signed.replace(b'"records":', b'"records": '), filename="receipt.fsr")
    async with api.client.post("/ui/sync/receipt", data=forged) as resp:
        assert resp.status == 400 and "receipt rejected" in await resp.text()
    form = FormData({"csrf_token": token})
    form.add_field("receipt", signed, filename="receipt.fsr")
    async with api.client.post("/ui/sync/receipt", data=form) as resp:
        text = await resp.text()
        assert resp.status == 200 and f"Acknowledged {len(report['records'])} records" in text, text
    async with api.client.post("/ui/sync/export", data={"csrf_token": token}) as resp:
        assert "Nothing to export" in await resp.text()


async def test_sync_now_and_retry_report_how_it_went(api_factory: Any) -> None:
    api: Api = await api_factory()
    await console_login(api)
    token = await csrf_token(api, "/ui/sync")
    status, text, _ = await post_form(api, "/ui/sync/run", {"csrf_token": token})
    assert status == 200 and "Sync finished" in text
    status, _, location = await post_form(api, "/ui/sync/retry", {"csrf_token": token})
    assert status == 303 and location == "/ui/sync?done=sync_retried"


async def test_a_bad_license_file_upload_is_refused_and_changes_nothing(api_factory: Any) -> None:
    api: Api = await api_factory()
    await console_login(api)
    token = await csrf_token(api, "/ui/licenses")
    good = signed_file([{"id": 2002, "product": "other", "floating_users": 2}])
    for body, status in ((good.replace("A", "B", 1).encode(), 400), (b"\xff\xfe", 400)):
        form = FormData({"csrf_token": token})
        form.add_field("license_file", body, filename="x.lic")
        async with api.client.post("/ui/licenses/upload", data=form) as resp:
            assert resp.status == status and "Traceback" not in await resp.text()
    status, _, _ = await post_form(api, "/ui/licenses/upload", {"csrf_token": token})  # no file at all
    assert status == 400
    await api.login("admin", "admin-password")
    assert (await api.get("/v1/licenses/2002"))[0] == 404


async def test_names_are_checked_as_the_api_checks_them(api_factory: Any) -> None:
    api: Api = await api_factory()
    await console_login(api)
    token = await csrf_token(api, "/ui/users")
    for name in ("x" * 101, "a:b", "has space", "ctl\x01x", "nul\x00user"):
        status, text, _ = await post_form(api, "/ui/users", {"csrf_token": token, "username": name, "role": "viewer"})
        assert status == 400 and "Traceback" not in text, name
    for name in ("bad\x1b[31mname", "y" * 101):
        status, _, _ = await post_form(api, "/ui/api-keys", {"csrf_token": token, "name": name, "role": "viewer"})
        assert status == 400, name
    await api.login("admin", "admin-password")
    _, users = await api.get("/v1/users")
    _, keys = await api.get("/v1/api-keys")
    assert {u["username"] for u in users["data"]["data"]} == {"admin", "demo"} and keys["data"]["data"] == []


async def test_a_users_row_acts_on_that_user_whatever_the_name(api_factory: Any) -> None:
    api: Api = await api_factory()
    await api.login("admin", "admin-password")
    for name in ("watcher", "../users/watcher", "a/b"):
        assert (await api.post("/v1/users", {"username": name, "role": "viewer", "password": "a-long-pass-1"}))[
            0
        ] == 200
    await console_login(api)
    status, text = await page(api, "/ui/users")
    form = re.search(r'action="/ui/users/disable">.*?name="username" value="\.\./users/watcher"', text)
    assert form is not None
    token = await csrf_token(api, "/ui/users")
    for name in ("../users/watcher", "a/b"):
        status, _, location = await post_form(api, "/ui/users/disable", {"csrf_token": token, "username": name})
        assert status == 303 and location == "/ui/users?done=user_changed"
    _, users = await api.get("/v1/users")
    disabled = {u["username"]: u["disabled"] for u in users["data"]["data"]}
    assert disabled["../users/watcher"] and disabled["a/b"] and not disabled["watcher"]


async def test_the_users_page_pages_its_lists(api_factory: Any) -> None:
    api: Api = await api_factory()
    await api.login("admin", "admin-password")
    for n in range(51):
        assert (await api.post("/v1/api-keys", {"name": f"key-{n:02d}", "role": "viewer"}))[0] == 200
    await console_login(api)
    status, first = await page(api, "/ui/users")
    shown = set(re.findall(r"<td>(key-\d\d)</td>", first))
    assert len(shown) == 50 and "More API keys" in first
    more = re.search(r'href="(/ui/users\?keys_from=50)"', first)
    assert more is not None
    status, second = await page(api, more.group(1))
    rest = set(re.findall(r"<td>(key-\d\d)</td>", second))
    assert len(rest) == 1 and not rest & shown
