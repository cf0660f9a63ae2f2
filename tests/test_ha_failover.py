"""Failover: one of two nodes is SIGKILLed under load. Nothing acknowledged is lost or counted twice, the
official SDK's heartbeats go on (through a TCP load balancer) on the survivor with their seat, and the sync
duty moves to the survivor, which delivers everything upstream exactly once."""

from __future__ import annotations

import asyncio
import base64
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from licensespring.licensefile.config import Configuration
from licensespring.licensefile.floating_manager import FloatingManager

from floatsrv.db.pgconn import PgConnection  # not on the test's loop: it drives its own (to_thread)
from floatsrv.times import iso_us
from tests.polling import wait_until
from tests.tcpproxy import TcpProxy
from tests.test_ha import duty_holder, make_nodes
from tests.test_sync import TOKEN, with_sync
from tests.upstreams import FloatsrvUpstream

pytestmark = pytest.mark.slow

SYNC_DUTY = 4  # db.pg_store.DUTIES["sync"]


def sync_holder(dsn: str) -> str | None:
    return duty_holder(dsn, SYNC_DUTY)


def local_totals(dsn: str) -> dict[tuple[int, str, str | None], Decimal]:
    conn = PgConnection(dsn)
    try:
        rows = conn.execute(
            "SELECT license_id, feature, period_start, total_milli FROM consumption_counters"
        ).fetchall()
    finally:
        conn.close()
    return {
        (lid, feature, iso_us(start) if start else None): Decimal(total) / 1000
        for lid, feature, start, total in rows
        if total
    }


async def deliver(session: aiohttp.ClientSession, urls: list[str], token: str, event: dict[str, Any]) -> None:
    """Send one usage event until a node acknowledges it, trying the next node after a failure (a client
    behind a load balancer retrying the same event id)."""
    for attempt in range(200):
        url = urls[attempt % len(urls)]
        try:
            async with session.post(
                url + "/v1/usage/events", json=event, headers={"Authorization": f"Bearer {token}"}
            ) as resp:
                if resp.status == 200:
                    return
        except (aiohttp.ClientError, TimeoutError):
            pass
        await asyncio.sleep(0.02)
    raise AssertionError(f"event {event['event_id']} was never acknowledged")


def sdk(domain: str, tmp_path: Path) -> FloatingManager:
    conf = Configuration(
        product="demo",
        api_key="unused",
        shared_key="unused",
        api_domain=domain,
        api_protocol="http",
        file_path=str(tmp_path / "licensefile"),
        verify_license_signature=False,
    )
    return FloatingManager(conf)


async def test_sigkill_one_node_under_load(tmp_path: Path, pg_dsn: str) -> None:
    upstream = FloatsrvUpstream(TOKEN)
    fake = TestServer(upstream.app)
    await fake.start_server()
    nodes = make_nodes(tmp_path, pg_dsn, with_sync(str(fake.make_url("/ingest")), "floatsrv"))
    proxy = TcpProxy([node.port for node in nodes])
    try:
        await asyncio.to_thread(nodes[0].start)
        await wait_until(lambda: asyncio.to_thread(lambda: sync_holder(pg_dsn) is not None), 20)
        first_holder = await asyncio.to_thread(sync_holder, pg_dsn)
        await asyncio.to_thread(nodes[1].start)  # joins; the duty stays with node 0
        await proxy.start()
        fm = sdk(f"127.0.0.1:{proxy.port}", tmp_path)
        assert await asyncio.to_thread(fm.auth, "demo", "demo-password")
        lic = await asyncio.to_thread(fm.register)
        basic = base64.b64encode(b"demo:demo-password").decode()
        async with aiohttp.ClientSession() as session:
            async with session.get(nodes[1].url + "/auth", headers={"Authorization": f"Basic {basic}"}) as resp:
                token = (await resp.json())["token"]
            urls = [node.url for node in nodes]
            events = [
                {"event_id": f"ev-{n}", "product": "demo", "feature": "tokens", "quantity": "1.5"} for n in range(400)
            ]

            async def load() -> None:
                for chunk in range(0, len(events), 20):
                    await asyncio.gather(*(deliver(session, urls[n % 2 :] + urls[: n % 2], token, e)
                                           for n, e in enumerate(events[chunk : chunk + 20])))  # fmt: skip

            sending = asyncio.create_task(load())
            await asyncio.sleep(0.5)
            await asyncio.to_thread(nodes[0].kill)  # SIGKILL mid-load: no shutdown, no final sync
            await sending  # every event is acknowledged in the end, by one node or the other

            await asyncio.to_thread(lic.check)  # the SDK's heartbeat, through the balancer to the survivor
            admin = token
            async with session.get(
                nodes[1].url + "/v1/seats?license_id=1001", headers={"Authorization": f"Bearer {admin}"}
            ) as resp:
                seats = (await resp.json())["data"]["data"]
            assert len(seats) == 1 and seats[0]["heartbeat_at"] > seats[0]["registered_at"], seats

        totals = await asyncio.to_thread(local_totals, pg_dsn)
        tokens = {key: value for key, value in totals.items() if key[1] == "tokens"}
        assert list(tokens.values()) == [Decimal("600")], tokens  # 400 events of 1.5, each exactly once

        await wait_until(lambda: asyncio.to_thread(lambda: sync_holder(pg_dsn) not in (None, first_holder)), 20)
        await wait_until(lambda: asyncio.to_thread(lambda: upstream.totals() == local_totals(pg_dsn)), 60)
        assert not upstream.lower_totals
    finally:
        await proxy.close()
        for node in nodes:
            if node.proc is not None:
                node.stop()
        await fake.close()
