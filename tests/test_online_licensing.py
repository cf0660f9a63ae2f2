"""Online activation and refresh (issue 16) against a local vendor upstream: activation at start-up, a refresh
that raises seats live while seats are held, the upstream down for longer than the refresh interval (the file in
force stays, also when the periodic refresher itself meets the outage), and a `refresh_by` passing with the
upstream down (warnings first, then the licenses stop)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from structlog.testing import capture_logs

from floatsrv.clock import ManualClock
from floatsrv.upstream import UpstreamError
from floatsrv.workers.licensefetch import FETCHER
from tests.conftest import Api, _serving
from tests.polling import wait_until
from tests.scrape import scrape, value
from tests.upstreams import UPSTREAM_TOKEN, FloatsrvUpstream, VendorLicensing

T0 = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
REFRESH_BY = T0 + timedelta(days=10)


def cad(seats: int) -> list[dict[str, Any]]:
    return [{"id": 2001, "product": "cad", "floating_users": seats, "floating_timeout": 600}]


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
async def vendor(clock: ManualClock) -> AsyncIterator[tuple[VendorLicensing, str]]:
    upstream = FloatsrvUpstream()
    licensing = VendorLicensing(upstream, cad(2), refresh_by=REFRESH_BY, now=clock.now)
    async for _, url in _serving(upstream, "/ingest"):
        yield licensing, url


def online(url: str, refresh_interval: float = 3600) -> Any:
    def mutate(data: dict[str, Any]) -> None:
        data["sync"] = {
            "interval_seconds": 3600,
            "shutdown_timeout_seconds": 0,
            "upstreams": [{"name": "vendor", "url": url, "token": UPSTREAM_TOKEN, "timeout_seconds": 2}],
        }
        data["licensing"] = {"upstream": "vendor", "refresh_interval_seconds": refresh_interval}

    return mutate


async def register(api: Api, user: str) -> tuple[int, Any]:
    return await api.post("/api/v4/register", {"product": "cad", "user": user})


async def files_check(api: Api) -> dict[str, Any]:
    async with api.client.get("/readyz") as resp:
        body = await resp.json()
        assert resp.status == 200, body
    check: dict[str, Any] = body["checks"]["license_files"]
    return check


async def test_activate_refresh_outage_and_refresh_by(api_factory: Any, vendor: tuple[VendorLicensing, str]) -> None:
    licensing, url = vendor
    clock = ManualClock(T0)
    api: Api = await api_factory(online(url), clock=clock)
    fetcher = api.app[FETCHER]

    async def serves_cad() -> bool:
        status, _ = await api.get("/api/v4/license?product=cad")
        return status == 200

    await wait_until(serves_cad, 10)  # activated at start-up
    assert licensing.activations == 1
    assert [(await register(api, user))[0] for user in ("ann", "bob")] == [200, 200]
    status, body = await register(api, "cid")
    assert status == 400 and body["code"] == "floating_not_available", body

    # The vendor grants a third seat; the next refresh applies it while two seats are held.
    [server_key] = licensing.files
    licensing.grant(server_key, cad(3), refresh_by=REFRESH_BY)
    assert await fetcher.refresh() == "imported"
    assert (await register(api, "cid"))[0] == 200
    assert {seat["user"] for seat in await api.seats(state="held") if seat["license_id"] == 2001} == {
        "ann", "bob", "cid"
    }  # fmt: skip
    assert await fetcher.refresh() == "unchanged"

    # The vendor is unreachable: refreshes fail, the file in force stays.
    licensing.upstream.faults.down = True
    for _ in range(3):
        with pytest.raises(UpstreamError):
            await fetcher.refresh()
    assert await serves_cad() and (await register(api, "ann"))[0] == 200

    # Within 7 days of refresh_by: warnings; past it with no newer file: the licenses stop.
    clock.set(REFRESH_BY - timedelta(days=3))
    check = await files_check(api)
    assert check["status"] == "warning" and [e["refresh_by"] for e in check["refresh_soon"]], check
    assert "must be refreshed" in check["message"]
    clock.set(REFRESH_BY + timedelta(minutes=1))
    status, body = await register(api, "dan")
    assert status == 400 and body["code"] == "license_expired", body
    check = await files_check(api)
    assert check["refresh_overdue"] and "not served" in check["message"], check
    refresh_by = value(
        await scrape(api), "floatsrv_license_file_refresh_by_timestamp_seconds", file_id=check["refresh_overdue"][0]
    )
    assert refresh_by == REFRESH_BY.timestamp()
    # The vendor is back: the next refresh brings a newer file, and the licenses are served again.
    licensing.upstream.faults.down = False
    licensing.grant(server_key, cad(3), refresh_by=REFRESH_BY + timedelta(days=30))
    assert await fetcher.refresh() == "imported"
    assert (await register(api, "dan"))[0] == 200


async def test_the_refresher_keeps_the_file_through_an_outage_longer_than_its_interval(
    api_factory: Any, vendor: tuple[VendorLicensing, str]
) -> None:
    """No direct refresh() here: the periodic refresher itself (interval 10 s, the least allowed) meets the
    upstream down for longer than its interval; the file in force stays, and the failures are logged."""
    licensing, url = vendor
    with capture_logs() as logs:
        api: Api = await api_factory(online(url, refresh_interval=10), clock=ManualClock(T0))

        async def serves_cad() -> bool:
            status, _ = await api.get("/api/v4/license?product=cad")
            return status == 200

        await wait_until(serves_cad, 10)  # the refresher's first step activated this server
        assert (await register(api, "ann"))[0] == 200
        [before] = [f for f in (await api.get("/v1/license-files"))[1]["data"]["data"] if f["series"] == "online"]
        licensing.upstream.faults.down = True
        loop = asyncio.get_running_loop()
        down_since = loop.time()

        async def refused_twice() -> bool:  # the step after the interval, then the retry after its backoff
            return licensing.refusals >= 2

        await wait_until(refused_twice, 40)
        assert loop.time() - down_since > 10, "the outage outlasted the refresh interval"
        # Still served: the held seat's heartbeat, a new seat, and the same file in force.
        assert (await register(api, "ann"))[0] == 200 and (await register(api, "bob"))[0] == 200
        [after] = [f for f in (await api.get("/v1/license-files"))[1]["data"]["data"] if f["series"] == "online"]
        assert (after["file_id"], after["state"]) == (before["file_id"], "in_force"), (before, after)
        assert (await files_check(api))["status"] == "ok"  # refresh_by is 10 days away: nothing to warn about
    failed = [e for e in logs if e["event"] == "license_refresh_failed"]
    assert failed and "503" in failed[0]["error"] and failed[0]["log_level"] == "warning", failed
    assert licensing.activations == 1  # an outage is not a reason to activate again
