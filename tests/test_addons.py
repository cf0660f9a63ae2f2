"""Add-ons: a catalog of extras per feature; activation raises the allowance at once and is charged
prorated over the rest of the period (exactly, for a known clock)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from tests.conftest import BOTH_BACKENDS, Api
from tests.metering_config import metering_license

pytestmark = BOTH_BACKENDS


@pytest.fixture
async def admin(api_factory: Any) -> Api:
    api: Api = await api_factory(metering_license)
    await api.login("admin", "admin-password")
    return api


async def check(api: Api, feature: str, quantity: Any = 1) -> dict[str, Any]:
    status, body = await api.post("/v1/usage/check", {"license_id": 1001, "feature": feature, "quantity": quantity})
    assert status == 200, body
    result: dict[str, Any] = body["data"]
    return result


async def create(api: Api, **fields: Any) -> dict[str, Any]:
    status, body = await api.post(
        "/v1/addons",
        {
            "name": "More API",
            "base_price": "31",
            "feature": "api",
            "consumption_model": "metered",
            "included_units": 5,
            **fields,
        },
    )
    assert status == 200, body
    addon: dict[str, Any] = body["data"]
    return addon


async def test_activation_turns_a_refusal_into_an_allowance_with_exact_proration(admin: Api) -> None:
    await admin.post("/v1/usage/events", {"event_id": "fill", "product": "demo", "feature": "api", "quantity": 10})
    assert (await check(admin, "api", 3))["allowed"] is False
    addon = await create(admin, overage_rate="0.2")
    # January has 31 days; at 16 Jan 12:00 UTC exactly half of it is left.
    admin.clock.set(datetime(2026, 1, 16, 12, tzinfo=UTC))
    status, body = await admin.post("/v1/licenses/1001/addons", {"addon_id": addon["id"]})
    assert status == 200, body
    activation = body["data"]
    assert (activation["prorated_charge"], activation["currency"], activation["status"]) == ("15.50", "USD", "active")
    assert activation["period"] == {"start": "2026-01-01T00:00:00.000Z", "end": "2026-02-01T00:00:00.000Z"}
    result = await check(admin, "api", 3)
    assert (result["allowed"], result["included"], result["remaining"]) == (True, "15", "5")
    assert (
        await admin.post("/v1/usage/events", {"event_id": "more", "product": "demo", "feature": "api", "quantity": 5})
    )[0] == 200
    status, body = await admin.get("/v1/licenses/1001/addons")
    assert [a["addon_id"] for a in body["data"]["data"]] == [addon["id"]]

    async with admin.client.delete(f"/v1/licenses/1001/addons/{addon['id']}", headers=admin.headers()) as resp:
        assert resp.status == 200 and (await resp.json())["data"]["status"] == "inactive"
    assert (await check(admin, "api", "0.001"))["allowed"] is False  # immediately back to 10 included


@pytest.mark.parametrize(
    ("at", "charge"),
    [
        (datetime(2026, 3, 1, tzinfo=UTC), "31.00"),
        (datetime(2026, 3, 31, tzinfo=UTC), "1.00"),
        (datetime(2026, 3, 31, 23, 59, 59, tzinfo=UTC), "0.00"),
        (datetime(2026, 3, 11, 8, tzinfo=UTC), "20.67"),
    ],
)
async def test_proration_to_the_cent(admin: Api, at: datetime, charge: str) -> None:
    addon = await create(admin)
    admin.clock.set(at)
    await admin.login("admin", "admin-password")
    status, body = await admin.post("/v1/licenses/1001/addons", {"addon_id": addon["id"]})
    assert status == 200 and body["data"]["prorated_charge"] == charge


async def test_seat_boolean_and_credit_addons(admin: Api) -> None:
    seats = await create(admin, name="More seats", feature="export", consumption_model="seats", included_units=1)
    beta = await create(admin, name="Beta", feature="beta", consumption_model="boolean", included_units=0)
    credits = await create(
        admin, name="Credit pack", feature="ai", consumption_model="credits", included_units=10, credit_cost="2"
    )
    for user in ("a", "b", "c"):
        await admin.register(user)
    for user in ("a", "b"):
        await admin.post("/api/v4/featureRegister", {"product": "demo", "user": user, "feature": "export"})
    status, body = await admin.post("/api/v4/featureRegister", {"product": "demo", "user": "c", "feature": "export"})
    assert body["code"] == "floating_not_available"
    assert (await check(admin, "beta"))["reason"] == "not_entitled"
    assert (await check(admin, "ai", 9))["allowed"] is False
    for addon in (seats, beta, credits):
        assert (await admin.post("/v1/licenses/1001/addons", {"addon_id": addon["id"]}))[0] == 200
    status, body = await admin.post("/api/v4/featureRegister", {"product": "demo", "user": "c", "feature": "export"})
    assert status == 200 and body["floating_users"] == 3
    assert (await check(admin, "beta"))["allowed"] is True
    result = await check(admin, "ai", 15)  # 30 plan credits at 2 each
    assert (result["allowed"], result["plan_credits"], result["estimated_credits"]) == (True, "30", "30")


async def test_catalog_rules(admin: Api) -> None:
    addon = await create(admin)
    status, body = await admin.post("/v1/addons", {"name": "Again", "feature": "api", "consumption_model": "metered"})
    assert (status, body["error"]["code"]) == (409, "addon_exists")  # one add-on per feature
    status, body = await admin.post("/v1/addons", {"name": "X", "feature": "api", "consumption_model": "weird"})
    assert (status, body["error"]["code"]) == (400, "validation_error")
    status, body = await admin.post(
        "/v1/addons", {"name": "X", "feature": "logs", "consumption_model": "metered", "base_price": "-1"}
    )
    assert (status, body["error"]["code"]) == (400, "validation_error")
    wrong = await create(admin, name="Wrong", feature="logs", consumption_model="credits")
    status, body = await admin.post("/v1/licenses/1001/addons", {"addon_id": wrong["id"]})
    assert (status, body["error"]["code"]) == (422, "addon_model_mismatch")
    status, body = await admin.post("/v1/licenses/1001/addons", {"addon_id": "addon_nope"})
    assert (status, body["error"]["code"]) == (404, "addon_not_found")
    assert (await admin.post("/v1/licenses/1001/addons", {"addon_id": addon["id"]}))[0] == 200
    status, body = await admin.post("/v1/licenses/1001/addons", {"addon_id": addon["id"]})
    assert (status, body["error"]["code"]) == (409, "addon_already_active")
    async with admin.client.delete(f"/v1/addons/{addon['id']}", headers=admin.headers()) as resp:
        assert resp.status == 409 and (await resp.json())["error"]["code"] == "addon_in_use"
    async with admin.client.put(
        f"/v1/addons/{addon['id']}",
        headers=admin.headers(),
        json={
            "name": "Even more API",
            "feature": "api",
            "consumption_model": "metered",
            "included_units": 50,
            "base_price": "40",
        },
    ) as resp:
        assert resp.status == 200 and (await resp.json())["data"]["included_units"] == 50
    assert (await check(admin, "api", 60))["allowed"] is True  # the active add-on's new size applies at once
    status, body = await admin.get(f"/v1/addons/{addon['id']}")
    assert (status, body["data"]["name"]) == (200, "Even more API")
    async with admin.client.delete(f"/v1/licenses/1001/addons/{addon['id']}", headers=admin.headers()) as resp:
        assert resp.status == 200
    async with admin.client.delete(f"/v1/addons/{addon['id']}", headers=admin.headers()) as resp:
        assert resp.status == 200
    status, body = await admin.get("/v1/addons")
    assert [a["id"] for a in body["data"]["data"]] == [wrong["id"]]


async def test_only_admins_manage_addons(admin: Api) -> None:
    addon = await create(admin)
    user = await admin.login()
    status, body = await admin.post("/v1/licenses/1001/addons", {"addon_id": addon["id"]}, token=user)
    assert status == 403
    assert (await admin.get("/v1/addons", token=user))[0] == 200  # reading the catalog is fine
