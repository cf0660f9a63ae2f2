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
from datetime import UTC, datetime, timedelta
from html import unescape
from html.parser import HTMLParser
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import pytest
import structlog
from aiohttp import FormData

from floatsrv.api.console import CONSOLE_ROUTES, NAVIGATION, static_dir
from floatsrv.clock import ManualClock
from floatsrv.domain import queries
from tests.conftest import Api, example_dict
from tests.console import console_login, csrf_token, page, post_form
from tests.licensing import signed_file
from tests.procs import ServerProcess
from tests.test_cli_contract import self_signed
from tests.test_disk_full import events, fill, tmpfs
from tests.upstreams import FloatsrvUpstream, synced

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


TEMPLATE_DIR = static_dir().parent / "templates"
EXTERNAL = re.compile(r"""(?:https?:)?//[A-Za-z0-9.-]+|(?:src|href|action)\s*=\s*["'](?!/|#|\?)[a-z]+:""", re.I)


def page_templates() -> dict[str, tuple[re.Pattern[str], int]]:
    """Every template the console renders as a page (one that extends base.html): its title block as a pattern
    (an expression in it matches any text) and how many literal characters the block has (more: more specific)."""
    found = {}
    for path in sorted(TEMPLATE_DIR.iterdir()):
        source = path.read_text()
        if not re.match(r"""{%-?\s*extends\s+["']base\.html["']""", source):
            continue
        block = re.search(r"{% block title %}(.*?){% endblock %}", source, re.S)
        assert block is not None, f"{path.name} has no title block: this test cannot tell its pages"
        parts = re.split(r"{{.*?}}", block.group(1))
        found[path.name] = (re.compile(".+".join(re.escape(part) for part in parts)), sum(map(len, parts)))
    return found


def template_of(text: str, templates: dict[str, tuple[re.Pattern[str], int]]) -> str:
    """The template that rendered a console page, told by its <title>: the most specific title block matching."""
    title = re.search(r"<title>(.*?) · floatsrv</title>", text, re.S)
    assert title is not None, text[:300]
    shown = unescape(title.group(1))
    matches = sorted(
        ((literal, name) for name, (pattern, literal) in templates.items() if pattern.fullmatch(shown)), reverse=True
    )
    assert matches, f"no template has the title {shown!r}"
    assert len(matches) == 1 or matches[0][0] > matches[1][0], f"the title {shown!r} fits {matches}: ambiguous"
    return matches[0][1]


CAD = [{"id": 2001, "product": "cad", "floating_users": 2}]


async def test_no_page_script_or_stylesheet_references_another_host(api_factory: Any) -> None:
    """Every template the console renders (each one under templates/, reached for real), and the static files."""
    api: Api = await api_factory()
    await api.register("alice")
    [seat] = await api.seats()
    templates = page_templates()
    rendered: dict[str, list[str]] = {}
    texts: dict[str, str] = {}

    async def seen(method: str, path: str, expected: int, data: Any = None) -> str:
        async with api.client.request(method, path, data=data, allow_redirects=False) as resp:
            text = await resp.text()
            assert resp.status == expected, (method, path, resp.status, text)
            assert "default-src 'none'" in resp.headers["Content-Security-Policy"], (method, path)
        name = template_of(text, templates)
        rendered.setdefault(name, []).append(f"{method} {path}")
        texts[f"{method} {path} ({name})"] = text
        return text

    await seen("GET", "/ui/login", 200)
    await console_login(api)
    for path in [*PAGES, "/ui/seats?state=all", "/ui/password", f"/ui/seats/{seat['id']}/end"]:
        await seen("GET", path, 200)
    await seen("GET", "/ui/nope", 404)
    await seen("GET", "/ui/history?license_id=99999", 400)
    token = await csrf_token(api)
    await seen("POST", f"/ui/seats/{seat['id']}/end", 403, {"csrf_token": "0" * 64})
    await seen("POST", "/ui/api-keys", 200, {"csrf_token": token, "name": "monitoring", "role": "viewer"})
    await seen("POST", "/ui/users", 200, {"csrf_token": token, "username": "carol", "role": "viewer"})
    upload = FormData({"csrf_token": token})
    upload.add_field("license_file", signed_file(CAD, series="cad").encode(), filename="cad.lic")
    imported = await seen("POST", "/ui/licenses/upload", 200, upload)
    assert "2001" in imported
    mismatch = {"current_password": "admin-password", "new_password": "a-new-pass-123", "confirm_password": "other"}
    await seen("POST", "/ui/password", 400, {"csrf_token": token, **mismatch})
    await seen("POST", "/ui/sync/run", 200, {"csrf_token": token})
    assert (await post_form(api, f"/ui/seats/{seat['id']}/end", {"csrf_token": token}))[0] == 303
    ended = await seen("GET", f"/ui/seats/{seat['id']}/end", 200)  # an ended seat: no form, a way back
    assert "Back to seats" in ended and 'method="post" action="/ui/seats/' not in ended

    missing = sorted(set(templates) - set(rendered))
    assert not missing, f"templates this test never renders (reach them above): {missing}"
    uses = "".join((TEMPLATE_DIR / name).read_text() for name in templates)
    for partial in sorted({path.name for path in TEMPLATE_DIR.iterdir()} - set(templates)):  # base.html, macros.html
        used = re.search(rf"""{{%\s*(?:extends|import|include|from)\s+["']{re.escape(partial)}["']""", uses)
        assert used, f"{partial} is neither a page nor used by one: reach it from this test"

    texts.update({f.name: f.read_text() for f in static_dir().iterdir()})
    for name, text in texts.items():
        found = [m.group(0) for m in EXTERNAL.finditer(text) if m.group(0) != "//"]
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


