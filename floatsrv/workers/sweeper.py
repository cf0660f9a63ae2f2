"""Seat sweeper: marks expired seats ended with their reason. Counting never waits for it: an expired
seat stops counting the moment it expires; the sweep only writes the history row's end."""

from __future__ import annotations

from aiohttp import web

from floatsrv.appkeys import CONFIG, DOMAIN
from floatsrv.domain.seats import sweep_expired
from floatsrv.log import get_logger
from floatsrv.workers.loop import periodic_context

log = get_logger("floatsrv.workers")


async def sweep_once(app: web.Application) -> int:
    ended = await sweep_expired(app[DOMAIN])
    if ended:
        log.info("seats_expired", count=ended)
    return ended


sweeper_context = periodic_context("seat_sweep", sweep_once, lambda app: app[CONFIG].seats.sweep_interval_seconds)
