"""Upstream sync: with a faulty upstream (errors, stored-then-failed, timeouts, dropped connections), every
unit of consumption arrives exactly once, in both wire formats; outages catch up in few requests; permanent
refusals park visibly."""

from __future__ import annotations

import asyncio
import itertools
import math
from collections import defaultdict
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from structlog.testing import capture_logs

from floatsrv.appkeys import DOMAIN, SYNC
from floatsrv.times import iso_us
from floatsrv.workers import loop as loop_module
from tests.conftest import BOTH_BACKENDS, Api
from tests.polling import wait_until
from tests.upstreams import UPSTREAM_TOKEN, Faults

pytestmark = BOTH_BACKENDS

TOKEN = UPSTREAM_TOKEN


def with_sync(url: str, fmt: str, **upstream: Any) -> Any:
    def mutate(data: dict[str, Any]) -> None:
        lic = data["licenses"][0]
        lic["allow_overages"], lic["max_overages"] = True, 0  # unlimited: load is never refused
        lic["features"] += [
            {"code": "calls", "feature_type": "consumption", "allow_unlimited_consumptions": True},
            {
                "code": "tokens",
                "feature_type": "consumption",
                "allow_unlimited_consumptions": True,
                "reset_consumption": True,
                "consumption_period": "daily",
            },
        ]
        data["sync"] = {
            "interval_seconds": 0.05,
            "backoff_max_seconds": 0.2,
            "shutdown_timeout_seconds": 2,
            "upstreams": [
                {
                    "name": "vendor",
                    "format": fmt,
                    "url": url,
                    "token": TOKEN,
                    "timeout_seconds": 0.3,
                    "batch_size": 7,
                    "subscriptions": {"1001": "sub_main", "1001/tokens": "sub_tokens"},
                    **upstream,
                }
            ],
        }

    return mutate


async def local_counters(api: Api) -> dict[tuple[int, str, str | None], Decimal]:
    rows = await api.app[DOMAIN].store.read(
        lambda c: list(c.execute("SELECT license_id, feature, period_start, total_milli FROM consumption_counters"))
    )
    return {
        (lid, feature, iso_us(start) if start else None): Decimal(total) / 1000 for lid, feature, start, total in rows
    }


def by_subscription(counters: dict[tuple[int, str, str | None], Decimal]) -> dict[str, Decimal]:
    out: dict[str, Decimal] = defaultdict(Decimal)
    for (_, feature, _), total in counters.items():
        out["sub_tokens" if feature == "tokens" else "sub_main"] += total
    return {k: v for k, v in out.items() if v}


_events = itertools.count()


async def load(api: Api, rounds: int) -> None:
    """Consumption through both APIs, on several counters and across period boundaries."""
    for round_ in range(rounds):
        event = next(_events)
        calls = [
            api.post("/api/v4/add_consumption", {"product": "demo", "user": "u", "consumptions": 3}),
            api.post(
                "/api/v4/add_feature_consumption",
                {"product": "demo", "user": "u", "feature": "calls", "consumptions": 2},
            ),
            api.post(
                "/v1/usage/events",
                {"event_id": f"t-{event}", "product": "demo", "feature": "tokens", "quantity": "1.25"},
            ),
            api.post(
                "/v1/usage/events", {"event_id": f"c-{event}", "product": "demo", "feature": "calls", "quantity": "0.5"}
            ),
        ]
        results = await asyncio.gather(*calls)
        assert {status for status, _ in results} == {200}, results
        if round_ % 10 == 9:
            api.clock.advance(timedelta(hours=9))  # new daily periods, and a monthly one along the way
            await api.login()
        await asyncio.sleep(0.01)


@pytest.mark.parametrize("fmt", ["floatsrv", "rebilly-usages"])
async def test_faulty_upstream_ends_exactly_equal(
    api_factory: Any, floatsrv_upstream: Any, rebilly_upstream: Any, fmt: str
) -> None:
    upstream, url = floatsrv_upstream if fmt == "floatsrv" else rebilly_upstream
    upstream.faults = Faults(fail=0.2, store_then_fail=0.15, slow=0.1, drop=0.1, slow_seconds=0.6)
    api: Api = await api_factory(with_sync(url, fmt))
    await load(api, 60)
    deadline = asyncio.get_running_loop().time() + 30
    while set(upstream.faults.injected) != {"fail", "store_then_fail", "slow", "drop"}:
        # How many requests the upstream saw depends on the machine's speed; keep the load going until
        # every kind of fault has hit at least once (with seed 7 that takes 6 requests).
        assert asyncio.get_running_loop().time() < deadline, upstream.faults.injected
        await load(api, 5)
    upstream.faults.off()  # the quiet period

    async def settled() -> bool:
        # Equal totals alone can come first: a "stored, then failed" answer leaves the upstream with the
        # records while they stay pending here until a re-send is acknowledged. Done means both.
        local = await local_counters(api)
        if fmt == "floatsrv":
            equal = upstream.totals() == {k: v for k, v in local.items() if v}
        else:
            equal = upstream.totals() == by_subscription(local)
        _, body = await api.get("/v1/sync")
        [vendor] = body["data"]["channels"]
        return equal and (vendor["pending_records"], vendor["parked_batches"]) == (0, 0)

    await wait_until(settled)
    assert set(upstream.faults.injected) == {"fail", "store_then_fail", "slow", "drop"}  # every fault happened
    if fmt == "rebilly-usages":
        assert upstream.conflicts > 0  # re-sends of stored usages met 409 and counted once
    status, body = await api.get("/v1/sync")
    [vendor] = body["data"]["channels"]
    assert vendor["requests"] >= 1 and vendor["last_success_at"] is not None


