"""Every view of a feature shows the same effective terms (issue 18, items 1 and 2): /v1/licenses, /v1/usage/check,
/api/v4 and `floatsrv licenses list --json`, with add-ons, soft limits and credits applied; and usage of a
boolean feature is counted and shown as the true total everywhere."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.conftest import Api
from tests.metering_config import metering_license


@pytest.fixture
async def admin(api_factory: Any) -> Api:
    api: Api = await api_factory(metering_license)
    await api.login("admin", "admin-password")
    return api


async def addon(api: Api, **fields: Any) -> None:
    status, body = await api.post("/v1/addons", {"name": "extra", "base_price": "0", **fields})
    assert status == 200, body
    status, body = await api.post("/v1/licenses/1001/addons", {"addon_id": body["data"]["id"]})
    assert status == 200, body


async def event(api: Api, event_id: str, feature: str, quantity: Any) -> dict[str, Any]:
    status, body = await api.post(
        "/v1/usage/events", {"event_id": event_id, "product": "demo", "feature": feature, "quantity": quantity}
    )
    assert status == 200, body
    data: dict[str, Any] = body["data"]
    return data


async def check(api: Api, feature: str) -> dict[str, Any]:
    status, body = await api.post("/v1/usage/check", {"license_id": 1001, "feature": feature, "quantity": 1})
    assert status == 200, body
    data: dict[str, Any] = body["data"]
    return data


def features_of(view: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f["code"]: f for f in view["features"]}


async def v4_features(api: Api) -> dict[str, dict[str, Any]]:
    status, body = await api.get("/api/v4/license")
    assert status == 200, body
    [license] = body if isinstance(body, list) else body["licenses"]
    return {f["code"]: f for f in license["product_features"]}


async def test_add_ons_soft_limits_and_credits_show_the_same_everywhere(admin: Api) -> None:
    await addon(admin, feature="api", consumption_model="metered", included_units=20)
    await addon(admin, feature="export", consumption_model="seats", included_units=1)
    for n in range(17):
        await event(admin, f"log-{n}", "logs", 1)  # soft limit: 10 included, 17 used
    await event(admin, "ai-1", "ai", 2)  # 5 of the 20 plan credits at 2.5 each

    v1 = features_of(await admin.license())
    assert (v1["api"]["consumption"]["included"], v1["api"]["consumption"]["capacity"]) == ("30", "30")
    assert v1["export"]["floating_users"] == 3
    logs = v1["logs"]["consumption"]
    assert (logs["total"], logs["included"], logs["capacity"], logs["soft_limit"]) == ("17", "10", None, True)
    assert logs["unlimited"] is True and logs["allow_overages"] is True
    ai = v1["ai"]["consumption"]
    assert (ai["total"], ai["included"], ai["capacity"]) == ("2", "8", "8")  # 20 credits buy 8 units

    assert (await check(admin, "api"))["included"] == "30"
    assert (await check(admin, "logs"))["allowed"] is True

    v4 = await v4_features(admin)
    assert (v4["api"]["max_consumption"], v4["export"]["floating_users"]) == (30, 3)
    assert v4["ai"]["max_consumption"] == 8 and v4["logs"]["allow_unlimited_consumptions"] is True

    listed = await admin.cli("licenses", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    cli = features_of(json.loads(listed.stdout)[0])  # the CLI's clock is the real one: another period, no usage
    assert cli["api"]["consumption"]["capacity"] == "30" and cli["export"]["floating_users"] == 3
    assert cli["ai"]["consumption"]["capacity"] == "8" and cli["logs"]["consumption"]["soft_limit"] is True


async def test_boolean_usage_is_counted_and_shown(admin: Api) -> None:
    first = await event(admin, "c-1", "clicks", 2)
    second = await event(admin, "c-2", "clicks", 2)
    assert (first["consumption"]["current"], second["consumption"]["current"]) == ("2", "4")
    assert (await check(admin, "clicks"))["current"] == "4"
    clicks = features_of(await admin.license())["clicks"]
    assert clicks["consumption"]["total"] == "4" and clicks["consumption"]["unlimited"] is True
    shown = await admin.cli("usage", "show", "--license", "1001", "--json")
    assert {(row["feature"], row["total"]) for row in json.loads(shown.stdout)} >= {("clicks", "4")}


async def test_estimated_amounts_are_money_for_what_would_be_accepted(admin: Api) -> None:
    await event(admin, "s-1", "storage", 11)  # 10 included, 1 overage unit at 0.5; at most 5 overage units
    status, body = await admin.post("/v1/usage/check", {"license_id": 1001, "feature": "storage", "quantity": "0.003"})
    assert status == 200 and body["data"]["estimated_amount"] == "0.00", body  # 0.0015 USD rounds to the cent
    status, body = await admin.post("/v1/usage/check", {"license_id": 1001, "feature": "logs", "quantity": 15})
    assert body["data"]["estimated_amount"] == "0.50", body  # soft limit: 5 units past 10 at 0.1
    status, body = await admin.post("/v1/usage/check", {"license_id": 1001, "feature": "storage", "quantity": 5})
    assert (body["data"]["allowed"], body["data"]["estimated_amount"]) == (False, None), body  # refused: no money


async def test_amounts_follow_the_currency_minor_unit(api_factory: Any) -> None:
    def in_yen(data: dict[str, Any]) -> None:
        metering_license(data)
        data["licenses"][0]["currency"] = "JPY"

    api: Api = await api_factory(in_yen)
    await api.login("admin", "admin-password")
    await event(api, "s-1", "storage", 10)
    status, body = await api.post("/v1/usage/check", {"license_id": 1001, "feature": "storage", "quantity": 3})
    assert (body["data"]["estimated_amount"], body["data"]["currency"]) == ("2", "JPY"), body  # 1.5 -> 2
