"""SIGKILL the server again and again while it syncs to a faulty upstream: after a restart and a quiet
period, the upstream still holds exactly the local totals, in both wire formats."""

from __future__ import annotations

import asyncio
import base64
import random
import sqlite3
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from tests.conftest import example_dict
from tests.polling import wait_until
from tests.procs import ServerProcess
from tests.test_sync import TOKEN, by_subscription, with_sync
from tests.upstreams import Faults, FloatsrvUpstream, RebillyUpstream

pytestmark = pytest.mark.slow


def local_totals(db: Path) -> dict[tuple[int, str, str | None], Decimal]:
    from floatsrv.times import iso_us

    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        rows = list(conn.execute("SELECT license_id, feature, period_start, total_milli FROM consumption_counters"))
    return {
        (lid, feature, iso_us(start) if start else None): Decimal(total) / 1000
        for lid, feature, start, total in rows
        if total
    }


async def drive(base: str, seconds: float, seq: list[int]) -> None:
    """Consumption from a few clients until the time is up (errors from a dying server are expected)."""
    auth = "Basic " + base64.b64encode(b"demo:demo-password").decode()
    async with aiohttp.ClientSession() as session:
        try:
            async with session.get(base + "/auth", headers={"Authorization": auth}) as resp:
                token = (await resp.json())["token"]
        except aiohttp.ClientError:
            return
        headers = {"Authorization": f"Bearer {token}"}
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds

        async def client() -> None:
            while loop.time() < deadline:
                seq[0] += 1
                body: dict[str, Any] = {
                    "event_id": f"e-{seq[0]}",
                    "product": "demo",
                    "feature": "tokens",
                    "quantity": "1.5",
                }
                path = "/v1/usage/events"
                if seq[0] % 2:
                    path, body = "/api/v4/add_consumption", {"product": "demo", "user": "u", "consumptions": 2}
                try:
                    async with session.post(base + path, json=body, headers=headers) as resp:
                        await resp.read()
                except (TimeoutError, aiohttp.ClientError):
                    return

        await asyncio.gather(*(client() for _ in range(4)))


@pytest.mark.parametrize("fmt", ["floatsrv", "rebilly-usages"])
async def test_sigkill_mid_sync(tmp_path: Path, fmt: str) -> None:
    upstream: Any = FloatsrvUpstream(TOKEN) if fmt == "floatsrv" else RebillyUpstream()
    upstream.faults = Faults(fail=0.2, store_then_fail=0.2, slow=0.1, drop=0.1, slow_seconds=0.5, seed=11)
    fake = TestServer(upstream.app)
    await fake.start_server()
    config = example_dict()
    with_sync(str(fake.make_url("/ingest" if fmt == "floatsrv" else "/")), fmt)(config)
    server = ServerProcess(tmp_path, config)
    rng, seq = random.Random(5), [0]
    try:
        for _ in range(5):
            await asyncio.to_thread(server.start)
            await drive(server.url, rng.uniform(0.3, 0.8), seq)
            server.kill()  # SIGKILL: no graceful shutdown, no final sync
        upstream.faults.off()
        await asyncio.to_thread(server.start)

        async def equal() -> bool:
            local = await asyncio.to_thread(local_totals, server.data_dir / "floatsrv.db")
            if fmt == "floatsrv":
                return bool(upstream.totals() == local)
            return bool(upstream.totals() == by_subscription(local))

        await wait_until(equal, 60)
        assert sum(upstream.faults.injected.values()) > 0
        assert seq[0] > 20
    finally:
        if server.proc is not None:
            server.stop()
        await fake.close()
