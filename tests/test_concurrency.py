"""Seat limits hold under concurrency: hundreds of simultaneous requests, exactly `limit` winners."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from tests.conftest import BOTH_BACKENDS, Api

pytestmark = BOTH_BACKENDS


async def test_200_concurrent_registrations_take_exactly_3_seats(api: Api) -> None:
    results = await asyncio.gather(*(api.register(f"user-{i}") for i in range(200)))
    statuses = Counter(status for status, _ in results)
    codes = Counter(body["code"] for status, body in results if status != 200)
    assert statuses == {200: 3, 400: 197}
    assert codes == {"floating_not_available": 197}
    assert len(await api.seats()) == 3
    assert (await api.license())["seats_in_use"] == 3


async def test_concurrent_heartbeats_of_one_user_hold_one_seat(api: Api) -> None:
    results = await asyncio.gather(*(api.register("same-user") for _ in range(100)))
    assert {status for status, _ in results} == {200}
    assert len(await api.seats(state="all")) == 1


async def test_200_concurrent_feature_registrations_take_exactly_2_seats(api_factory: Any) -> None:
    def roomy(data: dict[str, Any]) -> None:
        data["licenses"][0]["floating_users"] = 250

    api: Api = await api_factory(roomy)
    for batch in range(0, 200, 50):
        results = await asyncio.gather(*(api.register(f"user-{i}") for i in range(batch, batch + 50)))
        assert {status for status, _ in results} == {200}
    results = await asyncio.gather(
        *(
            api.post("/api/v4/featureRegister", {"product": "demo", "user": f"user-{i}", "feature": "export"})
            for i in range(200)
        )
    )
    statuses = Counter(status for status, _ in results)
    assert statuses == {200: 2, 400: 198}
    assert {body["code"] for status, body in results if status == 400} == {"floating_not_available"}
    assert len([s for s in await api.seats(limit="1000") if s["feature"] == "export"]) == 2


async def test_concurrent_consumption_never_exceeds_the_limit(api: Api) -> None:
    # 60 requests of 20 units against 1000 + 100 overage: exactly 55 fit.
    results = await asyncio.gather(
        *(
            api.post("/api/v4/add_consumption", {"product": "demo", "user": f"u{i}", "consumptions": 20})
            for i in range(60)
        )
    )
    statuses = Counter(status for status, _ in results)
    assert statuses == {200: 55, 400: 5}
    assert (await api.license())["consumption"]["total"] == "1100"


async def test_concurrent_answers_show_what_their_commit_left(api_factory: Any) -> None:
    """Answers sharing a group commit share one shaped body: each shows the state its batch committed, so
    the k-th smallest answer counts at least k requests, and the largest is the final state."""

    def roomy_small_batches(data: dict[str, Any]) -> None:
        data["licenses"][0]["floating_users"] = 250
        data["storage"]["max_batch_units"] = 8  # several commits, so several shared bodies

    api: Api = await api_factory(roomy_small_batches)
    results = await asyncio.gather(
        *(
            api.post(
                "/api/v4/add_feature_consumption",
                {"product": "demo", "user": f"u{i}", "feature": "render", "consumptions": 2},
            )
            for i in range(40)
        )
    )
    assert {status for status, _ in results} == {200}
    totals = sorted(body["total_consumptions"] for _, body in results)
    assert all(total >= 2 * (k + 1) for k, total in enumerate(totals)), totals
    assert totals[-1] == 80

    results = await asyncio.gather(*(api.register(f"user-{i}") for i in range(60)))
    assert {status for status, _ in results} == {200}
    in_use = sorted(body["floating_in_use_devices"] for _, body in results)
    assert all(count >= k + 1 for k, count in enumerate(in_use)), in_use
    assert in_use[-1] == 60
    assert (await api.license())["seats_in_use"] == 60