Tag = tuple[str, dict[str, str | None]]  # an element's name and attributes
CellParts = tuple[list[str], list[Tag]]  # a table cell's pieces of text, and the elements inside it


class _Tables(HTMLParser):
    """The tables of a page: per table its rows, per row its cells."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[list[list[CellParts]]] = []
        self._cell: CellParts | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self.tables.append([])
        elif tag == "tr" and self.tables:
            self.tables[-1].append([])
        elif tag in ("td", "th") and self.tables and self.tables[-1]:
            self._cell = ([], [])
            self.tables[-1][-1].append(self._cell)
        elif self._cell is not None:
            self._cell[1].append((tag, dict(attrs)))

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th"):
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell[0].append(data)


class Cell:
    """A table cell: its text (whitespace folded, its pieces between elements joined by a space) and the elements
    in it."""

    def __init__(self, parts: CellParts = ([], [])) -> None:
        self.text = " ".join(" ".join(parts[0]).split())
        self.tags = parts[1]

    def attrs(self, tag: str, **having: str) -> list[dict[str, str | None]]:
        """The attributes of each `tag` in the cell that has the attributes `having`."""
        return [a for t, a in self.tags if t == tag and all(a.get(k) == v for k, v in having.items())]

    def times(self) -> list[str | None]:
        return [a["datetime"] for a in self.attrs("time")]


def table(text: str, column: str) -> list[dict[str, Cell]]:
    """The rows of the page's table that has `column`, by column name. A row short of cells (the first cells
    span several rows) is filled in on the left with empty cells."""
    parser = _Tables()
    parser.feed(text)
    for rows in parser.tables:
        header = [Cell(cell).text for cell in rows[0]]
        if column in header:
            out = []
            for row in rows[1:]:
                cells = [Cell()] * (len(header) - len(row)) + [Cell(cell) for cell in row]
                out.append(dict(zip(header, cells, strict=True)))
            return out
    raise AssertionError(f"no table with a {column!r} column")


def overview_row(text: str, license_id: int, what: str) -> dict[str, Cell]:
    """The overview's row of a license's seats ("seats") or of a feature ("feature export")."""
    current, found = None, []
    for row in table(text, "Reserved"):
        number = re.match(r"\d+", row["License"].text)
        current = int(number.group(0)) if number else current
        if current == license_id and row["Seats or feature"].text == what:
            found.append(row)
    assert len(found) == 1, (license_id, what, len(found))
    return found[0]


# Where each health check's warning is fixed: the console page, or /readyz for what is fixed on the host.
FIXED_AT = {
    "clock": "/readyz",
    "database": "/readyz",
    "migrations": "/readyz",
    "config": "/ui/licenses",
    "entitlements": "/ui/licenses",
    "license files": "/ui/licenses",
    "licenses": "/ui/licenses",
    "usage rollback": "/ui/sync",
}


def warnings(overview: str) -> dict[str, tuple[str, str, str | None]]:
    """The overview's health warnings: check -> (status, message, the link's address)."""
    section = re.search(r'<ul class="warnings">(.*?)</ul>', overview, re.S)
    if section is None:
        return {}
    items = re.findall(r"<li[^>]*>.*?</li>", section.group(1), re.S)
    found = {}
    for item in items:
        parts = re.fullmatch(
            r'<li class="(\w+)"><strong>([^<]+)</strong>: (.*?)(?: <a href="([^"]*)">[^<]+</a>)?</li>', item, re.S
        )
        assert parts is not None, item
        status, check, message, link = parts.groups()
        found[check] = (status, unescape(message), link)
    return found


async def linked_to_their_fix(api: Api, overview: str, *expected: str) -> dict[str, tuple[str, str, str | None]]:
    """Assert the overview warns of each `expected` check, that every warning links to where it is fixed, and
    that the link leads there (/readyz: the same check, in detail)."""
    found = warnings(overview)
    assert set(expected) <= set(found), found
    for check, (status, message, link) in found.items():
        assert link == FIXED_AT[check], (check, link)
        if link == "/readyz":
            async with api.client.get(link) as resp:
                detail = (await resp.json())["checks"][check.replace(" ", "_")]
            assert (detail["status"], detail.get("message") or detail.get("reason")) == (status, message), detail
        else:
            assert (await page(api, link))[0] == 200, link
    return found


START = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)  # ManualClock's default start


def _reserving(data: dict[str, Any]) -> None:
    data["policy"] = {
        "groups": {"design": {"users": ["alice", "bob"]}},
        "rules": [
            {"license": 1001, "reserve": [{"count": 2, "for": "design"}]},
            {"license": 1001, "feature": "export", "reserve": [{"count": 1, "for": "user:x"}]},
        ],
    }


async def test_the_overview_shows_reservations_and_the_deadlines_of_a_license_file(api_factory: Any) -> None:
    api: Api = await api_factory(_reserving)
    assert (await api.register("carol"))[0] == 200  # not design: the two reserved seats stay free
    await api.login("admin", "admin-password")
    expires, refresh = START + timedelta(days=90), START + timedelta(days=5)
    text = signed_file(
        CAD, issued_at=START - timedelta(hours=1), expires_at=expires, refresh_by=refresh, series="cad", file_id="cad-1"
    )
    status, body = await api.post("/v1/license-files", {"license_file": text})
    assert status == 201, body
    await console_login(api)
    status, overview = await page(api, "/ui/")
    assert status == 200, overview

    seats = overview_row(overview, 1001, "seats")
    assert [seats[c].text for c in ("In use", "Reserved", "Limit")] == ["1 seat", "2 seats", "3 seats"]
    bar = seats["Use"]
    assert bar.attrs("svg")[0]["aria-label"] == "1 of 3 seats in use, 2 reserved"
    assert [(a["x"], a["width"]) for a in bar.attrs("rect", **{"class": "used"})] == [("0", "33")]
    assert [(a["x"], a["width"]) for a in bar.attrs("rect", **{"class": "reserved"})] == [("33", "67")]
    export = overview_row(overview, 1001, "feature export")
    assert [export[c].text for c in ("In use", "Reserved", "Limit")] == ["0 seats", "1 seat", "2 seats"]
    assert [(a["x"], a["width"]) for a in export["Use"].attrs("rect", **{"class": "reserved"})] == [("0", "50")]
    cad = overview_row(overview, 2001, "seats")
    assert [cad[c].text for c in ("Reserved", "Limit")] == ["0 seats", "2 seats"]  # no rule: nothing reserved
    assert not cad["Use"].attrs("rect", **{"class": "reserved"})
    deadlines = cad["Expires / refresh by"]
    # The license is valid while its file is in force (until the earlier of the two), then both deadlines.
    assert deadlines.text == (
        "2026-01-20 12:00:00 UTC its license file expires 2026-04-15 12:00:00 UTC refresh by 2026-01-20 12:00:00 UTC"
    )
    assert deadlines.times() == ["2026-01-20T12:00:00Z", "2026-04-15T12:00:00Z", "2026-01-20T12:00:00Z"]
    assert seats["Expires / refresh by"].times() == []  # the demo file has neither

    found = await linked_to_their_fix(api, overview, "license files", "entitlements")
    assert "['cad-1'] must be refreshed within 7 days" in found["license files"][1], found

    # A reserved seat taken by its group is in use, no longer "reserved, idle": one of design's two is left.
    assert (await api.register("alice"))[0] == 200
    seats = overview_row((await page(api, "/ui/"))[1], 1001, "seats")
    assert [seats[c].text for c in ("In use", "Reserved", "Limit")] == ["2 seats", "1 seat", "3 seats"]
    assert seats["Use"].attrs("svg")[0]["aria-label"] == "2 of 3 seats in use, 1 reserved"
    assert [(a["x"], a["width"]) for a in seats["Use"].attrs("rect", **{"class": "reserved"})] == [("67", "33")]


async def _consume(api: Api, user: str, units: int) -> None:
    body = {"product": "demo", "user": user, "feature": "render", "consumptions": units}
    status, answer = await api.post("/api/v4/add_feature_consumption", body)
    assert status == 200, answer


async def _sync_now(api: Api) -> str:
    """The console's "Sync now", as an admin's browser posts it: the sync page's message."""
    status, text, _ = await post_form(api, "/ui/sync/run", {"csrf_token": await csrf_token(api, "/ui/sync")})
    assert status == 200, text
    message = re.search(r'<p class="(?:notice|error)" role="status">([^<]*)</p>', text)
    assert message is not None, text
    return unescape(message.group(1))


