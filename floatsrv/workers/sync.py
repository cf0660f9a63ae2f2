"""The sync worker: sends what each upstream is owed, on an interval, on demand, and once more at shutdown.

Per channel it takes a lease (so a server and `floatsrv sync now` never send at once), then sends batch
after batch until nothing is owed or something fails. A retryable failure ends the pass and the loop backs
off; a permanent one parks that batch and the pass goes on with the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
import time
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

from floatsrv.appkeys import CONFIG, DOMAIN, SYNC
from floatsrv.clock import Clock
from floatsrv.config import SyncConfig, UpstreamConfig
from floatsrv.db.store import Store
from floatsrv.domain import sync
from floatsrv.domain.sync import PassReport, SyncFailed
from floatsrv.log import get_logger
from floatsrv.upstream import Upstream, UpstreamError, lease_for, make_upstream
from floatsrv.workers.loop import run_periodic

log = get_logger("floatsrv.sync")


def _dead_local_process(owner: str) -> bool:
    """Whether a lease owner ("host:pid:nonce") is a process on this host that no longer runs."""
    host, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except OSError:  # it exists but is not ours to signal
        return False
    return False


class SyncWorker:
    def __init__(
        self, store: Store, clock: Clock, config: SyncConfig, session: aiohttp.ClientSession, server_id: str
    ) -> None:
        self.store = store
        self.clock = clock
        self.config = config
        self.server_id = server_id
        self.channels: list[tuple[UpstreamConfig, Upstream]] = [
            (upstream, make_upstream(upstream, session, clock)) for upstream in config.upstreams
        ]
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self.wake = asyncio.Event()
        self.passes = 0  # passes finished, failed or not: something to wait for (tests, tools)

    def wake_up(self) -> None:
        self.wake.set()

    async def run(self) -> list[PassReport]:
        """One pass over every upstream. Raises SyncFailed if any had a retryable failure."""
        try:
            reports = [await self.run_channel(upstream, client) for upstream, client in self.channels]
        finally:
            self.passes += 1
        failed = [r for r in reports if r.error is not None]
        if failed:
            raise SyncFailed("; ".join(f"{r.channel}: {r.error}" for r in failed))
        return reports

    async def run_channel(self, config: UpstreamConfig, client: Upstream) -> PassReport:
        store, clock = self.store, self.clock
        report = PassReport(config.name)
        if not await sync.claim(store, clock, config.name, self.owner, lease_for(config), _dead_local_process):
            report.skipped = True  # someone else (the CLI, another server on this data dir) is sending
            return report
        try:
            while True:
                # Renew the lease for every batch: a long catch-up must not lose it midway.
                await sync.claim(store, clock, config.name, self.owner, lease_for(config))
                batch = await sync.next_batch(
                    store, clock, config.name, config.batch_size, cumulative=config.format == "floatsrv"
                )
                if batch is None:
                    break
                try:
                    result = await client.send(batch, self.server_id) if batch.records else None
                except UpstreamError as exc:
                    report.requests += exc.requests
                    report.records += len(exc.confirmed)
                    error = str(exc)
                    await sync.settle(
                        store,
                        clock,
                        config.name,
                        batch,
                        exc.confirmed,
                        complete=False,
                        retry=error if exc.retryable else None,  # a retryable failure waits for the next attempt;
                        park=None if exc.retryable else error,  # a permanent one parks the batch for good
                        requests=exc.requests,
                    )
                    if exc.retryable:
                        report.error = error
                        break
                    report.parked += 1
                    log.error("sync_batch_parked", channel=config.name, batch=batch.id, error=error)
                    continue
                confirmed = result.confirmed if result else []
                requests = result.requests if result else 0
                await sync.settle(store, clock, config.name, batch, confirmed, complete=True, requests=requests)
                report.records += len(confirmed)
                report.requests += requests
                log.info(
                    "sync_batch_delivered",
                    channel=config.name,
                    batch=batch.id,
                    records=len(confirmed),
                    requests=requests,
                )
        finally:
            with contextlib.suppress(Exception):
                await sync.release(store, config.name, self.owner)
        return report

    async def flush(self, seconds: float) -> None:
        """Keep trying to deliver everything for at most `seconds` (the final sync at shutdown)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                await asyncio.wait_for(self.run(), max(0.1, deadline - time.monotonic()))
                return
            except (SyncFailed, TimeoutError):
                await asyncio.sleep(min(0.5, max(0.0, deadline - time.monotonic())))


async def sync_context(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx entry: the worker and its loop; at shutdown, a bounded final sync before the store closes."""
    config = app[CONFIG].sync
    domain = app[DOMAIN]
    server_id = await sync.server_id(domain.store, config.server_id)
    async with aiohttp.ClientSession() as session:
        worker = SyncWorker(domain.store, domain.clock, config, session, server_id)
        app[SYNC] = worker
        task = None
        if worker.channels:
            task = asyncio.create_task(
                run_periodic(
                    "sync",
                    worker.run,
                    config.interval_seconds,
                    backoff_max=config.backoff_max_seconds,
                    wake=worker.wake,
                ),
                name="sync",
            )
        yield
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            if config.shutdown_timeout_seconds > 0:
                await worker.flush(config.shutdown_timeout_seconds)
