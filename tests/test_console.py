"""The console's security and behaviour over real HTTP (no browser): the session cookie's attributes, CSRF on every
form, roles, logout and revocation, throttled logins, temporary passwords, safe redirects, bad parameters, and
pages that reference no other host. tests/test_console_browser.py drives the same pages in Chromium."""

from __future__ import annotations

import csv
import http.client
import io
import re
import ssl
import urllib.parse
from datetime import timedelta
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import pytest
import structlog
from aiohttp import FormData

from floatsrv.api.console import CONSOLE_ROUTES, NAVIGATION, static_dir
from floatsrv.domain import queries
from tests.conftest import Api, example_dict
from tests.console import console_login, csrf_token, page, post_form
from tests.procs import ServerProcess
from tests.test_cli_contract import self_signed

PAGES = [path for path, _, _ in NAVIGATION]


def _viewer(data: dict[str, Any]) -> None:
    data["auth"]["users"].append({"username": "watcher", "password": "watcher-password-1", "role": "viewer"})


async def _session_cookie(resp: Any) -> Any:
    cookie = SimpleCookie()
    for header in resp.headers.getall("Set-Cookie"):
        cookie.load(header)
    return cookie["floatsrv_session"]


async def test_login_sets_a_strict_http_only_session_cookie_scoped_to_the_console(api_factory: Any) -> None:
    api: Api = await api_factory()
    status, _ = await page(api, "/ui/")
    assert status == 303  # not logged in: to the form
    resp = await console_login(api)
    assert resp.status == 303 and resp.headers["Location"] == "/ui/"
    morsel = await _session_cookie(resp)
    assert morsel["httponly"] and morsel["samesite"] == "Strict" and morsel["path"] == "/ui/"
    assert int(morsel["max-age"]) == 12 * 3600 and not morsel["secure"]  # plain HTTP here
    status, text = await page(api, "/ui/")
    assert status == 200 and "Overview" in text


def test_the_session_cookie_is_secure_when_the_server_speaks_tls(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path, "localhost")
    config = example_dict()
    config["server"].update(tls_cert=str(cert), tls_key=str(key))
    server = ServerProcess(tmp_path, config, ssl_context=ssl.create_default_context(cafile=str(cert)))
    server.start()
    try:
        context = ssl.create_default_context(cafile=str(cert))
        connection = http.client.HTTPSConnection("localhost", server.port, context=context, timeout=10)
        connection.request("GET", "/ui/login")
        form = connection.getresponse()
        nonce = re.search(r'name="nonce" value="([^"]+)"', form.read().decode())
        login_cookie = SimpleCookie(form.getheader("Set-Cookie"))["floatsrv_login"].value
        assert nonce is not None
        fields = {"username": "admin", "password": "admin-password", "nonce": nonce.group(1)}
        headers = {"Content-Type": "application/x-www-form-urlencoded", "Cookie": f"floatsrv_login={login_cookie}"}
        connection.request("POST", "/ui/login", urllib.parse.urlencode(fields), headers)
        resp = connection.getresponse()
        resp.read()
        assert resp.status == 303
        cookies = SimpleCookie()
        for header in resp.headers.get_all("Set-Cookie") or []:
            cookies.load(header)
        morsel = cookies["floatsrv_session"]
        assert morsel["secure"] and morsel["httponly"] and morsel["samesite"] == "Strict"
        connection.close()
    finally:
        assert server.stop() == 0


@pytest.mark.parametrize(("trusted", "secure"), [(["127.0.0.1/32"], True), ([], False)])
async def test_behind_a_trusted_tls_proxy_the_cookie_is_secure(
    api_factory: Any, trusted: list[str], secure: bool
) -> None:
    api: Api = await api_factory(lambda d: d["server"].update(trusted_proxies=trusted))
    async with api.client.get("/ui/login") as form:
        nonce = re.search(r'name="nonce" value="([^"]+)"', await form.text())
    assert nonce is not None
    resp = await api.client.post(
        "/ui/login",
        data={"username": "admin", "password": "admin-password", "nonce": nonce.group(1)},
        headers={"X-Forwarded-Proto": "https", "X-Forwarded-For": "10.9.8.7"},
        allow_redirects=False,
    )
    assert resp.status == 303
    assert bool((await _session_cookie(resp))["secure"]) is secure  # only a trusted proxy is believed


