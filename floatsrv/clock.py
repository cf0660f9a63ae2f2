"""Time sources. Everything that asks "what time is it" takes a `Clock`, so tests can move time.

Production uses `SystemClock`; tests and simulations use `ManualClock`, which only moves when told to.
All instants are timezone-aware UTC datetimes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """Return the current instant as an aware UTC datetime."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class ManualClock:
    """A clock that stands still until `advance` or `set` is called (thread-safe: the writer thread reads it)."""

    def __init__(self, start: datetime | None = None) -> None:
        self._lock = threading.Lock()
        self._now = start if start is not None else datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
        if self._now.tzinfo is None:
            raise ValueError("ManualClock needs an aware datetime")

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def advance(self, delta: timedelta) -> datetime:
        with self._lock:
            self._now += delta
            return self._now

    def set(self, instant: datetime) -> None:
        with self._lock:
            self._now = instant


@dataclass(frozen=True, slots=True)
class ClockJump:
    """A backward step of the wall clock beyond the tolerance, as seen by `SteadyClock`."""

    at: datetime  # what the server's time was when the wall clock was seen behind it
    wall: datetime  # what the wall clock said then
    seconds: float  # how far behind it was


class SteadyClock:
    """The server's time: the wall clock, except that it never runs backwards.

    When the wall clock steps back (an admin or NTP setting it, or tampering to get seats or periods back),
    this clock keeps going from where it was at the pace of the monotonic clock, and follows the wall clock
    again once that has caught up. Seat expiry therefore keeps working (real elapsed time still counts),
    usage never lands in a period that already ended, and no stored timestamp goes backwards. A step back
    of more than `tolerance` is recorded in `jumps` (shown by health) and passed to `on_jump` (logging).
    `floor` starts the clock no earlier than a time already seen (the database's latest, at start-up).
    """

    def __init__(
        self,
        wall: Clock,
        *,
        tolerance: timedelta = timedelta(seconds=5),
        monotonic: Callable[[], float] = time.monotonic,
        on_jump: Callable[[ClockJump], None] | None = None,
    ) -> None:
        self.wall = wall
        self.tolerance = tolerance
        self._monotonic = monotonic
        self.on_jump = on_jump
        self._lock = threading.Lock()
        self._anchor = wall.now()  # the last wall time followed ...
        self._anchor_mono = monotonic()  # ... and the monotonic time then
        self._behind = False
        self._reported = timedelta(0)  # the gap already reported in the current spell behind the wall clock
        self.jumps: list[ClockJump] = []

    def floor(self, earliest: datetime) -> None:
        """Never hand out a time before `earliest` (e.g. the newest timestamp already in the database)."""
        with self._lock:
            if earliest > self._anchor:
                self._anchor, self._anchor_mono, self._behind = earliest, self._monotonic(), False
        self.now()  # notices (and reports) a wall clock that is behind it

    def now(self) -> datetime:
        wall = self.wall.now()
        mono = self._monotonic()
        jump = None
        with self._lock:
            if not self._behind and wall >= self._anchor:
                self._anchor, self._anchor_mono = wall, mono
                return wall
            # Behind (or just stepped back): the last wall time followed plus the real time since then.
            steady = self._anchor + timedelta(seconds=max(0.0, mono - self._anchor_mono))
            if wall >= steady:  # caught up: follow the wall clock again
                self._anchor, self._anchor_mono, self._behind, self._reported = wall, mono, False, timedelta(0)
                return wall
            self._behind = True
            gap = steady - wall
            if gap > self.tolerance and gap > self._reported + self.tolerance:  # a (further) step back
                self._reported = gap
                jump = ClockJump(steady, wall, gap.total_seconds())
                self.jumps.append(jump)
                del self.jumps[:-20]
        if jump is not None and self.on_jump is not None:
            self.on_jump(jump)
        return steady


def wall_now(clock: Clock) -> datetime:
    """What the system clock says, under a SteadyClock too (which never runs behind what it has seen)."""
    return clock.wall.now() if isinstance(clock, SteadyClock) else clock.now()
