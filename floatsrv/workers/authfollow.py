"""Following credential changes made by other nodes of a PostgreSQL site (token revocation, password changes,
a rotated signing key): `auth.guard.Guard.follow` once a second, off the event loop, so that no request ever
waits on the database for it and a database that stops answering never stalls the loop. One SQLite server
needs none: its guard re-reads the local database itself (a read of a local file)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from floatsrv.appkeys import DOMAIN, GUARD
from floatsrv.auth.guard import RECHECK_SECONDS
from floatsrv.workers.loop import periodic_context

_follow = periodic_context("auth_follow", lambda app: app[GUARD].follow(), lambda app: RECHECK_SECONDS)


async def auth_follow_context(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx entry: the follow loop between start-up and shutdown, on PostgreSQL."""
    if not app[DOMAIN].store.shared:
        yield
        return
    async for _ in _follow(app):
        yield