async def test_the_overview_shows_what_each_sync_channel_owes_and_its_last_error(
    api_factory: Any, floatsrv_upstream: tuple[FloatsrvUpstream, str]
) -> None:
    upstream, url = floatsrv_upstream
    api: Api = await api_factory(synced(url))
    await console_login(api)
    await _consume(api, "ann", 3)
    _, overview = await page(api, "/ui/")
    [vendor_row] = [row for row in table(overview, "Pending records") if row["Channel"].text == "vendor"]
    assert (vendor_row["Pending records"].text, vendor_row["Last success"].text) == ("1", "never")
    assert vendor_row["Last error"].text == "none"
    assert (await _sync_now(api)).startswith("Sync finished (vendor: 1 records")

    api.clock.advance(timedelta(hours=1))
    upstream.faults.down = True  # the vendor answers 503 from now on
    await _consume(api, "ann", 2)
    body = {"product": "demo", "user": "bob", "consumptions": 5}  # the license's own counter: two owed now
    assert (await api.post("/api/v4/add_consumption", body))[0] == 200
    assert (await _sync_now(api)).startswith("Sync did not finish: vendor:")
    await api.login("admin", "admin-password")
    _, body = await api.get("/v1/sync")
    [channel] = body["data"]["channels"]
    assert channel["last_error"] and "503" in channel["last_error"], channel

    _, overview = await page(api, "/ui/")
    rows = {row["Channel"].text: row for row in table(overview, "Pending records")}
    assert set(rows) == {"vendor", "airgap"}, set(rows)
    vendor_row = rows["vendor"]
    assert vendor_row["Pending records"].text == str(channel["pending_records"]) == "2"
    assert vendor_row["Parked batches"].text == "0"
    assert vendor_row["Last success"].text == "2026-01-15 12:00:00 UTC"
    assert vendor_row["Last success"].times() == ["2026-01-15T12:00:00Z"]
    assert vendor_row["Last error"].text == f"2026-01-15 13:00:00 UTC : {channel['last_error']}"
    assert vendor_row["Last error"].times() == ["2026-01-15T13:00:00Z"]
    assert rows["airgap"]["Last error"].text == "none"

    upstream.faults.off()  # the vendor is back: the next sync clears what was owed, the error stays history
    api.clock.advance(timedelta(minutes=5))
    assert (await _sync_now(api)).startswith("Sync finished")
    _, overview = await page(api, "/ui/")
    [vendor_row] = [row for row in table(overview, "Pending records") if row["Channel"].text == "vendor"]
    assert (vendor_row["Pending records"].text, vendor_row["Last success"].times()) == ("0", ["2026-01-15T13:05:00Z"])
    assert vendor_row["Last error"].times() == ["2026-01-15T13:00:00Z"]  # older than the success: history


