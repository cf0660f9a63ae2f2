"""Consumption periods: which reset window an instant falls in, anchored to the license start.

Periods are half-open `[start, end)`. Monthly and yearly periods keep the anchor's day of month,
clamped to the month's last day (an anchor on the 31st resets on 30 April and 28/29 February), and
always computed from the anchor itself so clamping never drifts. Resets therefore happen exactly at the
boundary, never late: a counter belongs to the period its write falls in.
"""

from __future__ import annotations

import calendar
from datetime import UTC, datetime, timedelta
from typing import Literal, NamedTuple

PeriodKind = Literal["daily", "weekly", "monthly", "yearly"]


class Period(NamedTuple):
    """A half-open period `[start, end)`."""

    start: datetime
    end: datetime


# A Monday, 1 January, midnight UTC: the default anchor gives calendar periods
# (days at 00:00 UTC, ISO weeks, calendar months and years).
CALENDAR_ANCHOR = datetime(2024, 1, 1, tzinfo=UTC)

_FIXED = {"daily": timedelta(days=1), "weekly": timedelta(weeks=1)}


def add_months(anchor: datetime, months: int) -> datetime:
    index = anchor.month - 1 + months
    year, month = anchor.year + index // 12, index % 12 + 1
    day = min(anchor.day, calendar.monthrange(year, month)[1])
    return anchor.replace(year=year, month=month, day=day)


def period_bounds(kind: PeriodKind, anchor: datetime, instant: datetime) -> tuple[datetime, datetime]:
    """Return the `[start, end)` period of `kind` anchored at `anchor` that contains `instant` (a pure
    function; `domain.license.LicenseMemo` remembers the current period of each license)."""
    fixed = _FIXED.get(kind)
    if fixed is not None:
        steps = (instant - anchor) // fixed
        start = anchor + steps * fixed
        return start, start + fixed
    step = 1 if kind == "monthly" else 12
    months = ((instant.year - anchor.year) * 12 + instant.month - anchor.month) // step * step
    start = add_months(anchor, months)
    while start > instant:
        months -= step
        start = add_months(anchor, months)
    end = add_months(anchor, months + step)
    while end <= instant:
        months += step
        start, end = end, add_months(anchor, months + step)
    return start, end
