"""Consumption through /api/v4: LicenseSpring's limit rule, overage, negatives, and exact period resets."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.conftest import BOTH_BACKENDS, Api

pytestmark = BOTH_BACKENDS


async def consume(api: Api, n: Any, **extra: Any) -> tuple[int, Any]:
    return await api.post("/api/v4/add_consumption", {"product": "demo", "user": "a", "consumptions": n, **extra})


async def consume_feature(api: Api, n: Any, feature: str = "render") -> tuple[int, Any]:
    return await api.post(
        "/api/v4/add_feature_consumption", {"product": "demo", "user": "a", "feature": feature, "consumptions": n}
    )


async def test_license_consumption_counts_and_answers_the_counters(api: Api) -> None:
    status, body = await consume(api, 5)
    assert status == 200, body
    assert body["total_consumptions"] == 5 and body["max_consumptions"] == 1000
    assert (body["allow_overages"], body["max_overages"]) == (True, 100)
    assert (body["reset_consumption"], body["consumption_period"]) == (True, "monthly")
    status, body = await consume(api, "7")  # numbers as strings, as the docs' curl examples send them
    assert status == 200 and body["total_consumptions"] == 12
    assert (await api.license())["consumption"]["total"] == "12"


async def test_license_limit_includes_overage_and_rejects_whole(api: Api) -> None:
    assert (await consume(api, 1000))[0] == 200
    assert (await consume(api, 100))[0] == 200  # exactly max + max_overages
    status, body = await consume(api, 1)
    assert (status, body["code"]) == (400, "license_not_enough_consumptions")
    assert (await api.license())["consumption"]["total"] == "1100"  # unchanged by the refusal


async def test_request_can_narrow_but_never_widen_overages(api: Api) -> None:
    await consume(api, 1000)
    status, body = await consume(api, 1, allow_overages=False, max_overages=0)
    assert (status, body["code"]) == (400, "license_not_enough_consumptions")
    assert (await consume(api, 60, allow_overages=True, max_overages=50))[1][
        "code"
    ] == "license_not_enough_consumptions"
    assert (await consume(api, 50, allow_overages=True, max_overages=500))[0] == 200
    assert (await consume(api, 51, allow_overages=True, max_overages=500))[0] == 400  # license cap 100 wins


async def test_feature_consumption(api: Api) -> None:
    status, body = await consume_feature(api, 60)
    assert status == 200, body
    assert (body["code"], body["total_consumptions"], body["max_consumption"]) == ("render", 60, 100)
    assert body["max_overages"] == 0 and body["allow_overages"] is False
    assert (await consume_feature(api, 40))[1]["total_consumptions"] == 100
    status, body = await consume_feature(api, 1)
    assert (status, body["code"]) == (400, "feature_not_enough_consumptions")
    status, body = await consume_feature(api, 1, feature="export")
    assert (status, body["code"]) == (400, "feature_not_consumption")
    status, body = await consume_feature(api, 1, feature="missing")
    assert (status, body["code"]) == (400, "unsupported_product_feature")


async def test_negative_consumption_only_where_allowed(api: Api, api_factory: Any) -> None:
    await consume(api, 5)
    status, body = await consume(api, -2)
    assert (status, body["code"]) == (400, "negative_consumptions_not_allowed")

    def allow_negative(data: dict[str, Any]) -> None:
        data["licenses"][0]["allow_negative_consumptions"] = True

    other = await api_factory(allow_negative, subdir="neg")
    await consume(other, 5)
    status, body = await consume(other, -2)
    assert status == 200 and body["total_consumptions"] == 3
    status, body = await consume(other, -4)
    assert (status, body["code"]) == (400, "consumption_below_zero")


@pytest.mark.parametrize(
    ("limits", "allowed", "refused"),
    [
        ({"allow_unlimited_consumptions": True, "allow_overages": False}, 10**6, None),
        ({"allow_overages": True, "max_overages": 0}, 10**6, None),  # 0 = unlimited overage
        ({"allow_overages": False, "max_overages": 0}, 1000, 1),
        ({"allow_overages": False, "max_overages": 50}, 1000, 1),  # overage ignored when not allowed
    ],
)
async def test_limit_rule_table(api_factory: Any, limits: dict[str, Any], allowed: int, refused: int | None) -> None:
    def configure(data: dict[str, Any]) -> None:
        data["licenses"][0].update(limits)

    api = await api_factory(configure)
    assert (await consume(api, allowed))[0] == 200
    if refused is not None:
        assert (await consume(api, refused))[1]["code"] == "license_not_enough_consumptions"


async def test_monthly_reset_happens_exactly_at_the_boundary(api: Api) -> None:
    api.clock.set(datetime(2026, 1, 31, 23, 59, 59, 999000, tzinfo=UTC))
    await consume(api, 1000)
    status, body = await consume(api, 101)
    assert body["code"] == "license_not_enough_consumptions"
    api.clock.advance(timedelta(milliseconds=1))  # 2026-02-01T00:00:00Z
    status, body = await consume(api, 1)
    assert status == 200 and body["total_consumptions"] == 1
    assert body["consumption_period_start"] == "2026-02-01T00:00:00.000Z"
    assert body["consumption_period_end"] == "2026-03-01T00:00:00.000Z"


async def test_periods_anchor_on_the_license_start_date(api_factory: Any) -> None:
    def anchored(data: dict[str, Any]) -> None:
        data["licenses"][0]["start_date"] = "2025-10-31T08:00:00Z"
        data["licenses"][0]["features"][1].update(reset_consumption=True, consumption_period="weekly")

    api = await api_factory(anchored, login=False)
    api.clock.set(datetime(2026, 2, 27, 12, tzinfo=UTC))
    await api.login()
    status, body = await consume(api, 3)
    # An anchor on the 31st resets on the last day of shorter months.
    assert (body["consumption_period_start"], body["consumption_period_end"]) == (
        "2026-01-31T08:00:00.000Z",
        "2026-02-28T08:00:00.000Z",
    )
    status, body = await consume_feature(api, 2)
    assert (body["consumption_period_start"], body["consumption_period_end"]) == (
        "2026-02-27T08:00:00.000Z",
        "2026-03-06T08:00:00.000Z",
    )  # weekly from Friday 08:00
    api.clock.set(datetime(2026, 2, 28, 8, tzinfo=UTC))
    status, body = await consume(api, 1)
    assert body["total_consumptions"] == 1


async def test_non_consumption_license(api_factory: Any) -> None:
    def perpetual(data: dict[str, Any]) -> None:
        lic = data["licenses"][0]
        for key in (
            "max_consumptions",
            "allow_unlimited_consumptions",
            "allow_overages",
            "max_overages",
            "allow_negative_consumptions",
            "reset_consumption",
            "consumption_period",
        ):
            lic.pop(key)
        lic["license_type"] = "perpetual"

    api = await api_factory(perpetual)
    status, body = await consume(api, 1)
    assert (status, body["code"]) == (400, "license_not_consumption")
    assert (await consume_feature(api, 1))[0] == 200  # feature consumption works on any license type
