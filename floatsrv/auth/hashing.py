"""The password check gate: scrypt runs on its own threads, bounded in concurrency and in rate.

Password checks are slow on purpose (tens of milliseconds of CPU each). On a small server a flood of
logins must not take the CPU the seat requests need, so checks run only on this gate's own executor
(`hashlib.scrypt` releases the GIL there: the event loop keeps running), at most `concurrency` at once and at
most `rate` a second (a token bucket of `burst`). The database's BEGIN/COMMIT never wait behind them.

When the gate is saturated, callers with `priority` (logins from addresses without recent failures, such as
the owner of an account under attack) queue for up to `max_wait` seconds, first come first served; all
others are refused at once with `GateBusy`, without any hashing. Lifetime: the application's.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")

# Most logins queued for a slot at once; beyond this even priority callers are refused (memory stays bounded).
_MAX_WAITERS = 64


class GateBusy(Exception):
    """No password check slot now; try again after `retry_after` seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"password checks are saturated; retry in {retry_after} s")
        self.retry_after = retry_after


@dataclass(slots=True)
class GateStats:
    checks: int = 0  # password checks run
    refused: int = 0  # callers refused without a check
    waited: int = 0  # priority callers that queued before their check


class HashGate:
    def __init__(
        self,
        concurrency: int,
        rate: float,
        *,
        burst: int | None = None,
        max_wait: float = 5.0,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        self.executor = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="floatsrv-hash")
        self.stats = GateStats()
        self._free = concurrency
        self._rate = rate
        self._burst = float(burst if burst is not None else max(1, math.ceil(rate)))
        self._tokens = self._burst
        self._stamp = now()
        self._now = now
        self._max_wait = max_wait
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._timer: asyncio.TimerHandle | None = None

    def _refill(self) -> None:
        now = self._now()
        self._tokens = min(self._burst, self._tokens + (now - self._stamp) * self._rate)
        self._stamp = now

    def _try_take(self) -> bool:
        self._refill()
        if self._free > 0 and self._tokens >= 1:
            self._free -= 1
            self._tokens -= 1
            return True
        return False

    def _retry_after(self) -> int:
        return max(1, math.ceil((1 - self._tokens) / self._rate)) if self._tokens < 1 else 1

    def _dispatch(self) -> None:
        """Hand free slots to queued callers, oldest first; wake again when the next token is due."""
        self._timer = None
        while self._waiters:
            waiter = self._waiters[0]
            if waiter.done():  # it gave up waiting
                self._waiters.popleft()
                continue
            if not self._try_take():
                break
            self._waiters.popleft()
            waiter.set_result(None)
        if self._waiters and self._free > 0 and self._timer is None:
            delay = max(0.001, (1 - self._tokens) / self._rate)
            self._timer = asyncio.get_running_loop().call_later(delay, self._dispatch)

    async def _slot(self, priority: bool) -> None:
        if not self._waiters and self._try_take():
            return
        if not priority or len(self._waiters) >= _MAX_WAITERS:
            self.stats.refused += 1
            raise GateBusy(self._retry_after())
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        self.stats.waited += 1
        self._dispatch()
        try:
            await asyncio.wait_for(asyncio.shield(waiter), self._max_wait)
        except (TimeoutError, asyncio.CancelledError) as exc:
            if waiter.done() and not waiter.cancelled():
                if isinstance(exc, TimeoutError):
                    return  # granted at the last moment: use it
                self._release()  # granted, but its caller is gone: hand the slot on
            waiter.cancel()
            if isinstance(exc, asyncio.CancelledError):
                raise
            self.stats.refused += 1
            raise GateBusy(self._retry_after()) from None

    def _release(self) -> None:
        self._free += 1
        self._dispatch()

    async def run(self, check: Callable[[], T], *, priority: bool) -> T:
        """Run `check` on the gate's executor once a slot is free. Raises GateBusy when none is (soon enough)."""
        await self._slot(priority)
        try:
            self.stats.checks += 1
            return await asyncio.get_running_loop().run_in_executor(self.executor, check)
        finally:
            self._release()

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)
