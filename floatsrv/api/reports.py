"""Reports under /v1/reports: the denial log, seat concurrency and consumption history (viewer role).

Each answers JSON (`{"success": true, "data": ...}`) or, with `Accept: text/csv` or `?format=csv`, the same
rows as CSV for a spreadsheet. The denial log pages with `cursor` (`data.next_cursor`; with CSV, the
`X-Next-Cursor` header).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from aiohttp import web
from pydantic import BeforeValidator, Field

from floatsrv.api.native import ok
from floatsrv.api.validation import StrictBody, Text100, Text256, WireInstant, WireInt, parse
from floatsrv.appkeys import DOMAIN
from floatsrv.domain import denials, reports
from floatsrv.domain.reportviews import (
    CONCURRENCY_COLUMNS,
    CONSUMPTION_COLUMNS,
    DENIAL_COLUMNS,
    Row,
    concurrency_rows,
    consumption_rows,
    csv_text,
    denial_row,
)
from floatsrv.errors import InvalidRequest
from floatsrv.times import iso_us, to_us

LicenseId = Annotated[WireInt, Field(gt=0, lt=2**53)]


def _instant(value: Any) -> Any:
    if value == "":  # a query parameter given empty is a mistake, not "no bound"
        raise ValueError("must be an ISO 8601 date-time, e.g. 2026-12-01T00:00:00Z")
    return value


Instant = Annotated[WireInstant, BeforeValidator(_instant)]


class _Report(StrictBody):
    since: Instant = None
    until: Instant = None
    format: Literal["json", "csv"] | None = None


class DenialQuery(_Report):
    license_id: LicenseId | None = None
    feature: Text100 | None = None
    user: Text256 | None = None
    reason: Text100 | None = None
    cursor: Text100 | None = None
    limit: Annotated[WireInt, Field(ge=1, le=1000)] = 100


class ConcurrencyQuery(_Report):
    license_id: LicenseId
    feature: Text100 | None = None
    bucket: Literal["hour", "day"] = "hour"


class ConsumptionQuery(_Report):
    license_id: LicenseId | None = None
    feature: Text100 | None = None
    bucket: Literal["day", "period"] = "day"


def _wants_csv(request: web.Request, query: _Report) -> bool:
    if query.format is not None:
        return query.format == "csv"
    return "text/csv" in request.headers.get("Accept", "")


def _csv(rows: list[Row], columns: tuple[str, ...], name: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        text=csv_text(rows, columns),
        content_type="text/csv",
        charset="utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}.csv"', **(headers or {})},
    )


def _cursor(text: str | None) -> int | None:
    if text is None:
        return None
    if not re.fullmatch(r"[0-9]{1,18}", text):
        raise InvalidRequest("cursor: give the next_cursor of the previous page", param="cursor")
    return int(text)


async def denial_log(request: web.Request) -> web.Response:
    query = parse(DenialQuery, dict(request.query))
    where = denials.DenialFilter(
        license_id=query.license_id,
        feature=query.feature,
        user=query.user,
        reason=query.reason,
        since=to_us(query.since) if query.since else None,
        until=to_us(query.until) if query.until else None,
    )
    rows, next_id = await denials.page(request.app[DOMAIN], where, _cursor(query.cursor), query.limit)
    items = [denial_row(row) for row in rows]
    next_cursor = str(next_id) if next_id is not None else None
    if _wants_csv(request, query):
        return _csv(items, DENIAL_COLUMNS, "denials", {"X-Next-Cursor": next_cursor} if next_cursor else None)
    return ok({"items": items, "next_cursor": next_cursor})


async def concurrency(request: web.Request) -> web.Response:
    query = parse(ConcurrencyQuery, dict(request.query))
    report = await reports.concurrency(
        request.app[DOMAIN], query.license_id, query.feature, query.bucket, query.since, query.until
    )
    rows = concurrency_rows(report)
    if _wants_csv(request, query):
        return _csv(rows, CONCURRENCY_COLUMNS, f"concurrency-{query.license_id}")
    data: dict[str, Any] = {
        "license_id": report.license_id,
        "feature": report.feature,
        "bucket": report.bucket,
        "since": rows[0]["start"] if rows else None,
        "until": rows[-1]["end"] if rows else None,
        "buckets": rows,
    }
    return ok(data)


async def consumption(request: web.Request) -> web.Response:
    query = parse(ConsumptionQuery, dict(request.query))
    start, end, found = await reports.consumption(
        request.app[DOMAIN], query.license_id, query.feature, query.bucket, query.since, query.until
    )
    rows = consumption_rows(found)
    if _wants_csv(request, query):
        return _csv(rows, CONSUMPTION_COLUMNS, "consumption")
    return ok({"bucket": query.bucket, "since": iso_us(start), "until": iso_us(end), "buckets": rows})
