"""The sync worker: sends what each upstream is owed, on an interval, on demand, and once more at shutdown.

Per channel it takes a lease (so a server and `floatsrv sync now` never send at once), then sends what was
owed when the pass started: at most as many batches as that took, so a pass ends even while consumption
keeps arriving (the rest waits for the next interval). A retryable failure ends the pass and the loop backs
off; a permanent one parks that batch and the pass goes on with the rest. One pass at a time per worker: an
on-demand run while a pass is under way joins it; `sync now` in another process waits for the lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import AsyncIterator
from datetime import timedelta

import aiohttp
from aiohttp import web

from floatsrv.appkeys import CONFIG, DOMAIN, SITE_START, SYNC
from floatsrv.clock import Clock, wall_now
from floatsrv.config import SyncConfig, UpstreamConfig
from floatsrv.db.store import Store
from floatsrv.domain import sync
from floatsrv.domain.rollback import Holding, Rule, reconcile
from floatsrv.domain.sync import PassReport, SyncFailed
from floatsrv.log import get_logger
from floatsrv.procid import ProcessId, current
from floatsrv.upstream import Upstream, UpstreamError, lease_for, make_upstream
from floatsrv.workers.loop import run_periodic

log = get_logger("floatsrv.sync")


LEASE_POLL_SECONDS = 0.2


def _dead_local_process(owner: str) -> bool:
    """Whether a lease owner ("host:pid:boot:start:nonce", or the older "host:pid:nonce") is a process on this
    host that no longer runs; a PID that now belongs to a later process (PID 1 in a restarted container) counts
    as gone."""
    holder = ProcessId.parse(owner.rpartition(":")[0])
    return holder is not None and holder.is_gone()


class SyncWorker:
    def __init__(
        self,
        store: Store,
        clock: Clock,
        config: SyncConfig,
        session: aiohttp.ClientSession,
        server_id: str,
        *,
        wait_for_lease: bool = False,
        clock_tolerance: timedelta = timedelta(hours=24),
        check_holdings: bool = True,
    ) -> None:
        self.store = store
        self.clock = clock
        self.config = config
        self.server_id = server_id
        self.channels: list[tuple[UpstreamConfig, Upstream]] = [
            (upstream, make_upstream(upstream, session, clock)) for upstream in config.upstreams
        ]
        self.owner = f"{current().text()}:{secrets.token_hex(4)}"
        self.wake = asyncio.Event()
        self.passes = 0  # passes finished, failed or not: something to wait for (tests, tools)
        # A sender in another process (`sync now` beside a server) waits for the lease instead of skipping.
        self.wait_for_lease = wait_for_lease
        self.clock_tolerance = clock_tolerance  # licensing.clock_tolerance_hours, for the batches' flags
        self._pass: asyncio.Task[list[PassReport]] | None = None  # the pass under way, for callers to join
        # Channels whose holdings were compared with this database since this process started (before its
        # first send: a rolled-back database must never send a total below what the vendor holds).
        # Only the server compares, right after its start (the baseline is its start's); `sync now` does not.
        self._checked: set[str] = set() if check_holdings else {u.name for u in config.upstreams}

    def wake_up(self) -> None:
        self.wake.set()

    async def run(self) -> list[PassReport]:
        """One pass over every upstream, or the end of the one already under way (the periodic loop's or another
        caller's): never two senders from one worker. Raises SyncFailed if any upstream had a retryable
        failure."""
        if self._pass is None or self._pass.done():
            self._pass = asyncio.create_task(self._run_once(), name="sync-pass")
            # Retrieved here too, so a pass whose callers all gave up never logs "exception never retrieved".
            self._pass.add_done_callback(lambda task: task.cancelled() or task.exception())
        # shield: a caller that stops waiting (a request timing out) does not stop the pass for the others.
        return await asyncio.shield(self._pass)

    async def periodic(self) -> list[PassReport]:
        """The interval's pass, on the node holding the "sync" duty (on PostgreSQL, one node at a time; the
        channel leases keep an on-demand pass on another node from sending beside it)."""
        if not await self.store.duty("sync"):
            return []
        return await self.run()

    async def stop(self) -> None:
        """Cancel the pass under way, if any, and wait until it has stopped (shutdown)."""
        task, self._pass = self._pass, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _run_once(self) -> list[PassReport]:
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
        if not await self._claim(config):
            report.skipped = True  # someone else (the CLI, another server on this data dir) is sending
            return report
        try:
            cumulative = config.format == "floatsrv"
            # What was owed at the start, in batches: the most this pass sends (later usage waits for the next).
            if config.name not in self._checked:
                try:
                    held = await client.holdings(self.server_id)
                except UpstreamError as exc:
                    report.error = str(exc)
                    return report
                if held is not None:
                    await self._reconcile(config.name, held, "baseline", None)
                self._checked.add(config.name)
            budget = await sync.batches_owed(store, config.name, config.batch_size, cumulative)
            flags = await sync.integrity(store, self.clock_tolerance, wall_now(clock))
            sent = 0
            while True:
                if sent >= budget:
                    report.bounded = True
                    break
                sent += 1
                # Renew the lease for every batch: a long catch-up must not lose it midway.
                await sync.claim(store, clock, config.name, self.owner, lease_for(config))
                batch = await sync.next_batch(store, clock, config.name, config.batch_size, cumulative=cumulative)
                if batch is None:
                    break
                try:
                    result = await client.send(batch, self.server_id, flags) if batch.records else None
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
                if result is not None and result.holdings:
                    carried = {(r.license_id, r.feature, r.period_start): r.revision for r in batch.records}
                    await self._reconcile(config.name, result.holdings, "report", carried)
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

    async def _reconcile(
        self, channel: str, held: list[Holding], rule: Rule, sent: dict[tuple[int, str, int], int] | None
    ) -> None:
        repaired = await reconcile(self.store, self.clock, channel, held, rule, sent)
        if repaired:
            log.error(
                "usage_rollback_detected",
                channel=channel,
                counters=repaired[:20],
                count=len(repaired),
                message="the upstream holds usage this database lost (a restored backup or snapshot): the counters "
                "were repaired from its totals, and it is told",
            )

    async def _claim(self, config: UpstreamConfig) -> bool:
        """Take the channel's lease; with wait_for_lease, wait (at most a lease's length) for its holder's pass
        to end, so `sync now` beside a running server joins it rather than reporting "skipped"."""
        lease = lease_for(config)
        deadline = time.monotonic() + (lease if self.wait_for_lease else 0.0)
        while True:
            if await sync.claim(self.store, self.clock, config.name, self.owner, lease, _dead_local_process):
                return True
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(LEASE_POLL_SECONDS)

    async def flush(self, seconds: float) -> None:
        """Keep trying to deliver everything for at most `seconds` (the final sync at shutdown): pass after
        pass, since one pass sends only what was owed when it began."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                reports = await asyncio.wait_for(self.run(), max(0.1, deadline - time.monotonic()))
                if not any(report.bounded for report in reports):
                    return
            except (SyncFailed, TimeoutError):
                await asyncio.sleep(min(0.5, max(0.0, deadline - time.monotonic())))


async def sync_context(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx entry: the worker and its loop; at shutdown, a bounded final sync before the store closes."""
    config = app[CONFIG].sync
    domain = app[DOMAIN]
    server_id = await sync.server_id(domain.store, config.server_id)
    async with aiohttp.ClientSession() as session:
        tolerance = timedelta(hours=app[CONFIG].licensing.clock_tolerance_hours)
        worker = SyncWorker(
            domain.store,
            domain.clock,
            config,
            session,
            server_id,
            clock_tolerance=tolerance,
            check_holdings=app.get(SITE_START, True),
        )
        app[SYNC] = worker
        task = None
        if worker.channels:
            task = asyncio.create_task(
                run_periodic(
                    "sync",
                    worker.periodic,
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
            await worker.stop()
            if config.shutdown_timeout_seconds > 0 and await domain.store.duty("sync"):
                await worker.flush(config.shutdown_timeout_seconds)
