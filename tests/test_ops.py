"""Probes and metrics: /healthz, /readyz and /metrics (Prometheus text, parsed with prometheus_client)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from floatsrv.db.migrate import latest_version
from tests.conftest import Api, basic
from tests.scrape import scrape, value

METRICS_TOKEN = "scrape-me-0123456789"


def with_metrics_token(data: dict[str, Any]) -> None:
    data["metrics"] = {"token": METRICS_TOKEN}


async def test_healthz_and_readyz_are_public(api: Api) -> None:
    async with api.client.get("/healthz") as resp:
        assert resp.status == 200 and (await resp.json())["status"] == "ok"
    async with api.client.get("/readyz") as resp:
        body = await resp.json()
        assert resp.status == 200, body
    assert body["status"] == "ready"
    checks = body["checks"]
    assert checks["database"] == {"status": "ok"}
    assert checks["migrations"] == {"status": "ok", "version": latest_version(), "expected": latest_version()}
    assert checks["config"] == {"status": "ok", "licenses": 1}
    assert checks["clock"] == {"status": "ok"}
    # The database files are private to the server's user, whatever the umask.
    for name in ("floatsrv.db", "floatsrv.db-wal", "floatsrv.db-shm"):
        assert (api.config.storage.data_dir / name).stat().st_mode & 0o777 == 0o600, name


async def test_metrics_count_what_happened(api_factory: Any) -> None:
    api: Api = await api_factory(with_metrics_token)
    for user in ("ann", "bob", "cid"):
        assert (await api.register(user))[0] == 200
    status, body = await api.register("dan")  # the fourth on a 3-seat license
    assert status == 400 and body["code"] == "floating_not_available", body
    feature_seat = {"product": "demo", "user": "ann", "feature": "export"}
    assert (await api.post("/api/v4/featureRegister", feature_seat))[0] == 200
    for quantity in (5, 7):
        status, body = await api.post(
            "/api/v4/add_feature_consumption",
            {"product": "demo", "user": "ann", "feature": "render", "consumptions": quantity},
        )
        assert status == 200, body
    async with api.client.get("/auth", headers={"Authorization": basic("demo", "wrong-password")}) as resp:
        assert resp.status == 401
    async with api.client.get("/v1/licenses", headers={"Authorization": "Bearer not-a-token"}) as resp:
        assert resp.status == 401

    api.clock.advance(timedelta(seconds=30))  # the pending changes are now 30 s old

    samples = await scrape(api, METRICS_TOKEN)
    seat = {"license_id": "1001", "product": "demo", "feature": ""}
    export = {**seat, "feature": "export"}
    render = {**seat, "feature": "render"}
    assert value(samples, "floatsrv_seats_in_use", **seat) == 3
    assert value(samples, "floatsrv_seats_limit", **seat) == 3
    assert value(samples, "floatsrv_seats_in_use", **export) == 1
    assert value(samples, "floatsrv_seats_limit", **export) == 2
    assert value(samples, "floatsrv_consumption_period_units", **render) == 12
    assert value(samples, "floatsrv_seat_denials_total", license_id="1001", feature="") == 1
    assert value(samples, "floatsrv_auth_failures_total", code="unauthorized") == 1
    assert value(samples, "floatsrv_auth_failures_total", code="invalid_token") == 1
    register = {"route": "/api/v4/register", "method": "POST"}
    assert value(samples, "floatsrv_http_requests_total", **register, status="200") == 3
    assert value(samples, "floatsrv_http_requests_total", **register, status="400") == 1
    assert value(samples, "floatsrv_http_request_duration_seconds_count", route="/api/v4/register") == 4
    # Cumulative buckets: all four answered within 10 s; +Inf holds every one.
    latency = {"route": "/api/v4/register"}
    assert value(samples, "floatsrv_http_request_duration_seconds_bucket", **latency, le="10.0") == 4
    assert value(samples, "floatsrv_http_request_duration_seconds_bucket", **latency, le="+Inf") == 4
    assert value(samples, "floatsrv_http_request_duration_seconds_sum", **latency) > 0
    # The counter changes are owed to the vendor: the air-gap channel has them pending.
    assert value(samples, "floatsrv_sync_pending_records", channel="airgap") == 1
    assert value(samples, "floatsrv_sync_lag_seconds", channel="airgap") == 30
    assert value(samples, "floatsrv_db_storage_fault") == 0
    assert value(samples, "floatsrv_db_commits_total") > 0
    assert value(samples, "floatsrv_licenses") == 1
    assert value(samples, "floatsrv_clock_backward_jumps_total") == 0


async def test_metrics_access(api_factory: Any) -> None:
    api: Api = await api_factory(with_metrics_token)
    async with api.client.get("/metrics") as resp:
        assert resp.status == 401 and (await resp.json())["code"] == "unauthorized"
    await scrape(api)  # the demo user's own token (role user, above viewer) may read it
    await scrape(api, METRICS_TOKEN)
    # The metrics token reads metrics and nothing else.
    status, body = await api.get("/v1/licenses", token=METRICS_TOKEN)
    assert status == 401 and body["error"]["code"] == "invalid_token"
    status, body = await api.get("/metrics", token="scrape-me-0123456780")
    assert status == 401
