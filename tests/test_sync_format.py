"""The `floatsrv` sync format's version (docs/sync.md, Versions): every batch says it (`format_version`: 2), the
published schema takes batches with and without it, and an upstream made for version 1 (no `holdings` in its
replies, 404 at GET holdings) still gets every unit exactly once, with no rollback reported."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import jsonschema
import pytest
from structlog.testing import capture_logs

from tests.conftest import Api, _serving
from tests.scrape import scrape, value
from tests.upstreams import SCHEMA, FloatsrvUpstream, synced


@pytest.fixture
async def version_1_upstream() -> AsyncIterator[tuple[FloatsrvUpstream, str]]:
    async for served in _serving(FloatsrvUpstream(offers_holdings=False), "/ingest"):
        yield served


async def consume(api: Api, count: int) -> None:
    for _ in range(count):
        body = {"product": "demo", "user": "ann", "feature": "render", "consumptions": 1}
        status, answer = await api.post("/api/v4/add_feature_consumption", body)
        assert status == 200, answer


async def sync_now(api: Api, admin: str) -> dict[str, Any]:
    status, body = await api.post("/v1/sync/run", {}, token=admin)
    assert status == 200, body
    run: dict[str, Any] = body["data"]["run"]
    return run


def render_total(upstream: FloatsrvUpstream) -> Decimal:
    return sum((total for (_, feature, _), total in upstream.totals().items() if feature == "render"), Decimal(0))


async def test_every_batch_says_its_format_version(api_factory: Any, floatsrv_upstream: Any) -> None:
    upstream, url = floatsrv_upstream
    api: Api = await api_factory(synced(url))
    await consume(api, 2)
    admin = await api.login("admin", "admin-password")
    assert (await sync_now(api, admin))["ok"] is True
    assert upstream.format_versions == [2] and render_total(upstream) == 2, upstream.format_versions
    # The schema: optional (a version-1 batch, from a server before the field, still validates), an integer.
    version_1 = {"server_id": "fs-1", "sent_at": "2026-02-01T10:00:00.000Z", "records": []}
    jsonschema.validate(version_1, SCHEMA)
    jsonschema.validate({**version_1, "format_version": 2}, SCHEMA)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**version_1, "format_version": "2"}, SCHEMA)


async def test_an_upstream_without_holdings_gets_every_unit_exactly_once_and_no_rollback(
    api_factory: Any, version_1_upstream: tuple[FloatsrvUpstream, str]
) -> None:
    upstream, url = version_1_upstream
    with capture_logs() as logs:
        api: Api = await api_factory(synced(url), subdir="site")
        await consume(api, 3)
        admin = await api.login("admin", "admin-password")
        # Stored, then failed: the server sends again, and the upstream keeps one total.
        upstream.faults.store_then_fail = 1.0
        assert (await sync_now(api, admin))["ok"] is False
        upstream.faults.off()
        assert (await sync_now(api, admin))["ok"] is True
        assert render_total(upstream) == 3 and len(upstream.batches) == 2, upstream.totals()
        sent = upstream.requests
        assert (await sync_now(api, admin))["ok"] is True
        assert upstream.requests == sent  # nothing owed: nothing sent
        assert upstream.holdings_asked == 1  # asked once after the start: 404, not offered

        # A restart asks again (404 again), and new usage goes out on top of what the upstream has.
        await api.client.close()
        api = await api_factory(synced(url), subdir="site")
        await consume(api, 2)
        admin = await api.login("admin", "admin-password")
        assert (await sync_now(api, admin))["ok"] is True
        assert render_total(upstream) == 5 and upstream.holdings_asked == 2, upstream.totals()
        [render] = [f for f in (await api.license())["features"] if f["code"] == "render"]
        assert render["consumption"]["total"] == "5", render
        _, body = await api.get("/v1/sync", token=admin)
        [vendor] = body["data"]["channels"]
        assert (vendor["pending_records"], vendor["parked_batches"]) == (0, 0), vendor

        # No rollback is reported: not in the log, /readyz, the metric, nor to the upstream.
        status, ready = await api.get("/readyz")
        assert status == 200 and ready["checks"]["usage_rollback"] == {"status": "ok"}, ready
        assert value(await scrape(api), "floatsrv_usage_rollback_detected") == 0
    assert not [entry for entry in logs if entry["event"] == "usage_rollback_detected"]
    assert upstream.lower_totals == [] and all(flags == {} for flags in upstream.flags), upstream.flags
    assert upstream.format_versions == [2, 2, 2], upstream.format_versions
