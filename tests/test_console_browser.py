"""The console in a real headless Chromium (Debian's `chromium`, driven by Playwright through executable_path: no
browser is downloaded), against a real floatsrv on a real SQLite file, with the official LicenseSpring SDK
holding seats. Screenshots of every page go to test-output/console/ (FLOATSRV_TEST_OUTPUT moves it).
"""

from __future__ import annotations

import asyncio
import csv
import io
import os
import re
import shutil
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from licensespring.licensefile.config import Configuration
from licensespring.licensefile.floating_manager import FloatingManager
from playwright._impl._api_structures import SetCookieParam
from playwright.async_api import Browser, BrowserContext, Page, async_playwright, expect

from floatsrv.clock import ManualClock
from tests.conftest import ROOT, Api
from tests.licensing import signed_file

pytestmark = pytest.mark.slow

OUTPUT = Path(os.environ.get("FLOATSRV_TEST_OUTPUT", ROOT / "test-output")) / "console"
SDK_USER = str(uuid.getnode())  # the SDK's user: the machine's node id
# What a sandboxed CI machine needs: no sandbox as root, no GPU, and no calls home (the network is closed).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str:
    found = os.environ.get("FLOATSRV_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        pytest.fail("the browser tests need Debian's chromium (apt-get install chromium; .ci/run installs it)")
    return found


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            await launched.close()


def url(api: Api, path: str) -> str:
    return str(api.client.make_url(path))


async def log_in(browser: Browser, api: Api, username: str = "admin", password: str = "admin-password") -> Page:
    context = await browser.new_context(
        viewport={"width": 1280, "height": 900}, accept_downloads=True, timezone_id="Asia/Tokyo"
    )
    page = await context.new_page()
    await page.goto(url(api, "/ui/"))
    await expect(page).to_have_url(re.compile(r".*/ui/login\?next=%2Fui%2F$"))
    await screenshot(page, "login")
    await page.get_by_label("Username").fill(username)
    await page.get_by_label("Password").fill(password)
    await page.get_by_role("button", name="Log in").click()
    await expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    return page


async def screenshot(page: Page, name: str) -> None:
    OUTPUT.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(OUTPUT / f"{name}.png"), full_page=True)


async def every_control_takes_the_focus(page: Page, name: str) -> None:
    """Tab from the top of the page: every link, button and form field gets the focus in turn."""
    controls = await page.evaluate(
        """() => [...document.querySelectorAll("a[href], button, input:not([type=hidden]), select")]
                   .filter(e => !e.disabled).length"""
    )
    await page.evaluate("document.activeElement && document.activeElement.blur()")
    reached = set()
    for _ in range(controls + 1):
        await page.keyboard.press("Tab")
        reached.add(
            await page.evaluate("""() => {
            const all = [...document.querySelectorAll("a[href], button, input:not([type=hidden]), select")];
            return all.indexOf(document.activeElement);
        }""")
        )
    reached.discard(-1)
    assert len(reached) == controls, (name, controls, sorted(reached))


def sdk(api: Api, tmp_path: Path) -> FloatingManager:
    conf = Configuration(
        product="demo",
        api_key="unused",
        shared_key="unused",
        api_domain=f"127.0.0.1:{api.client.port}",
        api_protocol="http",
        file_path=str(tmp_path / "licensefile"),
        verify_license_signature=False,
    )
    return FloatingManager(conf)


async def test_an_admin_ends_an_sdk_seat_from_the_seats_page(
    api_factory: Any, browser: Browser, tmp_path: Path
) -> None:
    api: Api = await api_factory()
    await api.login("admin", "admin-password")
    manager = sdk(api, tmp_path)
    await asyncio.to_thread(manager.auth, "demo", "demo-password")
    license = await asyncio.to_thread(manager.register)
    [seat] = await api.seats()
    assert seat["user"] == SDK_USER

    page = await log_in(browser, api)
    await page.get_by_role("link", name="Seats", exact=True).click()
    row = page.locator(f'tr[data-seat="{seat["id"]}"]')
    await expect(row).to_contain_text(SDK_USER)
    await page.get_by_role("link", name=f"End seat {seat['id']}").click()
    await expect(page.get_by_role("heading", name=f"End seat {seat['id']}?")).to_be_visible()
    await screenshot(page, "seat-end")
    await page.get_by_role("button", name=f"End seat {seat['id']}").click()

    await expect(page).to_have_url(re.compile(r".*/ui/seats\?done=seat_ended$"))
    await expect(page.get_by_role("status")).to_contain_text("The seat was ended")
    await expect(page.locator(f'tr[data-seat="{seat["id"]}"]')).to_have_count(0)
    await page.goto(url(api, "/ui/audit?action=seat_revoked"))
    entry = page.locator("tbody tr").first
    await expect(entry).to_contain_text("seat_revoked")
    await expect(entry).to_contain_text("admin")
    await expect(entry).to_contain_text(str(seat["id"]))

    await asyncio.to_thread(license.check)  # the SDK's heartbeat: its seat is gone, so it registers anew
    [again] = await api.seats()
    assert again["user"] == SDK_USER and again["id"] != seat["id"]
    await page.goto(url(api, "/ui/seats"))
    await expect(page.locator(f'tr[data-seat="{again["id"]}"]')).to_be_visible()


