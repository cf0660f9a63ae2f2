"""What an admin must know about the terms in force is said at start-up, on reload and in /readyz, and never
makes the server unready (issue 18, items 8 and 9): an expired license, seats held above a lowered limit,
unsigned licenses. Only the database, its schema and the config give 503.

A server that keeps running into the 7-day window before a license file's `refresh_by` or `expires_at` says so
once per file and deadline (`license_files_need_attention`; issue 16), not at every tick of the license watch,
and not a second time for what its start-up line already said."""

from __future__ import annotations

import signal
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from structlog.testing import capture_logs

from floatsrv.clock import ManualClock
from floatsrv.workers import licensewatch
from floatsrv.workers.licensewatch import WATCH, LicenseWatch
from tests.conftest import Api, example_dict
from tests.licensing import demo_licenses, sign_licenses, signed_file
from tests.polling import wait_for, wait_until
from tests.procs import ServerProcess


def with_expired_license(data: dict[str, Any]) -> None:
    data["licenses"].append(
        {"id": 2002, "product": "old", "floating_users": 1, "validity_period": "2025-06-30T00:00:00Z"}
    )


async def test_warnings_keep_readyz_ready(api_factory: Any) -> None:
    api: Api = await api_factory(with_expired_license, signed=False)  # inline: unsigned terms, a warning too
    status, body = await api.get("/readyz")
    assert (status, body["status"]) == (200, "ready"), body
    checks = body["checks"]
    assert (checks["licenses"]["status"], checks["licenses"]["expired"]) == ("warning", [2002])
    assert "license_expired" in checks["licenses"]["message"]
    assert checks["entitlements"]["status"] == "warning"
    assert {name for name, check in checks.items() if check["status"] not in ("ok", "warning")} == set()
    view = (await api.get("/v1/licenses/2002"))[1]["data"]
    assert (view["enabled"], view["expired"]) == (True, True)


def test_expired_licenses_and_lowered_seats_are_said_at_start_reload_and_in_readyz(tmp_path: Path) -> None:
    config = example_dict()
    with_expired_license(config)
    server = ServerProcess(tmp_path, config)
    server.start()
    try:
        assert server.proc is not None
        wait_for(lambda: any(e["event"] == "licenses_expired" for e in server.log_lines()))
        [expired] = [e for e in server.log_lines() if e["event"] == "licenses_expired"]
        assert expired["licenses"] == [2002]
        token = server.token("demo", "demo-password")
        for user in ("ann", "bob", "cid"):
            assert server.request("POST", "/api/v4/register", {"product": "demo", "user": user}, token)[0] == 200

        lowered = yaml.safe_load(server.config_path.read_text())
        lowered["licenses"] = demo_licenses()
        lowered["licenses"][0]["floating_users"] = 1  # the vendor's new file: one seat, three held
        with_expired_license(lowered)
        sign_licenses(lowered, tmp_path)
        server.config_path.write_text(yaml.safe_dump(lowered))
        server.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: any(e["event"] == "seats_over_limit" for e in server.log_lines()))
        events = server.log_lines()
        [reloaded] = [e for e in events if e["event"] == "config_reloaded"]
        assert 1001 in reloaded["licenses_changed"], reloaded  # (2002 too: it now comes from the new file)
        [over] = [e for e in events if e["event"] == "seats_over_limit"]
        assert (over["license_id"], over["feature"], over["held"], over["limit"]) == (1001, None, 3, 1)

        status, body = server.request("GET", "/readyz")
        assert status == 200 and body["status"] == "ready", body
        assert body["checks"]["licenses"]["seats_over_limit"] == [
            {"license_id": 1001, "feature": None, "held": 3, "limit": 1}
        ]
        status, body = server.request("POST", "/api/v4/register", {"product": "demo", "user": "dan"}, token)
        assert (status, body["code"]) == (400, "floating_not_available"), body
    finally:
        assert server.stop() == 0


# --- a license file's refresh_by and expiry windows, entered while serving ---

T0 = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
REFRESH_BY = T0 + timedelta(days=10)
EXPIRES_AT = T0 + timedelta(days=12)
CAD = [{"id": 2001, "product": "cad", "floating_users": 2}]


