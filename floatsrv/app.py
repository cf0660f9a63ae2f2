"""The application factory: wiring only. `serve`, the tests and benchmarks all build the app here.

Start-up order (cleanup_ctx; teardown runs in reverse, and only for what started):
store (open, migrate, sync licenses) -> auth (signing key, users) -> seat sweeper.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

from aiohttp import web

from floatsrv.api.middleware import pipeline
from floatsrv.api.routes import setup_routes
from floatsrv.appkeys import CONFIG, DOMAIN, TOKENS, USERS
from floatsrv.auth.directory import UserDirectory
from floatsrv.auth.tokens import TokenIssuer, load_or_create_key
from floatsrv.clock import Clock, SystemClock
from floatsrv.config import Config
from floatsrv.db.store import Store, StoreOptions
from floatsrv.domain.catalog import sync_catalog
from floatsrv.domain.context import Domain
from floatsrv.log import get_logger
from floatsrv.workers.sweeper import sweeper_context

log = get_logger("floatsrv")

TOKEN_KEY_FILE = "token-signing.key"  # noqa: S105 -- a file name, not a secret


def create_app(
    config: Config, *, clock: Clock | None = None, store_options: StoreOptions | None = None
) -> web.Application:
    clock = clock or SystemClock()
    app = web.Application(middlewares=[pipeline], client_max_size=config.server.max_body_bytes)
    app[CONFIG] = config

    async def store_context(app: web.Application) -> AsyncIterator[None]:
        options = store_options or StoreOptions(
            synchronous=config.storage.synchronous, busy_timeout_ms=config.storage.busy_timeout_ms
        )
        store = Store(config.db_path, clock, options)
        await store.open()
        try:
            if store.applied_migrations:
                log.info("database_migrated", path=str(config.db_path), versions=store.applied_migrations)
            catalog, report = await sync_catalog(store, list(config.licenses), clock)
            log.info(
                "licenses_loaded",
                count=len(catalog.licenses()),
                added=report.added,
                removed=report.removed,
                seats_ended=report.seats_ended,
            )
            app[DOMAIN] = Domain(store=store, clock=clock, catalog=catalog)
            yield
        finally:
            await store.close()

    async def auth_context(app: web.Application) -> AsyncIterator[None]:
        key = load_or_create_key(config.storage.data_dir / TOKEN_KEY_FILE)
        app[TOKENS] = TokenIssuer(key, clock, timedelta(hours=config.auth.token_lifetime_hours))
        app[USERS] = await asyncio.to_thread(UserDirectory, list(config.auth.users))
        if not config.auth.enabled:
            log.warning("auth_disabled", message="authentication is OFF: anyone who can reach this port is admin")
        for user in config.auth.users:
            if user.uses_demo_password:
                log.warning(
                    "demo_password_in_use",
                    username=user.username,
                    message=f"!!! user {user.username!r} has the published demo password; change it before "
                    "exposing this server (use password_hash from `floatsrv hash-password`) !!!",
                )
        yield

    app.cleanup_ctx.append(store_context)
    app.cleanup_ctx.append(auth_context)
    app.cleanup_ctx.append(sweeper_context)
    setup_routes(app)
    return app
