"""Idempotent usage events: an event id counts once, forever; a replay gets the original answer; the same id
with a different body is refused."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest

from tests.conftest import BOTH_BACKENDS, Api
from tests.metering_config import metering_license

pytestmark = BOTH_BACKENDS


@pytest.fixture
async def meter(api_factory: Any) -> Api:
    api: Api = await api_factory(metering_license)
    return api


def body(**overrides: Any) -> dict[str, Any]:
    return {"event_id": "job-42", "product": "demo", "feature": "logs", "quantity": "2.5", **overrides}


async def total(api: Api, feature: str = "logs") -> str:
    status, reply = await api.post("/v1/usage/check", {"product": "demo", "feature": feature, "quantity": 1})
    assert status == 200
    current: str = reply["data"]["current"]
    return current


async def test_50_concurrent_deliveries_count_once(meter: Api) -> None:
    results = await asyncio.gather(*(meter.post("/v1/usage/events", body()) for _ in range(50)))
    assert {status for status, _ in results} == {200}
    replays = Counter(reply["data"]["replay"] for _, reply in results)
    assert replays == {False: 1, True: 49}
    assert await total(meter) == "2.5"
    originals = {(r["data"]["received_at"], r["data"]["accepted_quantity"]) for _, r in results}
    assert len(originals) == 1  # every replay carries the original outcome


async def test_replay_after_a_long_time_and_after_limits_change(meter: Api) -> None:
    status, first = await meter.post("/v1/usage/events", body(feature="api", quantity=10))
    assert status == 200 and first["data"]["replay"] is False
    meter.clock.advance(timedelta(days=40))  # a new period; the event id is still remembered
    await meter.login()
    status, again = await meter.post("/v1/usage/events", body(feature="api", quantity=10))
    assert status == 200 and again["data"]["replay"] is True
    assert {k: v for k, v in again["data"].items() if k != "replay"} == {
        k: v for k, v in first["data"].items() if k != "replay"
    }
    assert await total(meter, "api") == "0"  # nothing counted in the new period


@pytest.mark.parametrize(
    "change",
    [
        {"quantity": "3"},
        {"feature": "api"},
        {"accept_partial": True},
        {"occurred_at": "2026-01-15T11:00:00Z"},
        {"user": "someone"},
    ],
)
async def test_same_id_different_body_is_409(meter: Api, change: dict[str, Any]) -> None:
    assert (await meter.post("/v1/usage/events", body()))[0] == 200
    status, reply = await meter.post("/v1/usage/events", body(**change))
    assert (status, reply["error"]["code"], reply["error"]["param"]) == (409, "idempotency_key_reused", "event_id")
    assert await total(meter) == "2.5"


async def test_a_refused_event_can_be_retried_with_the_same_id(meter: Api) -> None:
    await meter.post("/v1/usage/events", body(event_id="fill", feature="api", quantity=10))
    status, reply = await meter.post("/v1/usage/events", body(event_id="later", feature="api", quantity=1))
    assert (status, reply["error"]["code"]) == (422, "limit_exceeded")  # refused: nothing stored, id not used
    meter.clock.advance(timedelta(days=20))  # next month: room again
    await meter.login()
    status, reply = await meter.post("/v1/usage/events", body(event_id="later", feature="api", quantity=1))
    assert status == 200 and reply["data"]["replay"] is False


async def test_event_ids_are_per_license(api_factory: Any) -> None:
    def two(data: dict[str, Any]) -> None:
        metering_license(data)
        data["licenses"].append({**data["licenses"][0], "id": 2002, "product": "other", "license_key": None})

    api: Api = await api_factory(two)
    assert (await api.post("/v1/usage/events", body()))[1]["data"]["replay"] is False
    assert (await api.post("/v1/usage/events", body(product="other")))[1]["data"]["replay"] is False
    assert (await api.post("/v1/usage/events", body(license_id=1001, product=None)))[1]["data"]["replay"] is True
