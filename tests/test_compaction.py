"""Raw usage events past their retention are compacted into their counters: totals, sync and event-id
deduplication stay exactly as they were, and the database stops growing with old events."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from floatsrv.appkeys import DOMAIN
from floatsrv.workers.sweeper import sweep_once
from tests.conftest import Api


def retention(days: int) -> Any:
    def mutate(data: dict[str, Any]) -> None:
        data["storage"]["event_retention_days"] = days
        data["licenses"][0]["features"].append(
            {"code": "calls", "feature_type": "consumption", "allow_unlimited_consumptions": True}
        )

    return mutate


async def counters(api: Api) -> list[tuple[Any, ...]]:
    rows: list[tuple[Any, ...]] = await api.app[DOMAIN].store.read(
        lambda c: list(
            c.execute(
                "SELECT c.feature, c.total_milli, c.compacted_milli, c.revision,"
                " c.compacted_milli + COALESCE((SELECT SUM(quantity_milli) FROM usage_events AS e WHERE e.license_id ="
                " c.license_id AND e.feature = c.feature AND e.period_start = c.period_start), 0)"
                " FROM consumption_counters AS c ORDER BY c.feature"
            )
        )
    )
    return rows


async def event_rows(api: Api) -> int:
    count: int = await api.app[DOMAIN].store.read(
        lambda c: c.execute("SELECT COUNT(*) FROM usage_events").fetchone()[0]
    )
    return count


async def test_old_events_fold_into_counters(api_factory: Any) -> None:
    api: Api = await api_factory(retention(30))
    for n in range(5):
        await api.post(
            "/v1/usage/events", {"event_id": f"old-{n}", "product": "demo", "feature": "calls", "quantity": "1.5"}
        )
    api.clock.advance(timedelta(days=31))
    await api.login()
    status, body = await api.post(
        "/v1/usage/events", {"event_id": "new", "product": "demo", "feature": "calls", "quantity": 2}
    )
    assert status == 200
    before = await counters(api)
    assert await event_rows(api) == 6
    assert await sweep_once(api.app) == 0  # (no seats to end)
    assert await event_rows(api) == 1  # only the recent event remains
    after = await counters(api)
    [(feature, total, compacted, revision, recomputed)] = after
    assert (feature, total, compacted) == ("calls", 9500, 7500)
    assert total == recomputed  # total = compacted + events kept: still checkable
    assert [row[:2] + row[3:4] for row in before] == [row[:2] + row[3:4] for row in after]  # totals, revisions
    status, body = await api.post(
        "/v1/usage/events", {"event_id": "old-2", "product": "demo", "feature": "calls", "quantity": "1.5"}
    )
    assert status == 200 and body["data"]["replay"] is True  # deduplication outlives compaction
    assert (
        await api.post(
            "/v1/usage/events", {"event_id": "old-2", "product": "demo", "feature": "calls", "quantity": "2"}
        )
    )[0] == 409


async def test_zero_keeps_everything(api_factory: Any) -> None:
    api: Api = await api_factory(retention(0))
    await api.post("/v1/usage/events", {"event_id": "x", "product": "demo", "feature": "calls", "quantity": 1})
    api.clock.advance(timedelta(days=3650))
    await sweep_once(api.app)
    assert await event_rows(api) == 1