T0 = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


async def test_a_tampered_clock_on_the_overview_links_to_its_details(api_factory: Any) -> None:
    api: Api = await api_factory(clock=ManualClock(T0 + timedelta(days=2)), subdir="site")
    await console_login(api)
    _, overview = await page(api, "/ui/")
    assert "clock" not in warnings(overview)
    await api.client.close()
    api = await api_factory(clock=ManualClock(T0 - timedelta(days=1)), subdir="site")  # the clock set 3 days back
    await console_login(api)
    _, overview = await page(api, "/ui/")
    found = await linked_to_their_fix(api, overview, "clock", "entitlements")
    status, message, _ = found["clock"]
    assert status == "warning" and message.startswith("the system clock reads 2026-03-09T12:00:00"), message


async def test_a_rolled_back_database_on_the_overview_links_to_sync(
    api_factory: Any, floatsrv_upstream: tuple[FloatsrvUpstream, str], tmp_path: Path
) -> None:
    _, url = floatsrv_upstream
    api: Api = await api_factory(synced(url), subdir="site")
    await console_login(api)
    await _consume(api, "ann", 3)
    assert (await _sync_now(api)).startswith("Sync finished")
    archive = tmp_path / "backup.tar"
    made = await api.cli("db", "backup", "--out", str(archive))
    assert made.returncode == 0, made.stderr
    await _consume(api, "ann", 4)  # delivered, then lost with the restore
    assert (await _sync_now(api)).startswith("Sync finished")
    _, overview = await page(api, "/ui/")
    assert "usage rollback" not in warnings(overview)
    assert "Usage rollback found" not in (await page(api, "/ui/sync"))[1]
    await api.client.close()
    restored = await api.cli("db", "restore", str(archive))
    assert restored.returncode == 0, restored.stderr
    api = await api_factory(synced(url), clock=api.clock, subdir="site")
    await console_login(api)
    assert (await _sync_now(api)).startswith("Sync finished")  # the vendor's holdings show what was lost
    _, overview = await page(api, "/ui/")
    found = await linked_to_their_fix(api, overview, "usage rollback")
    assert found["usage rollback"][0] == "warning" and "rolled back" in found["usage rollback"][1], found
    _, sync = await page(api, "/ui/sync")  # where the link leads says what happened
    assert "Usage rollback found" in sync and "this database was rolled back" in sync, sync


