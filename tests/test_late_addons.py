"""A late usage event is judged by the allowance in force in the period it belongs to (issue 18, item 3): the
add-ons active when that period ended, not today's."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from tests.conftest import BOTH_BACKENDS, Api
from tests.metering_config import metering_license

pytestmark = BOTH_BACKENDS

JAN_10, JAN_20, JAN_25 = (datetime(2026, 1, d, 12, tzinfo=UTC) for d in (10, 20, 25))
FEB_2 = datetime(2026, 2, 2, 12, tzinfo=UTC)


@pytest.fixture
async def admin(api_factory: Any) -> Api:
    api: Api = await api_factory(metering_license)
    await api.login("admin", "admin-password")
    return api


async def use(api: Api, event_id: str, quantity: int, at: datetime | None = None) -> tuple[int, Any]:
    body: dict[str, Any] = {"event_id": event_id, "product": "demo", "feature": "api", "quantity": quantity}
    if at is not None:
        body["occurred_at"] = at.isoformat().replace("+00:00", "Z")
    return await api.post("/v1/usage/events", body)


async def more_api(api: Api) -> str:
    status, body = await api.post(
        "/v1/addons",
        {"name": "More API", "base_price": "0", "feature": "api", "consumption_model": "metered", "included_units": 5},
    )
    assert status == 200, body
    addon_id: str = body["data"]["id"]
    return addon_id


async def set_clock(api: Api, at: datetime) -> None:
    api.clock.set(at)
    await api.login("admin", "admin-password")  # a fresh token for the new time


async def test_an_add_on_attached_later_does_not_lift_an_earlier_period(admin: Api) -> None:
    await set_clock(admin, JAN_10)
    assert (await use(admin, "jan-full", 10))[0] == 200  # January's 10 included units used up
    addon = await more_api(admin)
    await set_clock(admin, FEB_2)
    assert (await admin.post("/v1/licenses/1001/addons", {"addon_id": addon}))[0] == 200  # February only
    status, body = await use(admin, "late", 3, JAN_20)
    assert status == 422 and body["error"]["code"] == "limit_exceeded", body
    status, body = await use(admin, "now", 3)
    assert status == 200 and body["data"]["consumption"]["included"] == "15", body


async def test_a_detached_add_on_still_counts_for_the_period_it_was_active_in(admin: Api) -> None:
    await set_clock(admin, JAN_10)
    addon = await more_api(admin)
    assert (await admin.post("/v1/licenses/1001/addons", {"addon_id": addon}))[0] == 200
    assert (await use(admin, "jan", 12))[0] == 200  # 10 included + 5 from the add-on in January
    await set_clock(admin, FEB_2)
    async with admin.client.delete(f"/v1/licenses/1001/addons/{addon}", headers=admin.headers()) as resp:
        assert resp.status == 200
    status, body = await use(admin, "late", 2, JAN_25)
    assert status == 200, body
    assert (body["data"]["consumption"]["current"], body["data"]["consumption"]["included"]) == ("14", "15")
    status, body = await use(admin, "feb", 11)  # February: back to 10 included
    assert status == 422, body