async def test_every_page_renders_for_an_admin_with_the_security_headers(api_factory: Any) -> None:
    api: Api = await api_factory()
    await api.register("alice")
    await console_login(api)
    for path in PAGES:
        async with api.client.get(path, allow_redirects=False) as resp:
            text = await resp.text()
            assert resp.status == 200, (path, text)
            policy = resp.headers["Content-Security-Policy"]
            assert "default-src 'none'" in policy and "script-src 'self'" in policy and "unsafe-inline" not in policy
            assert resp.headers["X-Frame-Options"] == "DENY" and resp.headers["Cache-Control"] == "no-store"
            assert "<script>" not in text and " style=" not in text and "onclick" not in text.lower()
    _, overview = await page(api, "/ui/")  # the demo-signed license is a warning, linked to where it is fixed
    assert re.search(
        r"<strong>entitlements</strong>: some licenses are not signed[^<]*<a href=\"/ui/licenses\">", overview
    )


async def test_no_page_script_or_stylesheet_references_another_host(api_factory: Any) -> None:
    api: Api = await api_factory()
    await api.register("alice")
    await console_login(api)
    texts = {path: (await page(api, path))[1] for path in [*PAGES, "/ui/login", "/ui/password", "/ui/seats?state=all"]}
    texts.update({f.name: f.read_text() for f in static_dir().iterdir()})
    external = re.compile(r"""(?:https?:)?//[A-Za-z0-9.-]+|(?:src|href|action)\s*=\s*["'](?!/|#|\?)[a-z]+:""", re.I)
    for name, text in texts.items():
        found = [m.group(0) for m in external.finditer(text) if m.group(0) != "//"]
        assert not found, (name, found)
        for url in re.findall(r"""(?:src|href|action)\s*=\s*["']([^"']*)""", text):
            assert url.startswith(("/", "#", "?")) or not url, (name, url)
        assert "@import" not in text and "url(" not in text, name


async def test_a_post_without_the_csrf_token_is_refused_even_with_a_valid_admin_session(api_factory: Any) -> None:
    api: Api = await api_factory()
    await api.register("alice")
    [seat] = await api.seats()
    await console_login(api)
    status, text, _ = await post_form(api, f"/ui/seats/{seat['id']}/end", {})
    assert status == 403 and "csrf_failed" in text
    status, text, _ = await post_form(api, f"/ui/seats/{seat['id']}/end", {"csrf_token": "0" * 64})
    assert status == 403
    assert [s["id"] for s in await api.seats()] == [seat["id"]]  # still held
    token = await csrf_token(api)
    status, _, location = await post_form(api, f"/ui/seats/{seat['id']}/end", {"csrf_token": token})
    assert status == 303 and location == "/ui/seats?done=seat_ended"
    assert await api.seats() == []


async def test_a_viewer_sees_everything_but_no_action_and_a_forged_post_is_refused(api_factory: Any) -> None:
    api: Api = await api_factory(_viewer)
    await api.register("alice")
    [seat] = await api.seats()
    await console_login(api, "watcher", "watcher-password-1")
    for path in ["/ui/", "/ui/seats", "/ui/history", "/ui/denials", "/ui/usage", "/ui/licenses", "/ui/sync"]:
        status, text = await page(api, path)
        assert status == 200, path
        actions = re.findall(r'<form[^>]*method="post"[^>]*action="([^"]+)"', text)
        assert actions == ["/ui/logout"], (path, actions)
    for path in ["/ui/users", "/ui/audit"]:
        assert (await page(api, path))[0] == 403
    token = await csrf_token(api)  # the viewer's own, valid token: the role still refuses
    status, text, _ = await post_form(api, f"/ui/seats/{seat['id']}/end", {"csrf_token": token})
    assert status == 403 and "admin role" in text
    status, _, _ = await post_form(api, "/ui/users", {"csrf_token": token, "username": "x", "role": "admin"})
    assert status == 403
    assert len(await api.seats()) == 1


async def test_logging_out_revokes_the_session_so_a_copied_cookie_stops_working(api_factory: Any) -> None:
    api: Api = await api_factory()
    morsel = await _session_cookie(await console_login(api))
    token = await csrf_token(api)
    status, _, location = await post_form(api, "/ui/logout", {"csrf_token": token})
    assert status == 303 and location == "/ui/login"
    api.client.session.cookie_jar.update_cookies({"floatsrv_session": morsel.value})  # the stolen copy
    assert (await page(api, "/ui/"))[0] == 303
    await api.login("admin", "admin-password")
    status, body = await api.get("/v1/audit", params={"action": "token_revoked"})
    assert body["data"]["data"][0]["actor"] == "admin"


