"""Usage history: seat concurrency per hour or day, and consumption per day or period.

Concurrency is computed from the seat intervals floatsrv stores (registered, then ended or expired), exactly:
`peak` is the most seats held at any instant of the bucket, `average` the time-weighted mean (seat time in
the bucket divided by its length, to three decimals). Seats are intervals [start, end): one ending as
another starts at the same instant is never counted twice. `limit` and `reserved` are today's (the seat limit
with add-ons, the policy's reservations); `denials` counts the refused seats in the bucket.

`prune_history` forgets what the reports read (denials, ended seats, daily totals) past `reports.retention_days`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Literal, NamedTuple

from floatsrv.db import denials as db_denials
from floatsrv.db import history
from floatsrv.db import licenses as db_licenses
from floatsrv.db.history import DayRow, PeriodRow
from floatsrv.db.seats import LICENSE_SEAT
from floatsrv.domain.context import Domain
from floatsrv.errors import FeatureNotFloating, FeatureNotFound, InvalidRequest, LicenseNotFound
from floatsrv.times import from_us, to_us

HOUR_US = 3_600_000_000
DAY_US = 24 * HOUR_US
BUCKETS: dict[str, int] = {"hour": HOUR_US, "day": DAY_US}
_MOST_BUCKETS = 10_000
_THOUSANDTHS = Decimal("0.001")
_EARLIEST, _LATEST = 0, to_us(datetime(9000, 1, 1, tzinfo=UTC))  # beyond them a bound cannot be written back


class Bucket(NamedTuple):
    start: int
    end: int
    peak: int
    average: Decimal
    limit: int
    reserved: int
    denials: int


@dataclass(frozen=True, slots=True)
class Concurrency:
    license_id: int
    feature: str | None
    bucket: str
    buckets: list[Bucket]


def window(
    since: datetime | None, until: datetime | None, bucket_us: int, now: datetime, default: timedelta
) -> tuple[int, int]:
    """[since, until) widened to whole buckets (UTC); defaults: until now, since `default` before it.
    Raises InvalidRequest for an empty or too long window."""
    end = to_us(until or now)
    start = to_us(since) if since is not None else end - int(default.total_seconds()) * 1_000_000
    start -= start % bucket_us
    if end % bucket_us:
        end += bucket_us - end % bucket_us
    if end <= start:
        raise InvalidRequest("since must be before until", param="since")
    if start < _EARLIEST or end > _LATEST:
        raise InvalidRequest(
            "since and until must lie between 1970 and 9000", param="since" if start < _EARLIEST else "until"
        )
    if (end - start) // bucket_us > _MOST_BUCKETS:
        raise InvalidRequest(f"at most {_MOST_BUCKETS} buckets per report: narrow since/until", param="since")
    return start, end


def sweep(
    intervals: Sequence[tuple[int, int]], denied: Sequence[int], start: int, end: int, bucket_us: int
) -> list[tuple[int, int, int, int, int]]:
    """Per bucket of [start, end): (start, end, peak, seat time in µs, denials), from [start, end) intervals."""
    changes: dict[int, int] = {}
    level = 0
    for begin, stop in intervals:
        if begin <= start:
            level += 1  # held when the window opens
        else:
            changes[begin] = changes.get(begin, 0) + 1
        if stop < end:
            changes[stop] = changes.get(stop, 0) - 1
    times = sorted(t for t, delta in changes.items() if delta and start < t < end)
    out: list[tuple[int, int, int, int, int]] = []
    index = denial = 0
    for bucket_start in range(start, end, bucket_us):
        bucket_end = bucket_start + bucket_us
        while index < len(times) and times[index] == bucket_start:  # a seat ending as the bucket opens
            level += changes[times[index]]
            index += 1
        peak, area, at = level, 0, bucket_start
        while index < len(times) and times[index] < bucket_end:
            t = times[index]
            area += level * (t - at)
            level += changes[t]  # every change at one instant at once: an end and a start never overlap
            peak = max(peak, level)
            at = t
            index += 1
        area += level * (bucket_end - at)
        count = 0
        while denial < len(denied) and denied[denial] < bucket_end:
            count += denied[denial] >= bucket_start
            denial += 1
        out.append((bucket_start, bucket_end, peak, area, count))
    return out


async def concurrency(
    domain: Domain, license_id: int, feature: str | None, bucket: str, since: datetime | None, until: datetime | None
) -> Concurrency:
    """Seat concurrency of a license's seats (or a floating feature's) per `bucket` (hour | day)."""
    license = domain.catalog.get(license_id)
    if license is None:
        raise LicenseNotFound(f"no license {license_id}", license_id=license_id, param="license_id")
    code = feature or LICENSE_SEAT
    if feature:
        spec = license.spec.feature(feature)
        if spec is None:
            raise FeatureNotFound(f"license {license_id} has no feature {feature!r}", feature=feature)
        if not spec.is_floating:
            raise FeatureNotFloating(f"feature {feature!r} has no seats", feature=feature)
    bucket_us = BUCKETS[bucket]
    now = domain.clock.now()
    start, end = window(since, until, bucket_us, now, timedelta(days=1 if bucket == "hour" else 30))
    reserved = domain.policy.reserved(license_id, code)

    def read(conn: sqlite3.Connection) -> Concurrency:
        intervals = history.seat_intervals(conn, license_id, code, start, end, to_us(now))
        denied = db_denials.times(conn, license_id, code, start, end)
        limit = db_licenses.feature_seat_limit(conn, license_id, code) if feature else license.spec.floating_users
        rows = [
            Bucket(s, e, peak, (Decimal(area) / bucket_us).quantize(_THOUSANDTHS, ROUND_HALF_EVEN), limit, reserved, n)
            for s, e, peak, area, n in sweep(intervals, denied, start, end, bucket_us)
        ]
        return Concurrency(license_id, feature or None, bucket, rows)

    return await domain.store.read(read)


Consumed = DayRow | PeriodRow


async def consumption(
    domain: Domain,
    license_id: int | None,
    feature: str | None,
    bucket: Literal["day", "period"],
    since: datetime | None,
    until: datetime | None,
) -> tuple[int, int, list[Consumed]]:
    """Consumption per day (from the daily totals) or per period (the counters), per license and feature."""
    if license_id is not None and domain.catalog.get(license_id) is None:
        raise LicenseNotFound(f"no license {license_id}", license_id=license_id, param="license_id")
    start, end = window(since, until, DAY_US, domain.clock.now(), timedelta(days=30))
    if bucket == "day":
        rows: list[Consumed] = list(
            await domain.store.read(lambda conn: history.consumption_days(conn, license_id, feature, start, end))
        )
    else:
        rows = list(
            await domain.store.read(lambda conn: history.consumption_periods(conn, license_id, feature, start, end))
        )
    return start, end, rows


def day_end(row: Consumed) -> datetime | None:
    """The end of a consumption bucket (a day, a period; None for a counter that never resets)."""
    if isinstance(row, DayRow):
        return from_us(row.start + DAY_US)
    return from_us(row.end) if row.end is not None else None


async def prune_history(domain: Domain, retention_days: int, chunk: int = 5000, chunks: int = 20) -> int:
    """Delete denials, ended seats and daily consumption totals past the retention, a chunk per write unit
    and at most `chunks` of each per run (the next run goes on); returns how many rows went."""
    before = to_us(domain.clock.now()) - retention_days * 86_400_000_000
    total = 0
    prunes: tuple[Callable[[sqlite3.Connection, int, int], int], ...] = (db_denials.prune, history.prune)
    for prune_rows in prunes:
        for _ in range(chunks):
            gone = await domain.store.write(_pruning(prune_rows, before, chunk))
            total += gone
            if gone < chunk:
                break
    return total


def _pruning(
    prune_rows: Callable[[sqlite3.Connection, int, int], int], before: int, chunk: int
) -> Callable[[sqlite3.Connection], int]:
    return lambda conn: prune_rows(conn, before, chunk)
