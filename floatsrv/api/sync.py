"""Sync endpoints under /v1: what is owed to each upstream (and to air-gap exports), run now, retry parked."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from floatsrv.api.account import actor
from floatsrv.api.native import ok
from floatsrv.appkeys import CONFIG, DOMAIN, SYNC
from floatsrv.domain import sync
from floatsrv.domain.sync import AIRGAP, ChannelStatus, SyncFailed
from floatsrv.times import iso_us

RUN_TIMEOUT_SECONDS = 120


def channel_view(status: ChannelStatus, now_lag: float | None, upstream: dict[str, Any] | None) -> dict[str, Any]:
    batch = status.open_batch
    return {
        "name": status.channel,
        **(upstream or {}),
        "pending_records": status.pending_records,
        "oldest_pending_at": iso_us(status.oldest_pending_at),
        "lag_seconds": now_lag,
        "parked_batches": status.parked_batches,
        "open_batch": None
        if batch is None
        else {
            "id": batch.id,
            "created_at": iso_us(batch.created_at),
            "attempts": batch.attempts,
            "last_error": batch.last_error,
        },
        "last_success_at": iso_us(status.last_success_at),
        "last_error_at": iso_us(status.last_error_at),
        "last_error": status.last_error,
        "consecutive_failures": status.consecutive_failures,
        "requests": status.requests,
    }


async def status_view(request: web.Request) -> dict[str, Any]:
    config = request.app[CONFIG].sync
    domain = request.app[DOMAIN]
    upstreams = {u.name: {"format": u.format, "url": u.url} for u in config.upstreams}
    statuses = await sync.status(domain.store, [*upstreams, AIRGAP])
    now = domain.clock.now()
    channels = [channel_view(s, sync.lag_seconds(s.oldest_pending_at, now), upstreams.get(s.channel)) for s in statuses]
    return {
        "object": "sync_status",
        "server_id": request.app[SYNC].server_id,
        "interval_seconds": config.interval_seconds,
        "channels": channels[:-1],
        "airgap": channels[-1],
    }


def _upstream_names(request: web.Request) -> list[str]:
    return [u.name for u in request.app[CONFIG].sync.upstreams]


async def get_status(request: web.Request) -> web.Response:
    return ok(await status_view(request))


async def run_upstreams(request: web.Request) -> tuple[list[dict[str, Any]], str | None]:
    """Sync every upstream now (audited): (what each channel sent, the error if it failed or ran out of time).
    The periodic loop carries on as before. `POST /v1/sync/run` and the console's "Sync now"."""
    worker = request.app[SYNC]
    domain = request.app[DOMAIN]
    await sync.note_run_requested(domain.store, domain.clock, actor(request), _upstream_names(request))
    try:
        reports = await asyncio.wait_for(worker.run(), RUN_TIMEOUT_SECONDS)
    except SyncFailed as exc:
        return [], str(exc)
    except TimeoutError:
        worker.wake_up()
        return [], f"not finished after {RUN_TIMEOUT_SECONDS} s; the worker goes on in the background"
    runs = [{"channel": r.channel, "records": r.records, "requests": r.requests, "skipped": r.skipped} for r in reports]
    return runs, None


async def run_now(request: web.Request) -> web.Response:
    """Sync every upstream now and answer with the outcome."""
    runs, error = await run_upstreams(request)
    return ok({**await status_view(request), "run": {"ok": error is None, "error": error, "channels": runs}})


async def reopen_parked(request: web.Request) -> int:
    """Reopen every parked batch (audited) and wake the worker: how many were reopened."""
    domain = request.app[DOMAIN]
    reopened = await sync.retry_parked(domain.store, domain.clock, _upstream_names(request), actor(request))
    request.app[SYNC].wake_up()
    return reopened


async def retry_parked(request: web.Request) -> web.Response:
    reopened = await reopen_parked(request)
    return ok({**await status_view(request), "reopened_batches": reopened})