async def test_revoking_a_users_tokens_ends_their_console_session(api_factory: Any) -> None:
    api: Api = await api_factory()
    await console_login(api)
    assert (await page(api, "/ui/"))[0] == 200
    await api.login("admin", "admin-password")
    status, _ = await api.post("/v1/users/admin/revoke-tokens", {})
    assert status == 200
    assert (await page(api, "/ui/"))[0] == 303


async def test_a_console_session_expires_after_session_hours(api_factory: Any) -> None:
    api: Api = await api_factory(lambda d: d.setdefault("console", {}).update(session_hours=2))
    await console_login(api)
    api.clock.advance(timedelta(hours=1, minutes=59))
    assert (await page(api, "/ui/"))[0] == 200
    api.clock.advance(timedelta(minutes=2))
    assert (await page(api, "/ui/"))[0] == 303


async def test_logins_at_the_form_are_throttled_like_auth(api_factory: Any) -> None:
    api: Api = await api_factory()
    statuses = [(await console_login(api, "admin", f"wrong-{i}")).status for i in range(7)]
    assert statuses[:5] == [401] * 5 and statuses[5:] == [429, 429]
    resp = await console_login(api, "admin", "admin-password")  # same address: throttled too
    assert resp.status == 429 and int(resp.headers["Retry-After"]) > 0


async def test_a_login_post_without_the_forms_nonce_is_refused(api_factory: Any) -> None:
    api: Api = await api_factory()
    resp = await api.client.post(
        "/ui/login", data={"username": "admin", "password": "admin-password"}, allow_redirects=False
    )
    assert resp.status == 403 and "floatsrv_session" not in resp.cookies


@pytest.mark.parametrize(
    "target",
    ["//evil.example/", "https://evil.example/", "/ui/\\evil", "/v1/users", "/ui/../v1/users", "/ui/%2e%2e/v1"],
)
async def test_after_login_only_console_paths_are_followed(api_factory: Any, target: str) -> None:
    api: Api = await api_factory()
    async with api.client.get("/ui/login", params={"next": target}) as form:
        text = await form.text()
    nonce = re.search(r'name="nonce" value="([^"]+)"', text)
    assert nonce is not None
    resp = await api.client.post(
        "/ui/login",
        data={"username": "admin", "password": "admin-password", "nonce": nonce.group(1), "next": target},
        allow_redirects=False,
    )
    assert resp.status == 303 and resp.headers["Location"] == "/ui/"


async def test_a_temporary_password_leads_to_the_change_form_first(api_factory: Any) -> None:
    api: Api = await api_factory()
    await api.login("admin", "admin-password")
    status, body = await api.post("/v1/users", {"username": "carol", "role": "viewer"})
    temporary = body["data"]["temporary_password"]
    resp = await console_login(api, "carol", temporary)
    assert resp.headers["Location"] == "/ui/password"
    status, _ = await page(api, "/ui/seats")
    assert status == 303
    token = await csrf_token(api, "/ui/password")
    form = {"csrf_token": token, "current_password": temporary, "new_password": "carols-own-pass-9"}
    status, text, _ = await post_form(api, "/ui/password", {**form, "confirm_password": "different-pass-99"})
    assert status == 400 and "differ" in text
    status, _, location = await post_form(api, "/ui/password", {**form, "confirm_password": "carols-own-pass-9"})
    assert status == 303 and location == "/ui/?done=password_changed"
    status, text = await page(api, "/ui/seats")
    assert status == 200 and "Seats" in text


@pytest.mark.parametrize(
    "path",
    [
        "/ui/seats?license_id=abc",
        "/ui/seats?before=-1",
        "/ui/seats?state=bogus",
        "/ui/seats?user=%01",
        "/ui/history?range=1y",
        "/ui/history?license_id=99999",
        "/ui/denials?cursor=x",
        "/ui/usage?bucket=week",
        "/ui/?offset=1e3",
        "/ui/seats/abc/end",
    ],
)
async def test_bad_parameters_get_a_clear_4xx_page(api_factory: Any, path: str) -> None:
    api: Api = await api_factory()
    await console_login(api)
    status, text = await page(api, path)
    assert 400 <= status < 500, (path, status, text)
    assert "Traceback" not in text


def test_every_console_page_is_a_route() -> None:
    routes = {(method, path) for method, path, _ in CONSOLE_ROUTES}
    assert {("GET", path) for path in PAGES} <= routes