async def test_an_admin_imports_a_license_file_by_upload(api_factory: Any, browser: Browser, tmp_path: Path) -> None:
    api: Api = await api_factory()
    lic = tmp_path / "other.lic"
    lic.write_text(signed_file([{"id": 2002, "product": "other", "floating_users": 2}]))
    page = await log_in(browser, api)
    await page.get_by_role("link", name="Licenses", exact=True).click()
    await page.get_by_label("Import a license file from the vendor").set_input_files(str(lic))
    await page.get_by_role("button", name="Import", exact=True).click()
    await expect(page.get_by_role("heading", name="License file imported")).to_be_visible()
    await expect(page.locator("dl.facts")).to_contain_text("2002")
    assert (await api.license(2002))["floating_users"] == 2
    await page.get_by_role("link", name="Back to licenses").click()
    await expect(page.locator("table").nth(1)).to_contain_text("other")

    async with page.expect_download() as download:
        await page.get_by_role("button", name="Download an activation request").click()
    saved = await (await download.value).path()
    assert saved is not None and Path(saved).read_text().strip()


async def _script_a_week(api: Api) -> list[int]:
    """Seven days of seats on license 1001 (3 seats): on day d, d % 3 + 1 users for 20 minutes at 10:00, and on
    day 2 a fourth user who is refused. The peaks, per day."""
    await api.login("admin", "admin-password")
    peaks = []
    for day in range(7):
        api.clock.advance(timedelta(hours=10))
        users = [f"u{day}-{n}" for n in range(day % 3 + 1)]
        for user in users:
            assert (await api.register(user))[0] == 200
        if day == 2:
            assert (await api.register("one-too-many"))[0] == 400
        api.clock.advance(timedelta(minutes=20))
        for user in users:
            assert (await api.post("/api/v4/unregister", {"product": "demo", "user": user}))[0] == 200
        api.clock.advance(timedelta(hours=13, minutes=40))
        peaks.append(len(users))
    return peaks


async def test_history_shows_a_scripted_week_as_chart_and_table_and_downloads_csv(
    api_factory: Any, browser: Browser
) -> None:
    api: Api = await api_factory(clock=ManualClock(datetime(2026, 1, 8, tzinfo=UTC)))  # a week ago, at midnight
    peaks = await _script_a_week(api)
    page = await log_in(browser, api)
    await page.get_by_role("link", name="History", exact=True).click()
    await page.get_by_label("Range").select_option("7d")
    await page.get_by_role("button", name="Show").click()
    rows = page.locator("table.history tbody tr")
    await expect(rows).to_have_count(7 * 24)  # hourly, seven days (the clock is on the hour)
    await expect(page.locator("figure.chart rect.peak")).to_have_count(7 * 24)
    await expect(page.locator("figure.chart line.limit")).to_have_count(1)
    table = [await cells.inner_text() for cells in await page.locator("table.history tbody tr").all()]
    peak_cells = [int(line.split("\t")[2].split()[0]) for line in table]
    denied = [int(line.split("\t")[6]) for line in table]
    assert sorted(p for p in peak_cells if p) == sorted(peaks) and sum(denied) == 1
    await screenshot(page, "history")

    async with page.expect_download() as download:
        await page.get_by_role("link", name="Download CSV").click()
    saved = await (await download.value).path()
    assert saved is not None
    parsed = list(csv.DictReader(io.StringIO(Path(saved).read_text())))
    assert len(parsed) == 7 * 24 and [int(r["peak"]) for r in parsed] == peak_cells
    assert sum(int(r["denials"]) for r in parsed) == 1 and {r["limit"] for r in parsed} == {"3"}