async def test_long_outage_catches_up_in_few_requests(api_factory: Any, floatsrv_upstream: Any) -> None:
    upstream, url = floatsrv_upstream
    upstream.faults.down = True
    quiet = with_sync(url, "floatsrv", batch_size=500)

    def no_background_runs(data: dict[str, Any]) -> None:
        quiet(data)  # this test drives the worker itself, so it can count requests
        data["sync"].update(interval_seconds=3600, backoff_max_seconds=3600)

    api: Api = await api_factory(no_background_runs)
    worker = api.app[SYNC]
    for day in range(30):  # a month without the upstream: 4 counters move every day
        await load(api, 2)
        api.clock.advance(timedelta(days=1))
        await api.login()
        if day % 10 == 0:
            with pytest.raises(Exception, match="HTTP 503"):
                await worker.run()
    local = await local_counters(api)
    counters = len([v for v in local.values() if v])
    upstream.faults.down = False
    before = upstream.requests
    await worker.run()
    requests = upstream.requests - before
    # Aggregates, not events: 240 usage reports over 30 days become one record per counter, sent in
    # ceil(counters / batch_size) requests (here a single one).
    assert counters > 30 and requests == math.ceil(counters / 500) == 1
    assert upstream.totals() == {k: v for k, v in local.items() if v}


async def test_permanent_refusal_parks_and_retry_delivers(api_factory: Any, floatsrv_upstream: Any) -> None:
    upstream, url = floatsrv_upstream
    upstream.faults.permanent_status = 400
    api: Api = await api_factory(with_sync(url, "floatsrv"))
    admin = await api.login("admin", "admin-password")
    await load(api, 3)

    async def parked() -> bool:
        _, body = await api.get("/v1/sync", token=admin)
        vendor = body["data"]["channels"][0]
        return bool(vendor["parked_batches"] >= 1 and vendor["last_error"] and "HTTP 400" in vendor["last_error"])

    await wait_until(parked)
    assert upstream.counters == {}
    requests = upstream.requests
    await asyncio.sleep(0.5)  # parked means not retried forever
    assert upstream.requests - requests <= 2
    status, body = await api.get("/v1/audit", token=admin, params={"action": "sync_batch_parked"})
    assert body["data"]["data"]
    upstream.faults.permanent_status = None
    status, body = await api.post("/v1/sync/retry", {}, token=admin)
    assert status == 200 and body["data"]["reopened_batches"] >= 1

    async def delivered() -> bool:
        return bool(upstream.totals() == {k: v for k, v in (await local_counters(api)).items() if v})

    await wait_until(delivered)


async def test_sync_now_and_status(api_factory: Any, floatsrv_upstream: Any) -> None:
    upstream, url = floatsrv_upstream
    api: Api = await api_factory(with_sync(url, "floatsrv", batch_size=3))
    admin = await api.login("admin", "admin-password")
    await load(api, 2)
    status, body = await api.post("/v1/sync/run", {}, token=admin)
    assert status == 200 and body["data"]["run"]["ok"] is True, body
    assert body["data"]["channels"][0]["pending_records"] == 0
    assert body["data"]["airgap"]["pending_records"] == 3  # three counters moved; none was ever exported
    assert body["data"]["server_id"].startswith("fs-")
    assert (await api.post("/v1/sync/run", {}, token=await api.login()))[0] == 403


