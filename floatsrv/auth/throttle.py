"""Login throttling: every login attempt is counted before its password is checked, per client address and
per username; beyond the limits the answer is 429 with Retry-After, without a check.

- **Per address**: at most `max_failures_per_address` attempts that did not succeed within the window. An
  attempt counts the moment it is admitted (so a burst sent at once gets no more checks than the limit) and
  is taken back when the password was right.
- **Per username**: at most `max_failures_per_user` failed attempts within the window, from everywhere, but
  this limit applies only to addresses that have failures of their own. A correct login from an address with
  no recent failures always gets its check: guessing from many addresses is slowed (and bounded in total by
  the hashing gate, `auth.hashing`), yet nobody can lock the owner out by failing on purpose from elsewhere.
  The trade-off (docs/reliability.md): an attacker with many addresses gets one attempt per address and window
  for a username; the per-address limit and the hashing rate bound what that is worth.

State is in memory and per process: a restart forgets it, which is acceptable for slowing down guessing.
(Keygen allows about 5 password logins per minute per address.) On PostgreSQL the nodes share it instead
(domain.login_attempts), judged by the same `wait_for`.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from datetime import timedelta
from typing import NamedTuple

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

    def recent(self, key: str, now: float) -> deque[float]:
        times = self.seen.get(key)
        if times is None:
            return deque()
        horizon = now - self.rule.window.total_seconds()
        while times and times[0] <= horizon:
            times.popleft()
        if not times:
            del self.seen[key]
        return times

    def add(self, key: str, now: float) -> None:
        if len(self.seen) >= _MAX_KEYS:
            horizon = now - self.rule.window.total_seconds()
            for stale in [k for k, v in self.seen.items() if not v or v[-1] <= horizon]:
                del self.seen[stale]
            if len(self.seen) >= _MAX_KEYS:
                self.seen.pop(next(iter(self.seen)))
        self.seen.setdefault(key, deque()).append(now)

    def take_back(self, key: str, at: float) -> None:
        times = self.seen.get(key)
        if times is not None and at in times:
            times.remove(at)

    def clear(self, key: str) -> None:
        self.seen.pop(key, None)


def _wait(rule: ThrottleRule, times: list[float] | deque[float], now: float) -> float:
    """Seconds until the oldest of the last `failures` recent attempts leaves the window (0: none to wait)."""
    if len(times) < rule.failures:
        return 0.0
    return times[-rule.failures] + rule.window.total_seconds() - now


def wait_for(
    per_address: ThrottleRule, per_user: ThrottleRule, address_times: list[float], user_times: list[float], now: float
) -> float:
    """The throttle's judgement of one attempt, from the recent attempt times (oldest first) of its address and
    the user's recent failures: seconds to wait, 0 to admit it (see the module docstring)."""
    wait = _wait(per_address, address_times, now)
    if address_times:  # only an address with failures of its own meets the per-user limit
        wait = max(wait, _wait(per_user, user_times, now))
    return wait


class Attempt(NamedTuple):
    """An admitted login attempt, counted as a failure until `LoginThrottle.succeeded` takes it back."""

    address: str
    username: str
    at: float
    clean: bool  # the address had no recent failures when it came


class LoginThrottle:
    def __init__(self, clock: Clock, per_address: ThrottleRule, per_user: ThrottleRule) -> None:
        self._clock = clock
        self._address = _Tracker(per_address)
        self._user = _Tracker(per_user)

    def admit(self, address: str, username: str) -> Attempt | int:
        """Count an attempt before its check: the Attempt, or whole seconds to wait (nothing counted)."""
        now = self._clock.now().timestamp()
        address_times = self._address.recent(address, now)
        clean = not address_times
        wait = wait_for(
            self._address.rule, self._user.rule, list(address_times), list(self._user.recent(username, now)), now
        )
        if wait > 0:
            return max(1, math.ceil(wait))
        self._address.add(address, now)
        self._user.add(username, now)
        return Attempt(address, username, now, clean)

    def succeeded(self, attempt: Attempt) -> None:
        # The account is fine: its failures are forgotten. The address keeps its other failures (a guesser
        # may also own one valid account), but this attempt was not one.
        self._address.take_back(attempt.address, attempt.at)
        self._user.clear(attempt.username)

    def not_checked(self, attempt: Attempt) -> None:
        """The attempt was refused before its check (password checks saturated). It still counts for its
        address (a burst from one address meets 429 after the limit), not against the user."""
        self._user.take_back(attempt.username, attempt.at)
