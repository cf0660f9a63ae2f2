"""/metrics as Prometheus expects it and as the other views show it (issue 18, item 11): no `_total` on a gauge,
the process collector, consumption limits (included and overage) from the same function as /v1/licenses, the
license's expiry as a Unix timestamp, and borrowed seats."""

from __future__ import annotations

import math
from datetime import timedelta
from decimal import Decimal
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Api
from tests.metering_config import metering_license
from tests.scrape import scrape, value
from tests.test_effective_views import addon, event, features_of


def expiring_metering_license(data: dict[str, Any]) -> None:
    metering_license(data)
    data["licenses"][0]["validity_period"] = "2027-06-30T00:00:00Z"


async def test_every_gauge_is_named_as_a_gauge_and_the_process_is_described(api: Api) -> None:
    async with api.client.get("/metrics", headers=api.headers(None)) as resp:
        text = await resp.text()
    families = {family.name: family.type for family in text_string_to_metric_families(text)}
    gauges_named_as_counters = sorted(
        name for name, kind in families.items() if kind == "gauge" and name.endswith("_total")
    )
    assert not gauges_named_as_counters, gauges_named_as_counters
    # The process collector: CPU, memory and open files of the server process.
    for name in (
        "process_cpu_seconds",
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_start_time_seconds",
    ):
        assert name in families, sorted(families)


async def test_limits_expiry_and_borrowed_seats_match_the_license_view(api_factory: Any) -> None:
    api: Api = await api_factory(expiring_metering_license)
    await api.login("admin", "admin-password")
    await addon(api, feature="api", consumption_model="metered", included_units=20)
    await addon(api, feature="export", consumption_model="seats", included_units=1)
    for n in range(17):
        await event(api, f"log-{n}", "logs", 1)
    await event(api, "ai-1", "ai", 2)
    until = (api.clock.now() + timedelta(hours=5)).isoformat().replace("+00:00", "Z")
    status, body = await api.post("/api/v4/borrow", {"product": "demo", "user": "a", "borrowed_until": until})
    assert status == 200, body
    assert (await api.register("b"))[0] == 200

    samples = await scrape(api)
    view = features_of(await api.license())
    counted = 0
    for code, feature in view.items():
        terms = feature["consumption"]
        if terms is None:
            continue
        labels = {"license_id": "1001", "product": "demo", "feature": code}
        assert Decimal(str(value(samples, "floatsrv_consumption_period_units", **labels))) == Decimal(terms["total"])
        included = value(samples, "floatsrv_consumption_included_units", **labels)
        assert Decimal(str(included)) == Decimal(terms["included"]), code
        overage = value(samples, "floatsrv_consumption_overage_limit_units", **labels)
        if terms["max_overages"] is None:
            assert math.isinf(overage), (code, overage)
        else:
            assert overage == terms["max_overages"], code
        counted += 1
    assert counted >= 4, view
    api_labels = {"license_id": "1001", "product": "demo", "feature": "api"}
    assert value(samples, "floatsrv_consumption_included_units", **api_labels) == 30  # 10 included + the add-on's 20
    export = {"license_id": "1001", "product": "demo", "feature": "export"}
    assert value(samples, "floatsrv_seats_limit", **export) == view["export"]["floating_users"] == 3
    seat = {"license_id": "1001", "product": "demo", "feature": ""}
    assert value(samples, "floatsrv_seats_borrowed", **seat) == 1
    assert value(samples, "floatsrv_seats_in_use", **seat) == 2
    expiry = value(samples, "floatsrv_license_expiry_timestamp_seconds", license_id="1001", product="demo")
    assert expiry == 1_814_313_600  # 2027-06-30T00:00:00Z
