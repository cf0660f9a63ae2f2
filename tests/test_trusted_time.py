"""Trusted time (issue 16): licenses are judged at the later of the clock and the latest time the server has
seen; a system clock set back past `licensing.clock_tolerance_hours` is clock tampering (log, /readyz, metric,
the vendor's next batch); a small step back is not; a file dated a little ahead is accepted without moving any
seat's expiry, and one dated far ahead is refused. In-process servers on one data directory, restarted with
their clock source moved; an air-gapped usage report made after tampering carries `clock_tampered: true`."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from structlog.testing import capture_logs

from floatsrv.clock import ManualClock
from tests.conftest import Api
from tests.licensing import LONG_AGO, signed_file
from tests.scrape import scrape, value
from tests.upstreams import UPSTREAM_TOKEN

T0 = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


def expiring(data: dict[str, Any]) -> None:
    data["licenses"][0]["validity_period"] = (T0 + timedelta(days=1)).isoformat()


async def restart(api_factory: Any, api: Api, at: datetime) -> Api:
    await api.client.close()
    restarted: Api = await api_factory(expiring, clock=ManualClock(at), subdir="site")
    return restarted


async def clock_check(api: Api) -> dict[str, Any]:
    async with api.client.get("/readyz") as resp:
        body = await resp.json()
        assert resp.status == 200, body  # a clock warning never makes the server unready
    check: dict[str, Any] = body["checks"]["clock"]
    return check


async def test_a_clock_set_back_days_is_tampering_and_expired_stays_expired(api_factory: Any) -> None:
    api: Api = await api_factory(expiring, clock=ManualClock(T0 + timedelta(days=2)), subdir="site")
    status, body = await api.register("ann")
    assert status == 400 and body["code"] == "license_expired", body
    with capture_logs() as logs:
        api = await restart(api_factory, api, T0 - timedelta(days=1))  # three days back
    status, body = await api.register("ann")
    assert status == 400 and body["code"] == "license_expired", body  # still expired
    check = await clock_check(api)
    assert check["status"] == "warning" and check["clock_tampered"] is True, check
    [line] = [entry for entry in logs if entry["event"] == "clock_tampered"]
    assert line["behind_hours"] >= 72 and line["time_mark"].startswith("2026-03-12"), line
    samples = await scrape(api)
    assert value(samples, "floatsrv_clock_tampered") == 1
    await api.login("admin", "admin-password")
    status, rows = await api.get("/v1/audit?action=clock_tampered")
    assert status == 200 and rows["data"]["data"], rows


async def test_an_hour_back_is_not_tampering(api_factory: Any) -> None:
    api: Api = await api_factory(expiring, clock=ManualClock(T0), subdir="site")
    assert (await api.register("ann"))[0] == 200
    with capture_logs() as logs:
        api = await restart(api_factory, api, T0 - timedelta(hours=1))
    assert (await api.register("ann"))[0] == 200
    assert "clock_tampered" not in await clock_check(api)
    assert not [entry for entry in logs if entry["event"] == "clock_tampered"]
    assert value(await scrape(api), "floatsrv_clock_tampered") == 0


async def test_a_file_dated_ahead_within_tolerance_moves_no_seat(api_factory: Any) -> None:
    api: Api = await api_factory(expiring, clock=ManualClock(T0), subdir="site")
    await api.login("admin", "admin-password")
    assert (await api.register("ann"))[0] == 200
    [before] = await api.seats(state="held")
    cad = [{"id": 3001, "product": "cad", "floating_users": 1}]
    ahead = signed_file(cad, series="ahead", issued_at=T0 + timedelta(hours=2), not_before=LONG_AGO)
    status, body = await api.post("/v1/license-files", {"license_file": ahead})
    assert status == 201, body
    [after] = await api.seats(state="held")
    assert after["expires_at"] == before["expires_at"], (before, after)
    assert (await api.register("ann"))[0] == 200  # a heartbeat: expiry from the server's clock, not the file's
    [renewed] = await api.seats(state="held")
    assert renewed["expires_at"] == before["expires_at"], renewed
    # 27 h ahead of the clock, 25 h ahead of the mark (which the first file moved to T0 + 2 h): refused.
    far = signed_file(cad, series="far", issued_at=T0 + timedelta(hours=27), not_before=LONG_AGO)
    status, body = await api.post("/v1/license-files", {"license_file": far})
    assert status == 422 and body["error"]["code"] == "license_file_from_future", body


async def test_the_vendor_is_told_of_a_tampered_clock(api_factory: Any, floatsrv_upstream: Any) -> None:
    upstream, url = floatsrv_upstream

    def synced(data: dict[str, Any]) -> None:
        expiring(data)
        data["licenses"][0]["validity_period"] = None
        data["sync"] = {
            "interval_seconds": 3600,
            "shutdown_timeout_seconds": 0,
            "upstreams": [{"name": "vendor", "url": url, "token": UPSTREAM_TOKEN}],
        }

    api: Api = await api_factory(synced, clock=ManualClock(T0 + timedelta(days=2)), subdir="site")
    consume = {"product": "demo", "user": "ann", "feature": "render", "consumptions": 1}
    assert (await api.post("/api/v4/add_feature_consumption", consume))[0] == 200
    await api.login("admin", "admin-password")
    assert (await api.post("/v1/sync/run", {}))[0] == 200
    assert upstream.flags and not upstream.flags[-1], upstream.flags  # an honest clock: no flag
    await api.client.close()
    api = await api_factory(synced, clock=ManualClock(T0 - timedelta(days=1)), subdir="site")
    assert (await api.post("/api/v4/add_feature_consumption", consume))[0] == 200
    await api.login("admin", "admin-password")
    assert (await api.post("/v1/sync/run", {}))[0] == 200
    assert upstream.flags[-1] == {"clock_tampered": True}, upstream.flags


async def test_an_air_gapped_usage_report_says_the_clock_was_tampered_with(api_factory: Any, tmp_path: Path) -> None:
    """`floatsrv usage export` runs on the system clock (the real one here): a server that saw a time 3 days
    ahead of it (its mark) has had its clock set back, and the report it writes says so."""
    consume = {"product": "demo", "user": "ann", "feature": "render", "consumptions": 1}

    def unexpiring(data: dict[str, Any]) -> None:
        data["licenses"][0]["validity_period"] = None

    async def export(name: str) -> dict[str, Any]:
        report = tmp_path / f"{name}.fsr"
        made = await api.cli("usage", "export", "--out", str(report))
        assert made.returncode == 0 and "wrote 1 records" in made.stdout, (made.stdout, made.stderr)
        payload: dict[str, Any] = json.loads(report.read_bytes().split(b"\n")[1])
        return payload

    now = datetime.now(UTC)
    api: Api = await api_factory(unexpiring, clock=ManualClock(now), subdir="site")
    assert (await api.post("/api/v4/add_feature_consumption", consume))[0] == 200
    honest = await export("honest")
    assert "clock_tampered" not in honest and honest["records"], honest  # an honest clock: no flag
    await api.client.close()
    # The server runs 3 days ahead of the system clock (the mark moves there); the system clock, read by the
    # export, is then 3 days behind the latest time this server has seen.
    api = await api_factory(unexpiring, clock=ManualClock(now + timedelta(days=3)), subdir="site")
    assert (await api.post("/api/v4/add_feature_consumption", consume))[0] == 200
    await api.client.close()
    tampered = await export("tampered")
    assert tampered["clock_tampered"] is True and tampered["records"], tampered
