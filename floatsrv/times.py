"""Conversions between wire timestamps (ISO 8601), aware datetimes and the integer microseconds we store.

SQLite keeps instants as integer microseconds since the Unix epoch (UTC): they compare and index cheaply
and are exact. The wire uses ISO 8601 with a `Z` suffix and millisecond precision.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# Go's zero time. LicenseSpring v1 clients send it to mean "not borrowed"; we accept it on input
# and never send it back (the SDK would read it as a real date in year 1).
_ZERO_TIME_PREFIX = "0001-01-01"

_FRACTION = re.compile(r"(\.\d{6})\d+")


def to_us(instant: datetime) -> int:
    """Aware datetime -> integer microseconds since the epoch."""
    delta = instant - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_us(us: int) -> datetime:
    return EPOCH + timedelta(microseconds=us)


def iso(instant: datetime) -> str:
    """Format as `YYYY-MM-DDTHH:MM:SS.mmmZ` (UTC, milliseconds)."""
    # isoformat is C code (strftime is several times slower); UTC's offset renders as "+00:00".
    return instant.astimezone(UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


def iso_us(us: int | None) -> str | None:
    return None if us is None else iso(from_us(us))


def is_zero_time(text: str) -> bool:
    return text.strip().startswith(_ZERO_TIME_PREFIX)


def parse_instant(text: str) -> datetime:
    """Parse an ISO 8601 / RFC 3339 instant; naive values and bare dates are taken as UTC.

    Raises ValueError on anything else (including out-of-range years after offset conversion).
    """
    candidate = text.strip()
    if not candidate or len(candidate) > 64:
        raise ValueError("not an ISO 8601 date-time")
    # Go and other clients send nanoseconds; Python keeps microseconds.
    candidate = _FRACTION.sub(r"\1", candidate)
    try:
        parsed = datetime.fromisoformat(candidate)
    except ValueError:
        raise ValueError("not an ISO 8601 date-time") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except OverflowError:
        raise ValueError("date-time out of range") from None
