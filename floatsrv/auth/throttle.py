"""Login throttling: too many failed logins from one address, or for one username, are refused for a
while with 429 and Retry-After. (Keygen allows about 5 password logins per minute per address.)

State is in memory and per process: a restart forgets it, which is acceptable for slowing down guessing.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from datetime import timedelta

from floatsrv.clock import Clock

# Bound on remembered keys, so a flood of addresses cannot grow memory without end.
_MAX_KEYS = 20_000


@dataclass(frozen=True, slots=True)
class ThrottleRule:
    failures: int
    window: timedelta


@dataclass
class _Tracker:
    rule: ThrottleRule
    seen: dict[str, deque[float]] = field(default_factory=dict)

    def _recent(self, key: str, now: float) -> deque[float]:
        times = self.seen.get(key)
        if times is None:
            return deque()
        horizon = now - self.rule.window.total_seconds()
        while times and times[0] <= horizon:
            times.popleft()
        if not times:
            del self.seen[key]
        return times

    def wait(self, key: str, now: float) -> float:
        times = self._recent(key, now)
        if len(times) < self.rule.failures:
            return 0.0
        return times[-self.rule.failures] + self.rule.window.total_seconds() - now

    def add(self, key: str, now: float) -> None:
        if len(self.seen) >= _MAX_KEYS:
            for stale in [k for k, v in self.seen.items() if not v or v[-1] <= now - self.rule.window.total_seconds()]:
                del self.seen[stale]
            if len(self.seen) >= _MAX_KEYS:
                self.seen.pop(next(iter(self.seen)))
        self.seen.setdefault(key, deque()).append(now)

    def clear(self, key: str) -> None:
        self.seen.pop(key, None)


class LoginThrottle:
    def __init__(self, clock: Clock, per_address: ThrottleRule, per_user: ThrottleRule) -> None:
        self._clock = clock
        self._address = _Tracker(per_address)
        self._user = _Tracker(per_user)

    def retry_after(self, address: str, username: str) -> int | None:
        """Whole seconds to wait before this address may try this username again, or None."""
        now = self._clock.now().timestamp()
        wait = max(self._address.wait(address, now), self._user.wait(username, now))
        return math.ceil(wait) if wait > 0 else None

    def failed(self, address: str, username: str) -> None:
        now = self._clock.now().timestamp()
        self._address.add(address, now)
        self._user.add(username, now)

    def succeeded(self, username: str) -> None:
        # The account is fine; the address keeps its record (a guesser may also own one valid account).
        self._user.clear(username)
