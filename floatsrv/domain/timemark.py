"""The latest time this server has seen, for judging license expiry and `refresh_by`, and for catching a
system clock set back (clock tampering).

Kept apart from the server's own clock (`clock.SteadyClock`, which seat timeouts and periods run on): the mark
rises with the server's own readings, the `issued_at` of license files it accepts and the times in vendor
receipts, so a file dated hours ahead (within tolerance) can never move a seat's expiry. Licenses are judged
against the later of the clock and the mark. A system clock more than `licensing.clock_tolerance_hours` behind
the mark is clock tampering: logged (`clock_tampered`), a /readyz warning, a metric, and a flag in the next
sync batch and usage report.

`TimeMark` is owned by the `Domain`; its value lives for the process and is persisted in `server_state`
(`time_mark`, µs), never lowered.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from floatsrv.db import server_state
from floatsrv.db.store import Store
from floatsrv.times import from_us, parse_instant, to_us

TIME_MARK = "time_mark"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Tampering:
    """The system clock was this far behind the mark when last read."""

    wall: datetime
    mark: datetime

    @property
    def behind_seconds(self) -> float:
        return (self.mark - self.wall).total_seconds()


class TimeMark:
    def __init__(self, tolerance: timedelta = timedelta(hours=24)) -> None:
        self.tolerance = tolerance
        self.mark = _EPOCH
        self.tampered: Tampering | None = None  # as of the last `check`

    def later(self, now: datetime) -> datetime:
        """The time licenses are judged at: `now`, or the mark if that is later."""
        return self.mark if self.mark > now else now

    def load(self, conn: sqlite3.Connection) -> None:
        value = server_state.get(conn, TIME_MARK)
        if value is not None and from_us(value) > self.mark:
            self.mark = from_us(value)

    def raise_to(self, conn: sqlite3.Connection, at: datetime) -> None:
        """Inside a write unit: the mark moves up to `at` (never down)."""
        if at > self.mark:
            server_state.raise_to(conn, TIME_MARK, to_us(at))
            self.mark = at

    def check(self, wall: datetime) -> Tampering | None:
        """Whether the system clock reads more than the tolerance before the mark (kept in `tampered`)."""
        self.tampered = Tampering(wall, self.mark) if wall < self.mark - self.tolerance else None
        return self.tampered


async def observe_time(store: Store, text: object) -> None:
    """Raise the persisted mark to a time a vendor stated (a receipt's `acknowledged_at`), where one is given."""
    if not isinstance(text, str):
        return
    try:
        at = parse_instant(text)
    except ValueError:
        return
    await store.write(lambda conn: TimeMark().raise_to(conn, at))


async def judged_now(store: Store, now: datetime) -> datetime:
    """The time licenses are judged at, for a tool outside the server (admin commands): the later of `now`
    and the persisted mark, so a clock set back shows files in the state the server gives them."""
    mark = TimeMark()
    await store.read(mark.load)
    return mark.later(now)
