"""Credits: plan credits reset every period and are spent first; purchased credits never expire."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from floatsrv.config import ConfigError, parse_config
from tests.conftest import BOTH_BACKENDS, Api, example_dict
from tests.metering_config import metering_license

pytestmark = BOTH_BACKENDS


@pytest.fixture
async def admin(api_factory: Any) -> Api:
    api: Api = await api_factory(metering_license)
    await api.login("admin", "admin-password")
    return api


async def spend(api: Api, event_id: str, quantity: Any) -> tuple[int, Any]:
    return await api.post(
        "/v1/usage/events", {"event_id": event_id, "product": "demo", "feature": "ai", "quantity": quantity}
    )


async def balance(api: Api) -> dict[str, Any]:
    status, body = await api.get("/v1/licenses/1001/credits")
    assert status == 200, body
    result: dict[str, Any] = body["data"]
    return result


async def test_plan_then_purchased_and_the_ledger(admin: Api) -> None:
    status, body = await admin.post("/v1/licenses/1001/credits", {"amount": "12.5", "note": "PO-7"})
    assert status == 200 and body["data"]["purchased_credits"] == "12.5"
    assert (await balance(admin))["available"] == "32.5"
    status, body = await spend(admin, "e1", 10)  # 25 credits: 20 from the plan, 5 purchased
    assert status == 200
    consumption = body["data"]["consumption"]
    assert (
        consumption["credits_spent"],
        consumption["plan_credits_remaining"],
        consumption["purchased_credits_remaining"],
    ) == ("25", "0", "7.5")
    status, body = await spend(admin, "e2", 4)  # 10 credits > 7.5 left
    assert (status, body["error"]["code"]) == (422, "insufficient_credits")
    status, body = await spend(admin, "e3", "3.001")  # 7.5025 credits, rounded up to 7.503 > 7.5
    assert (status, body["error"]["code"]) == (422, "insufficient_credits")
    assert (await spend(admin, "e4", 3))[0] == 200
    status, body = await admin.get("/v1/licenses/1001/credits/ledger")
    entries = [(e["kind"], e["pool"], e["amount"]) for e in body["data"]["data"]]
    assert entries == [
        ("spend", "purchased", "-7.5"),
        ("spend", "purchased", "-5"),
        ("spend", "plan", "-20"),
        ("purchase", "purchased", "12.5"),
    ]
    current = await balance(admin)
    assert (current["plan_credits_remaining"], current["purchased_credits"], current["available"]) == ("0", "0", "0")


async def test_plan_credits_reset_purchased_ones_stay(admin: Api) -> None:
    await admin.post("/v1/licenses/1001/credits", {"amount": 5})
    assert (await spend(admin, "jan", 10))[0] == 200  # 25 = 20 plan + 5 purchased
    admin.clock.set(datetime(2026, 2, 1, tzinfo=UTC))
    await admin.login("admin", "admin-password")
    current = await balance(admin)
    assert (current["plan_credits_remaining"], current["purchased_credits"]) == ("20", "0")
    assert current["period"] == {"start": "2026-02-01T00:00:00.000Z", "end": "2026-03-01T00:00:00.000Z"}
    await admin.post("/v1/licenses/1001/credits", {"amount": 100})
    admin.clock.set(datetime(2026, 3, 1, tzinfo=UTC))
    await admin.login("admin", "admin-password")
    assert (await balance(admin))["available"] == "120"


@pytest.mark.parametrize("amount", ["0", "-5", "0.0001", "lots", None])
async def test_bad_grants(admin: Api, amount: Any) -> None:
    status, body = await admin.post("/v1/licenses/1001/credits", {"amount": amount})
    assert (status, body["error"]["code"]) == (400, "invalid_quantity"), body
    status, body = await admin.post("/v1/licenses/4040/credits", {"amount": 1})
    assert (status, body["error"]["code"]) == (404, "license_not_found")


async def test_grants_need_an_admin_and_are_audited(admin: Api) -> None:
    user = await admin.login()
    assert (await admin.post("/v1/licenses/1001/credits", {"amount": 1}, token=user))[0] == 403
    admin_token = await admin.login("admin", "admin-password")
    await admin.post("/v1/licenses/1001/credits", {"amount": 3}, token=admin_token)
    status, body = await admin.get("/v1/audit", token=admin_token, params={"action": "credits_granted"})
    [row] = body["data"]["data"]
    assert (row["actor"], row["target"], row["detail"]) == ("admin", "1001", {"amount": "3"})


@pytest.mark.parametrize("amount", ["1000000000000.001", "10000000000000", "1e17"])
def test_a_vendor_credit_grant_beyond_what_the_api_takes_is_refused_when_loaded(tmp_path: Path, amount: str) -> None:
    """A license's purchased-credit grant is bounded as any quantity the API takes (10^12): a larger one would
    overflow the ledger's thousandths when applied; it is refused at load, naming the field."""
    data = example_dict()
    data["licenses"] = [{"id": 2001, "product": "cad", "floating_users": 1}]
    metering_license(data)  # a license with credits features
    data["licenses"][0]["credit_grants"] = [{"id": "big-grant", "amount": amount}]
    with pytest.raises(ConfigError, match=r"licenses\[0\]\.credit_grants\[0\].*at most 1000000000000"):
        parse_config(yaml.safe_dump(data), tmp_path)
    data["licenses"][0]["credit_grants"][0]["amount"] = "1000000000000"
    parse_config(yaml.safe_dump(data), tmp_path)  # the bound itself is fine