@pytest.fixture
def fast_watch(monkeypatch: pytest.MonkeyPatch) -> None:
    """The watch ticks every 50 ms instead of every second: many ticks in a short test."""
    monkeypatch.setattr(licensewatch, "WATCH_INTERVAL_SECONDS", 0.05)


def trial_file() -> str:
    return signed_file(
        CAD, issued_at=T0 - timedelta(hours=1), refresh_by=REFRESH_BY, expires_at=EXPIRES_AT, series="trial",
        file_id="trial-1",
    )  # fmt: skip


def attention(logs: list[Any], file_id: str = "trial-1") -> list[Any]:
    return [e for e in logs if e["event"] == "license_files_need_attention" and e.get("file_id") == file_id]


async def ticks(api: Api, count: int) -> None:
    """Wait until the license watch has made `count` more steps."""
    watch: LicenseWatch = api.app[WATCH]
    until = watch.steps + count

    async def done() -> bool:
        return watch.steps >= until

    await wait_until(done, 10)


async def start_with_trial(api_factory: Any, clock: ManualClock) -> Api:
    api: Api = await api_factory(clock=clock, subdir="site")
    await api.login("admin", "admin-password")
    status, body = await api.post("/v1/license-files", {"license_file": trial_file()})
    assert status == 201, body
    return api


@pytest.mark.usefixtures("fast_watch")
async def test_entering_the_refresh_and_expiry_windows_while_serving_is_said_once_each(api_factory: Any) -> None:
    clock = ManualClock(T0)
    with capture_logs() as logs:
        api = await start_with_trial(api_factory, clock)
        await ticks(api, 5)
        assert attention(logs) == []  # 10 days before refresh_by, 12 before expiry: nothing to say yet

        clock.set(REFRESH_BY - timedelta(days=6))  # the refresh window is entered (expiry is 8 days away)

        async def said(count: int) -> bool:
            return len(attention(logs)) >= count

        await wait_until(lambda: said(1), 10)
        await ticks(api, 20)
        [refresh] = attention(logs)  # once, not at every tick
        assert refresh["refresh_by"] == "2026-03-20T12:00:00.000Z" and "expires_at" not in refresh, refresh
        assert "must be refreshed within 7 days" in refresh["message"] and refresh["licenses"] == [2001], refresh
        assert refresh["log_level"] == "warning"

        clock.set(EXPIRES_AT - timedelta(days=6))  # now the expiry window too (refresh_by is 4 days away)
        await wait_until(lambda: said(2), 10)
        await ticks(api, 20)
        first, expiry = attention(logs)
        assert first == refresh and expiry["expires_at"] == "2026-03-22T12:00:00.000Z", expiry
        assert "expires within 7 days" in expiry["message"] and "refresh_by" not in expiry, expiry

        # Past refresh_by: the overdue line (once), and no new window line.
        clock.set(REFRESH_BY + timedelta(minutes=1))

        async def overdue() -> bool:
            return any(e["event"] == "license_file_refresh_overdue" for e in logs)

        await wait_until(overdue, 10)
        await ticks(api, 20)
        assert len(attention(logs)) == 2
        assert len([e for e in logs if e["event"] == "license_file_refresh_overdue"]) == 1


@pytest.mark.usefixtures("fast_watch")
async def test_a_start_inside_the_window_says_it_in_the_start_up_line_only(api_factory: Any) -> None:
    api = await start_with_trial(api_factory, ManualClock(T0))
    await api.client.close()
    with capture_logs() as logs:
        # Restarted 3 days before refresh_by and 5 before expiry: both windows were entered while it was down.
        api = await api_factory(clock=ManualClock(REFRESH_BY - timedelta(days=3)), subdir="site")
        await ticks(api, 20)
    start_up = [e for e in logs if e["event"] == "license_files_need_attention" and "file_id" not in e]
    [line] = start_up
    assert "['trial-1'] must be refreshed" in line["message"], line
    assert "['trial-1'] expire within 7 days" in line["message"], line
    assert attention(logs) == []  # both deadlines were named in the start-up line: no line of their own
    ready = await api.client.get("/readyz")  # /readyz (and so `floatsrv status`) says the same
    files = (await ready.json())["checks"]["license_files"]
    assert files["status"] == "warning" and files["message"] == line["message"], files