async def test_a_viewer_sees_no_action_and_a_forged_post_is_refused(api_factory: Any, browser: Browser) -> None:
    api: Api = await api_factory(
        lambda d: d["auth"]["users"].append({"username": "watcher", "password": "watcher-pass-1", "role": "viewer"})
    )
    await api.register("alice")
    [seat] = await api.seats()
    page = await log_in(browser, api, "watcher", "watcher-pass-1")
    for path in ["/ui/", "/ui/seats", "/ui/history", "/ui/denials", "/ui/usage", "/ui/licenses", "/ui/sync"]:
        await page.goto(url(api, path))
        # Filters (GET forms) only: no form that changes anything, no action link; Log out is in the header.
        await expect(page.locator("main form[method=post]")).to_have_count(0)
        await expect(page.locator("main button:not(form[method=get] button)")).to_have_count(0)
        await expect(page.locator("main a.button.danger")).to_have_count(0)
        await expect(page.get_by_role("link", name="Users")).to_have_count(0)
    # A form the viewer's own browser submits (built in the page, with the viewer's valid CSRF token).
    await page.evaluate(
        """seat => {
            const form = document.createElement("form");
            form.method = "post";
            form.action = "/ui/seats/" + seat + "/end";
            form.append(document.querySelector("input[name=csrf_token]").cloneNode());
            document.body.append(form);
            form.submit();
        }""",
        seat["id"],
    )
    await expect(page.get_by_role("alert")).to_contain_text("this needs the admin role")
    assert len(await api.seats()) == 1


async def test_a_same_site_post_without_the_csrf_token_is_refused(api_factory: Any, browser: Browser) -> None:
    api: Api = await api_factory()
    await api.register("alice")
    [seat] = await api.seats()
    page = await log_in(browser, api)
    await page.goto(url(api, f"/ui/seats/{seat['id']}/end"))
    # The admin's own page, its form stripped of the token: same site, valid session, no CSRF token.
    await page.locator("main input[name=csrf_token]").evaluate("input => input.remove()")
    await page.get_by_role("button", name=f"End seat {seat['id']}").click()
    await expect(page.get_by_role("alert")).to_contain_text("did not come from this console")
    assert len(await api.seats()) == 1
    bare = await page.request.post(url(api, f"/ui/seats/{seat['id']}/end"), form={})
    assert bare.status == 403 and len(await api.seats()) == 1


async def test_logging_out_makes_the_old_cookie_useless(api_factory: Any, browser: Browser) -> None:
    api: Api = await api_factory()
    page = await log_in(browser, api)
    [cookie] = [c for c in await page.context.cookies() if c["name"] == "floatsrv_session"]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/ui/"
    await page.get_by_role("button", name="Log out").click()
    await expect(page.get_by_role("heading", name="Log in to floatsrv")).to_be_visible()
    replay: BrowserContext = await browser.new_context()
    copy: SetCookieParam = {"name": cookie["name"], "value": cookie["value"], "url": url(api, "/ui/")}
    await replay.add_cookies([copy])  # a copy of the cookie taken before logging out
    stale = await replay.new_page()
    await stale.goto(url(api, "/ui/seats"))
    await expect(stale).to_have_url(re.compile(r".*/ui/login\?next=%2Fui%2Fseats$"))


async def test_every_page_renders_is_keyboard_reachable_and_is_photographed(api_factory: Any, browser: Browser) -> None:
    api: Api = await api_factory()
    await api.register("alice", os_hostname="cad-01")
    await api.post("/api/v4/add_consumption", {"product": "demo", "user": "alice", "consumptions": 4})
    page = await log_in(browser, api)
    await screenshot(page, "overview")
    for name in ("seats", "history", "denials", "usage", "licenses", "users", "audit", "sync", "password"):
        await page.goto(url(api, f"/ui/{name}"))
        await expect(page.locator("h1")).to_be_visible()
        await screenshot(page, name)
        await every_control_takes_the_focus(page, name)
    await page.goto(url(api, "/ui/seats/999999/end"))
    await expect(page.get_by_role("alert")).to_contain_text("no seat 999999")
    await screenshot(page, "error")
    # Times are shown in the browser's zone; UTC stays on hover.
    await page.goto(url(api, "/ui/seats"))
    first_time = page.locator("main time").first
    assert (await first_time.get_attribute("title") or "").endswith("UTC")
    assert "GMT+9" in await first_time.inner_text()  # the browser's zone (Tokyo), not UTC
    # Keyboard only: Tab reaches the first seat's End button.
    for _ in range(40):
        await page.keyboard.press("Tab")
        focused = await page.evaluate("document.activeElement.textContent")
        if focused.startswith("End seat"):
            break
    else:
        pytest.fail("Tab never reached the End seat control")
    phone = await browser.new_page(viewport={"width": 390, "height": 844})
    session = [c for c in await page.context.cookies() if c["name"] == "floatsrv_session"][0]
    await phone.context.add_cookies([{"name": session["name"], "value": session["value"], "url": url(api, "/ui/")}])
    for name in ("", "seats", "history", "denials", "usage", "licenses", "users", "audit", "sync"):
        await phone.goto(url(api, f"/ui/{name}"))
        await expect(phone.locator("h1")).to_be_visible()
        # Only tables scroll sideways on a phone; the page itself fits.
        assert await phone.evaluate("document.documentElement.scrollWidth") <= 390 + 1, name
    await phone.goto(url(api, "/ui/"))
    await screenshot(phone, "overview-phone")
