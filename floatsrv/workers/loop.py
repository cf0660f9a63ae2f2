"""A periodic background loop that backs off on failure and stays quiet about it.

`run_periodic` calls `step()` every `interval` seconds (sooner when its `wake` event is set). When a step
fails, the next try comes after a capped exponential backoff with jitter; errors are logged at most once
per `error_log_every` seconds, and one `*_recovered` line marks the first success after failures.
Cancellation is never swallowed.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web

from floatsrv.log import get_logger

log = get_logger("floatsrv.workers")


async def run_periodic(
    name: str,
    step: Callable[[], Awaitable[object]],
    interval: float,
    *,
    backoff_max: float = 300.0,
    error_log_every: float = 30.0,
    wake: asyncio.Event | None = None,
) -> None:
    failures = 0
    last_logged = float("-inf")
    while True:
        delay = interval
        try:
            await step()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 -- a background loop must outlive any single failure
            failures += 1
            delay = min(backoff_max, interval * 2 ** min(failures, 16)) * random.uniform(0.5, 1.0)
            now = time.monotonic()
            if now - last_logged >= error_log_every:
                last_logged = now
                log.warning(
                    f"{name}_failed", error=repr(exc), consecutive_failures=failures, retry_in_s=round(delay, 1)
                )
        else:
            if failures:
                log.info(f"{name}_recovered", after_failures=failures)
                failures = 0
        if wake is None:
            await asyncio.sleep(delay)
        else:
            # Someone asked for a run now: cut the wait short.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), delay)
            wake.clear()


def periodic_context(
    name: str, step: Callable[[web.Application], Awaitable[object]], interval: Callable[[web.Application], float]
) -> Callable[[web.Application], AsyncIterator[None]]:
    """A cleanup_ctx entry running `step(app)` periodically between start-up and shutdown."""

    async def context(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(run_periodic(name, lambda: step(app), interval(app)), name=name)
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    return context