async def test_a_form_that_cannot_be_read_gets_a_400_page(api_factory: Any) -> None:
    api: Api = await api_factory()
    garbage = [
        (b"username=\xff&password=x&nonce=n", "application/x-www-form-urlencoded"),
        (b"garbage", "multipart/form-data"),
        (b"--x\r\nbroken", "multipart/form-data; boundary=y"),
    ]
    for body, kind in garbage:
        async with api.client.post("/ui/login", data=body, headers={"Content-Type": kind}) as resp:
            assert resp.status == 400 and "could not be read" in await resp.text(), body
    await console_login(api)
    token = await csrf_token(api)
    raw = f"csrf_token={token}&username=\xff".encode("latin-1")
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    async with api.client.post("/ui/users", data=raw, headers=headers) as resp:
        assert resp.status == 400


async def test_an_upload_over_the_body_limit_gets_a_413_page(api_factory: Any) -> None:
    api: Api = await api_factory(lambda d: d["server"].update(max_body_bytes=4096))
    await console_login(api)
    form = FormData({"csrf_token": await csrf_token(api, "/ui/licenses")})
    form.add_field("license_file", b"x" * 10_000, filename="big.lic")
    async with api.client.post("/ui/licenses/upload", data=form) as resp:
        assert resp.status == 413 and "larger than this server takes" in await resp.text()


async def test_a_user_who_must_change_the_password_can_still_log_out(api_factory: Any) -> None:
    api: Api = await api_factory()
    await api.login("admin", "admin-password")
    _, body = await api.post("/v1/users", {"username": "erin", "role": "viewer"})
    morsel = await _session_cookie(await console_login(api, "erin", body["data"]["temporary_password"]))
    token = await csrf_token(api, "/ui/password")
    status, _, location = await post_form(api, "/ui/logout", {"csrf_token": token})
    assert status == 303 and location == "/ui/login"
    api.client.session.cookie_jar.update_cookies({"floatsrv_session": morsel.value})
    assert (await page(api, "/ui/password"))[0] == 303  # the session is gone


async def test_logging_in_again_ends_the_session_it_replaces(api_factory: Any) -> None:
    api: Api = await api_factory()
    first = await _session_cookie(await console_login(api))
    api.client.session.cookie_jar.clear()
    async with api.client.get("/ui/login") as form:  # a login form, then the old session cookie comes back
        nonce = re.search(r'name="nonce" value="([^"]+)"', await form.text())
    assert nonce is not None
    api.client.session.cookie_jar.update_cookies({"floatsrv_session": first.value})
    fields = {"username": "demo", "password": "demo-password", "nonce": nonce.group(1)}
    async with api.client.post("/ui/login", data=fields, allow_redirects=False) as resp:
        assert resp.status == 303
    api.client.session.cookie_jar.clear()  # only the replaced session's cookie from here
    api.client.session.cookie_jar.update_cookies({"floatsrv_session": first.value})
    assert (await page(api, "/ui/"))[0] == 303


async def test_console_requests_name_the_signed_in_user_in_the_request_log(api_factory: Any) -> None:
    api: Api = await api_factory(lambda d: d["log"].update(requests="all"))
    await console_login(api)
    with structlog.testing.capture_logs() as logs:
        assert (await page(api, "/ui/seats"))[0] == 200
    [line] = [e for e in logs if e["event"] == "request_completed" and e.get("route") == "/ui/seats"]
    assert line["user"] == "admin"


async def test_consumption_bars_show_overage_apart_from_the_included_amount(api_factory: Any) -> None:
    api: Api = await api_factory()
    body = {"product": "demo", "user": "alice", "consumptions": 1050}  # 1000 included, up to 100 overage
    assert (await api.post("/api/v4/add_consumption", body))[0] == 200
    await console_login(api)
    _, overview = await page(api, "/ui/")
    row = overview[overview.index("<td>consumption</td>") :]
    row = row[: row.index("</tr>")]
    assert "1050 units" in row and "1000 units<br><small>overage to 1100 units</small>" in row
    # Of a 1100-unit bar: 1000 used of the included (91%), 50 of overage (5%), the included amount ends at 91%.
    assert 'class="used" x="0" y="0" width="91"' in row and 'class="overage" x="91" y="0" width="5"' in row
    assert 'class="included" x="91"' in row