@pytest.mark.slow
async def test_a_storage_fault_on_the_overview_links_to_its_details(api_factory: Any, tmp_path: Path) -> None:
    with tmpfs(tmp_path / "disk", "6m") as disk:

        def on_disk(data: dict[str, Any]) -> None:
            data["storage"]["data_dir"] = str(disk / "data")
            data["licenses"][0]["features"][1].update(allow_unlimited_consumptions=True)

        api: Api = await api_factory(on_disk)
        await console_login(api)
        _, overview = await page(api, "/ui/")
        assert "database" not in warnings(overview)
        filler = fill(disk, leave=48 * 1024)
        codes: set[str] = set()
        for batch in range(20):  # large batches need far more pages than are left
            status, body = await api.post("/v1/usage/events", events(f"b{batch}", 100))
            codes = {item["error"]["code"] for item in body["data"]["data"] if item["object"] == "error"}
            if "storage_full" in codes:
                break
        assert codes == {"storage_full"}, codes
        status, overview = await page(api, "/ui/")
        assert status == 200, overview  # the console reads while writes fail
        found = await linked_to_their_fix(api, overview, "database")
        assert found["database"][0] == "failing", found
        filler.unlink()
        assert (await api.register("after"))[0] == 200  # a real write commits: the warning goes
        _, overview = await page(api, "/ui/")
        assert "database" not in warnings(overview)
