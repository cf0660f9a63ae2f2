"""Seat sweeper: marks expired seats ended with their reason. Counting never waits for it: an expired
seat stops counting the moment it expires; the sweep only writes the history row's end. It also forgets
bearer tokens that expired more than 30 days ago, compacts raw usage events past their retention, forgets
report history (ended seats, denials, daily totals) past `reports.retention_days`, and writes down the
server's time (the floor of its clock after a restart). On PostgreSQL one node at a time sweeps (the store's
"sweeper" duty); every node writes down its time."""

from __future__ import annotations

from aiohttp import web

from floatsrv.appkeys import CONFIG, DOMAIN, LIVE
from floatsrv.domain.context import Domain
from floatsrv.domain.credentials import prune_expired_tokens
from floatsrv.domain.health import remember_time
from floatsrv.domain.reports import prune_history
from floatsrv.domain.seats import sweep_expired
from floatsrv.domain.usage import compact_events
from floatsrv.licenselog import log_tampering
from floatsrv.log import get_logger
from floatsrv.workers.loop import periodic_context

log = get_logger("floatsrv.workers")


async def sweep_once(app: web.Application) -> int:
    domain = app[DOMAIN]
    if not await domain.store.duty("sweeper"):
        # Another node of this PostgreSQL database sweeps; this one only writes down its own time.
        await _remember_time(domain)
        return 0
    ended = await sweep_expired(domain)
    if ended:
        log.info("seats_expired", count=ended)
    # Tokens long past their expiry are useless; forgetting them keeps the token table small.
    pruned = await prune_expired_tokens(domain.store, domain.clock)
    if pruned:
        log.info("expired_tokens_pruned", count=pruned)
    compacted = await compact_events(domain, app[LIVE].config.storage.event_retention_days)
    if compacted:
        log.info("usage_events_compacted", count=compacted)
    # The history reports read: seat intervals, denials and daily consumption totals, kept this long.
    forgotten = await prune_history(domain, app[LIVE].config.reports.retention_days)
    if forgotten:
        log.info("report_history_pruned", rows=forgotten)
    await _remember_time(domain)
    return ended


async def _remember_time(domain: Domain) -> None:
    tampering = await remember_time(domain)
    if tampering is not None:
        log_tampering(tampering)


sweeper_context = periodic_context("seat_sweep", sweep_once, lambda app: app[CONFIG].seats.sweep_interval_seconds)