async def test_shutdown_runs_a_bounded_final_sync(tmp_path: Any, floatsrv_upstream: Any) -> None:
    from tests.conftest import make_config, start_api

    upstream, url = floatsrv_upstream
    base = with_sync(url, "floatsrv")

    def hourly(data: dict[str, Any]) -> None:
        base(data)
        data["sync"].update(interval_seconds=3600)

    api, client = await start_api(make_config(tmp_path, hourly))
    await api.login()

    async def first_pass_done() -> bool:  # the first periodic pass runs at start-up, with nothing to send
        return bool(api.app[SYNC].passes)

    await wait_until(first_pass_done)
    await load(api, 3)
    assert upstream.totals() == {}  # the next periodic pass is an hour away
    local = await local_counters(api)
    await client.close()  # graceful shutdown: the final sync delivers what is pending
    assert upstream.totals() == {k: v for k, v in local.items() if v}

    upstream.faults.down = True  # and when the upstream is down, shutdown still ends in bounded time
    api, client = await start_api(make_config(tmp_path, hourly), api.clock)
    await api.login()
    await load(api, 1)
    started = asyncio.get_running_loop().time()
    await client.close()
    assert asyncio.get_running_loop().time() - started < 5  # shutdown_timeout_seconds is 2


class ScriptedJitter:
    """Stands in for the `random` module inside floatsrv.workers.loop: hands out known jitter factors,
    alternately the top and the bottom of the range asked for, so each measured wait can be told apart from
    its neighbours by a margin far wider than the pass's own work on a loaded machine."""

    def __init__(self) -> None:
        self.calls: list[tuple[float, float, float]] = []

    def uniform(self, low: float, high: float) -> float:
        factor = high if len(self.calls) % 2 == 0 else low
        self.calls.append((low, high, factor))
        return factor


async def test_outage_backs_off_with_jitter_logs_quietly_and_recovers_once(
    api_factory: Any, floatsrv_upstream: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While the upstream answers 503, passes come after growing, capped, jittered delays (measured from the
    upstream's request times), one warning line is logged (at most one per 30 s), and the first success after
    the outage logs exactly one `sync_recovered` line."""
    upstream, url = floatsrv_upstream
    interval, backoff_max, failures = 0.05, 1.0, 8
    base = with_sync(url, "floatsrv")

    def quick(data: dict[str, Any]) -> None:
        base(data)
        data["sync"].update(interval_seconds=interval, backoff_max_seconds=backoff_max)

    api: Api = await api_factory(quick)
    jitter = ScriptedJitter()
    monkeypatch.setattr(loop_module, "random", jitter)
    with capture_logs() as logs:
        upstream.faults.down = True
        await load(api, 1)

        async def failed_enough() -> bool:
            return len(upstream.history) >= failures

        await wait_until(failed_enough)
        upstream.faults.down = False

        async def delivered() -> bool:
            return bool(upstream.totals() == {k: v for k, v in (await local_counters(api)).items() if v})

        await wait_until(delivered)
        await load(api, 1)  # later passes, successful ones, log no further recovery
        await wait_until(delivered)
        await asyncio.sleep(0.3)

    statuses = [status for _, status in upstream.history]
    outage = len(list(itertools.takewhile(lambda s: s == 503, statuses)))
    assert outage >= failures and set(statuses[outage:]) == {200}, statuses
    times = [at for at, _ in upstream.history[: outage + 1]]  # the failures, and the first success
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    # One jitter draw per failure, from [0.5, 1]; after the k-th failure in a row the wait is
    # min(max, interval * 2**k) times that factor: 0.1, 0.1, 0.4, 0.4, 1.0, 0.5, 1.0, 0.5 s here.
    assert [(low, high) for low, high, _ in jitter.calls] == [(0.5, 1.0)] * outage, jitter.calls
    waits = [min(backoff_max, interval * 2**k) * f for k, (_, _, f) in enumerate(jitter.calls, start=1)]
    # Each measured gap is the wait plus a pass's own work (SQLite commits, HTTP): ~10 ms idle, a few
    # hundred ms on a starved machine. Uncapped, the 6th wait alone would be 1.6-3.2 s.
    for gap, wait in zip(gaps, waits, strict=True):
        assert wait - 0.005 <= gap <= wait + 0.5, (gaps, waits)
    assert sum(gaps[:2]) < sum(gaps[2:4]) < sum(gaps[4:6])  # it grows: 0.2 s, then 0.8 s, then 1.5 s a pair
    assert gaps[5] < gaps[4] - 0.25 and gaps[7] < gaps[6] - 0.25  # at the cap, the factor alone sets the wait

    events = [line for line in logs if line["event"].startswith("sync_")]
    failed = [line for line in events if line["event"] == "sync_failed"]
    assert len(failed) == 1, failed  # ~10 failures in ~3 s: one line, the rest is rate-limited
    assert (failed[0]["log_level"], failed[0]["consecutive_failures"]) == ("warning", 1)
    assert "HTTP 503" in failed[0]["error"]
    recovered = [line for line in events if line["event"] == "sync_recovered"]
    assert len(recovered) == 1 and recovered[0]["after_failures"] == outage, recovered
