"""Online activation and refresh: with `licensing.upstream` set, the server asks the vendor for its license file
at start and every `licensing.refresh_interval_seconds`.

`GET <upstream>/license-file?server_key=...` answers the vendor's newest file for this server; one that is new
here is imported live (held seats stay). When the vendor has none yet (404), the server activates: it makes an
activation request and `POST`s it to `<upstream>/activate`, whose answer is the file. A failed fetch leaves the
files in force as they are (the loop backs off; past a file's `refresh_by` its licenses stop, with warnings
from 7 days before). One fetch at a time; started and stopped through `cleanup_ctx`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Literal

import aiohttp
from aiohttp import web

from floatsrv.appkeys import CONFIG, DOMAIN, IDENTITY
from floatsrv.domain import activation, licensing
from floatsrv.domain.accounts import Actor
from floatsrv.errors import LicenseFileRefused
from floatsrv.log import get_logger
from floatsrv.signing import public_key_text
from floatsrv.upstream import Vendor
from floatsrv.workers.loop import run_periodic

log = get_logger("floatsrv.licenses")

Outcome = Literal["imported", "unchanged", "activated"]


class LicenseFetcher:
    def __init__(self, app: web.Application, session: aiohttp.ClientSession) -> None:
        config = app[CONFIG]
        upstream = config.licensing_upstream()
        assert upstream is not None
        self.app = app
        self.vendor = Vendor(upstream, session, app[DOMAIN].clock)
        self.actor = Actor(f"upstream:{upstream.name}", "upstream")
        self._lock = asyncio.Lock()

    async def refresh(self) -> Outcome:
        """Fetch (or, the first time, activate) and import. Raises UpstreamError or LicenseFileRefused."""
        async with self._lock:
            domain = self.app[DOMAIN]
            key = self.app[IDENTITY]
            text = await self.vendor.license_file(public_key_text(key))
            how: Outcome = "imported"
            if text is None:  # the vendor has no file for this server yet: activate
                _, document = await activation.create_request(
                    domain.store, domain.clock, domain.licensing, key, self.actor, self.app[CONFIG].sync.server_id
                )
                text = await self.vendor.activate(document)
                how = "activated"
            result = await licensing.import_text(domain, self.actor, text)
            if result.outcome == "unchanged":
                return "unchanged"
            log.info(
                "license_file_refreshed",
                file_id=result.file.file_id,
                how=how,
                licenses=result.file.license_ids,
                superseded=result.superseded,
            )
            return how

    async def step(self) -> None:
        try:
            await self.refresh()
        except LicenseFileRefused as exc:
            log.error("license_file_refused", source=self.actor.name, code=exc.code, error=exc.message)
            raise


FETCHER = web.AppKey("license_fetcher", LicenseFetcher)


async def license_fetch_context(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx entry: the fetch loop, only when `licensing.upstream` names one."""
    config = app[CONFIG]
    if config.licensing_upstream() is None:
        yield
        return
    async with aiohttp.ClientSession() as session:
        fetcher = app[FETCHER] = LicenseFetcher(app, session)
        interval = config.licensing.refresh_interval_seconds
        task = asyncio.create_task(
            run_periodic("license_refresh", fetcher.step, interval, backoff_max=interval), name="license_refresh"
        )
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
