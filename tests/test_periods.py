"""Period arithmetic: boundaries are exact, anchored, and never drift when months are short."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from floatsrv.periods import CALENDAR_ANCHOR, period_bounds


def t(*parts: int) -> datetime:
    return datetime(*parts).replace(tzinfo=UTC)  # type: ignore[arg-type]  # year, month, day, ... as given


@pytest.mark.parametrize(
    ("kind", "anchor", "instant", "start", "end"),
    [
        ("daily", CALENDAR_ANCHOR, t(2026, 3, 5, 23, 59), t(2026, 3, 5), t(2026, 3, 6)),
        ("daily", t(2026, 1, 1, 6), t(2026, 3, 5, 5, 59), t(2026, 3, 4, 6), t(2026, 3, 5, 6)),
        ("weekly", CALENDAR_ANCHOR, t(2026, 3, 5, 12), t(2026, 3, 2), t(2026, 3, 9)),  # ISO weeks
        ("monthly", CALENDAR_ANCHOR, t(2026, 2, 28, 23), t(2026, 2, 1), t(2026, 3, 1)),
        ("monthly", t(2025, 1, 31), t(2026, 2, 28), t(2026, 2, 28), t(2026, 3, 31)),
        ("monthly", t(2025, 1, 31), t(2026, 2, 27), t(2026, 1, 31), t(2026, 2, 28)),
        ("monthly", t(2025, 1, 31), t(2026, 4, 30, 1), t(2026, 4, 30), t(2026, 5, 31)),
        ("monthly", t(2027, 5, 15), t(2026, 11, 20), t(2026, 11, 15), t(2026, 12, 15)),  # before the anchor
        ("yearly", CALENDAR_ANCHOR, t(2026, 12, 31, 23, 59), t(2026, 1, 1), t(2027, 1, 1)),
        ("yearly", t(2024, 2, 29), t(2025, 3, 1), t(2025, 2, 28), t(2026, 2, 28)),
        ("yearly", t(2024, 2, 29), t(2028, 2, 29), t(2028, 2, 29), t(2029, 2, 28)),
    ],
)
def test_bounds(kind: str, anchor: datetime, instant: datetime, start: datetime, end: datetime) -> None:
    assert period_bounds(kind, anchor, instant) == (start, end)  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", ["daily", "weekly", "monthly", "yearly"])
def test_periods_tile_time_without_gaps(kind: str) -> None:
    anchor = t(2025, 1, 31, 8, 30)
    instant = t(2024, 6, 1)
    start, end = period_bounds(kind, anchor, instant)  # type: ignore[arg-type]
    for _ in range(60):
        assert start <= instant < end
        next_start, next_end = period_bounds(kind, anchor, end)  # type: ignore[arg-type]
        assert next_start == end  # the next period starts exactly where this one ends
        assert period_bounds(kind, anchor, end - timedelta(microseconds=1)) == (start, end)  # type: ignore[arg-type]
        start, end, instant = next_start, next_end, next_start
