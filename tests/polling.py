"""Waiting in tests for something another thread, task or process does: poll a condition until it holds or
a deadline passes (a loaded CI machine is slow; a fixed sleep is either too short there or wasted here)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    """Block until `predicate()` is true; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.05)


async def wait_until(predicate: Callable[[], Awaitable[bool]], seconds: float = 30) -> None:
    """The same from a test's event loop, for an async predicate (the loop keeps serving meanwhile)."""
    deadline = asyncio.get_running_loop().time() + seconds
    while not await predicate():
        assert asyncio.get_running_loop().time() < deadline, "timed out waiting"
        await asyncio.sleep(0.05)
