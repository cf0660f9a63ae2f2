"""The reports as rows: one shape for the API's JSON and CSV and the CLI's tables and CSV.

Every row is a flat mapping of JSON scalars (times ISO 8601 UTC, quantities decimal strings as everywhere in
/v1), so a CSV file and the JSON report carry the same values, column for column.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Sequence
from typing import Any

from floatsrv.db.denials import DenialRow
from floatsrv.db.history import DayRow
from floatsrv.domain.reports import Concurrency, Consumed, day_end
from floatsrv.quantity import milli_to_str
from floatsrv.times import iso, iso_us

Row = dict[str, Any]

_NUMBER = re.compile(r"-\d+(\.\d+)?")

DENIAL_COLUMNS = (
    "at",
    "license_id",
    "feature",
    "kind",
    "user",
    "host",
    "address",
    "login",
    "reason",
    "in_use",
    "limit",
)
CONCURRENCY_COLUMNS = ("start", "end", "peak", "average", "limit", "reserved", "denials")
CONSUMPTION_COLUMNS = ("license_id", "feature", "start", "end", "quantity", "events")


def _quantity(milli: int | None) -> str | None:
    return None if milli is None else milli_to_str(milli)


def denial_row(row: DenialRow) -> Row:
    return {
        "at": iso_us(row.at),
        "license_id": row.license_id,
        "feature": row.feature or None,
        "kind": row.kind,
        "user": row.user,
        "host": row.host,
        "address": row.address,
        "login": row.login,
        "reason": row.reason,
        "in_use": _quantity(row.in_use_milli),
        "limit": _quantity(row.limit_milli),
    }


def concurrency_rows(report: Concurrency) -> list[Row]:
    return [
        {
            "start": iso_us(b.start),
            "end": iso_us(b.end),
            "peak": b.peak,
            "average": str(b.average),
            "limit": b.limit,
            "reserved": b.reserved,
            "denials": b.denials,
        }
        for b in report.buckets
    ]


def consumption_rows(rows: Iterable[Consumed]) -> list[Row]:
    out = []
    for row in rows:
        end = day_end(row)
        out.append(
            {
                "license_id": row.license_id,
                "feature": row.feature or None,
                "start": iso_us(row.start) if row.start else None,  # a counter that never resets starts nowhere
                "end": iso(end) if end is not None else None,
                "quantity": milli_to_str(row.quantity_milli),
                "events": row.events if isinstance(row, DayRow) else None,
            }
        )
    return out


def _cell(value: Any) -> Any:
    """A field as a spreadsheet should see it: a client-chosen text that a spreadsheet would run as a formula
    (`=`, `+`, `@`, `-` that is not a number) gets a leading `'`, as OWASP advises for CSV exports."""
    if value is None:
        return ""
    if (
        isinstance(value, str)
        and value
        and (value[0] in "=+@\t\r" or (value[0] == "-" and not _NUMBER.fullmatch(value)))
    ):
        return "'" + value
    return value


def csv_text(rows: Sequence[Row], columns: Sequence[str]) -> str:
    """RFC 4180 CSV with a header line; None is an empty field."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_cell(row[c]) for c in columns])
    return out.getvalue()