async def test_seats_filters_and_the_borrowed_view(api_factory: Any) -> None:
    api: Api = await api_factory()
    await api.register("alice", os_hostname="cad-01")
    await api.register("bob", os_hostname="kiosk-2")
    until = (api.clock.now() + timedelta(hours=24)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert (await api.post("/api/v4/borrow", {"product": "demo", "user": "bob", "borrowed_until": until}))[0] == 200
    await console_login(api)

    async def users(query: str) -> list[str]:
        status, text = await page(api, f"/ui/seats?{query}")
        assert status == 200, text
        return re.findall(
            r'<tr data-seat="\d+">\s*<td class="num">\d+</td><td class="num">\d+</td><td>[^<]*</td><td>([^<]+)', text
        )

    assert sorted(await users("")) == ["alice", "bob"]
    assert await users("host=cad-01") == ["alice"]
    assert await users("user=bob") == ["bob"]
    assert await users("state=borrowed") == ["bob"]
    assert await users("license_id=2002") == []


async def test_the_denials_csv_holds_every_match_not_only_the_page(api_factory: Any) -> None:
    api: Api = await api_factory()
    for n in range(3):
        assert (await api.register(f"holder-{n}"))[0] == 200
    for n in range(60):
        assert (await api.register(f"late-{n}"))[0] == 400
    await console_login(api)
    _, first = await page(api, "/ui/denials")
    assert first.count("late-") == 50 and "Older" in first
    async with api.client.get("/ui/denials", params={"format": "csv"}) as resp:
        rows = list(csv.DictReader(io.StringIO(await resp.text())))
    assert len(rows) == 60 and {r["user"] for r in rows} == {f"late-{n}" for n in range(60)}
    async with api.client.get("/ui/denials", params={"format": "csv", "user": "late-7"}) as resp:
        assert [r["user"] for r in csv.DictReader(io.StringIO(await resp.text()))] == ["late-7"]


async def test_usage_events_page_through_bounded_reads(api_factory: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    api: Api = await api_factory()
    for n in range(8):
        body = {"product": "demo", "user": f"user-{n}", "consumptions": n + 1}
        assert (await api.post("/api/v4/add_consumption", body))[0] == 200
    await console_login(api)
    _, whole = await page(api, "/ui/usage?license_id=1001")
    assert re.findall(r"<td>(user-\d)</td>", whole) == [f"user-{n}" for n in reversed(range(8))]
    monkeypatch.setattr(queries, "EVENT_SCAN", 5)  # each page reads at most 5 rows of the table
    _, first = await page(api, "/ui/usage?license_id=1001")
    assert re.findall(r"<td>(user-\d)</td>", first) == ["user-7", "user-6", "user-5", "user-4", "user-3"]
    older = re.search(r'href="(/ui/usage\?[^"]*before=\d+)"', first)
    assert older is not None
    _, second = await page(api, older.group(1).replace("&amp;", "&"))
    assert re.findall(r"<td>(user-\d)</td>", second) == ["user-2", "user-1", "user-0"]
    assert "Older" not in second  # nothing older to read


async def test_seats_and_audit_page_through_with_cursors(api_factory: Any) -> None:
    api: Api = await api_factory()
    await api.login("admin", "admin-password")
    for n in range(51):
        assert (await api.post("/v1/api-keys", {"name": f"k{n}", "role": "viewer"}))[0] == 200  # 51 audit rows
        assert (await api.register(f"u{n:02d}"))[0] == 200
        assert (await api.post("/api/v4/unregister", {"product": "demo", "user": f"u{n:02d}"}))[0] == 200
    await console_login(api)
    seen: list[str] = []
    path = "/ui/seats?state=ended"
    while path:
        _, text = await page(api, path)
        seen += re.findall(r"<td>(u\d\d)</td>", text)
        older = re.search(r'href="(/ui/seats\?[^"]*before=\d+)"', text)
        path = older.group(1).replace("&amp;", "&") if older else ""
    assert seen == [f"u{n:02d}" for n in reversed(range(51))]
    _, first = await page(api, "/ui/audit?action=api_key_created")
    older = re.search(r'href="(/ui/audit\?[^"]*before=\d+)"', first)
    assert older is not None and first.count("<td>api_key_created</td>") == 50
    _, second = await page(api, older.group(1).replace("&amp;", "&"))
    assert second.count("<td>api_key_created</td>") == 1


async def test_unknown_console_addresses_and_static_files(api_factory: Any) -> None:
    api: Api = await api_factory()
    for path in ("/ui/nope", "/ui/seats/1/end/x", "/ui/static/sub/console.js", "/ui/static/nope.js"):
        async with api.client.get(path, allow_redirects=False) as resp:
            assert resp.status == 404 and resp.content_type == "text/html", path
            assert "Content-Security-Policy" in resp.headers and "no such page" in await resp.text()
    async with api.client.get("/ui/static/console.js") as resp:
        assert resp.status == 200 and resp.headers["X-Content-Type-Options"] == "nosniff"
        assert resp.content_type == "text/javascript" and "localise" in await resp.text()
    async with api.client.get("/ui/static/console.css") as resp:
        assert resp.status == 200 and resp.content_type == "text/css"
