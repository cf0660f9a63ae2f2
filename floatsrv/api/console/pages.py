"""The console's read pages: overview, seats, history, denials and usage. Each reads what the native API reads
(the same domain queries and views), a page at a time, and renders it; the CSV links answer the same rows as
the `/v1/reports` CSV. Nothing here runs on the seat or consumption hot path.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from aiohttp import web

from floatsrv.api.admin import seat_id
from floatsrv.api.console import params
from floatsrv.api.console.params import PAGE_SIZE
from floatsrv.api.console.render import download, html
from floatsrv.api.console.session import Session, page
from floatsrv.api.sync import status_view
from floatsrv.appkeys import DOMAIN
from floatsrv.domain import denials, health, licensing, queries, reports
from floatsrv.domain.context import Domain
from floatsrv.domain.license import License
from floatsrv.domain.reportviews import (
    CONCURRENCY_COLUMNS,
    CONSUMPTION_COLUMNS,
    DENIAL_COLUMNS,
    concurrency_rows,
    consumption_rows,
    csv_text,
    denial_row,
)
from floatsrv.domain.views import license_view, seat_view
from floatsrv.errors import InvalidRequest
from floatsrv.quantity import milli_to_str
from floatsrv.times import iso_us

# Where the admin fixes what a health check warns about: a console page, or (for what is fixed on the host:
# the disk, the schema, the system clock) /readyz, whose JSON has every detail of the check.
FIX_AT = {
    "database": ("/readyz", "Details (/readyz)"),
    "migrations": ("/readyz", "Details (/readyz)"),
    "clock": ("/readyz", "Details (/readyz)"),
    "config": ("/ui/licenses", "Open Licenses"),
    "entitlements": ("/ui/licenses", "Open Licenses"),
    "license_files": ("/ui/licenses", "Open Licenses"),
    "licenses": ("/ui/licenses", "Open Licenses"),
    "usage_rollback": ("/ui/sync", "Open Sync"),
}


async def license_page(request: web.Request, domain: Domain) -> tuple[list[dict[str, Any]], int, int]:
    """A page of licenses as the API shows them (effective terms), with what policy reserves and the deadlines
    of the file each comes from: (views, offset, total)."""
    everything = domain.catalog.licenses()
    offset = params.number(request, "offset", 0) or 0
    shown = everything[offset : offset + PAGE_SIZE]
    files = {row.file_id: row for row in await licensing.files(domain.store)}
    views = []
    states = await queries.states_of(domain, shown)
    keys = [(s.license.id, code) for s in states for code in ("", *(f.code for f in s.license.spec.features))]
    idle = await queries.idle_reserved(domain, keys)  # "reserved, idle until used": what the bars show
    for state in states:
        view = license_view(state)
        view["reserved"] = idle[(view["id"], "")]
        for feature in view["features"]:
            feature["reserved"] = idle.get((view["id"], feature["code"]), 0)
        file = files.get(view["license_file"] or "")
        view["refresh_by"] = iso_us(file.refresh_by) if file else None
        view["file_expires_at"] = iso_us(file.expires_at) if file else None
        views.append(view)
    return views, offset, len(everything)


def pager(request: web.Request, offset: int, total: int) -> dict[str, Any]:
    return {
        "first": offset + 1 if total else 0,
        "last": min(offset + PAGE_SIZE, total),
        "total": total,
        "previous": params.link(request, offset=max(0, offset - PAGE_SIZE)) if offset else None,
        "next": params.link(request, offset=offset + PAGE_SIZE) if offset + PAGE_SIZE < total else None,
    }


@page()
async def overview(request: web.Request, session: Session) -> web.StreamResponse:
    """Overview: every license's seats and consumption against its limits, deadlines, sync and warnings."""
    domain = request.app[DOMAIN]
    views, offset, total = await license_page(request, domain)
    _, checks = await health.readiness(domain)
    warnings = [
        {"check": name, "status": check["status"], "message": _message(name, check), "fix": FIX_AT.get(name)}
        for name, check in checks.items()
        if check["status"] != "ok"
    ]
    return html(
        request,
        session,
        "overview.html",
        licenses=views,
        pages=pager(request, offset, total),
        warnings=warnings,
        sync=await status_view(request),
    )


def _message(name: str, check: dict[str, Any]) -> str:
    return str(check.get("message") or check.get("reason") or f"{name}: {check['status']}")


@page()
async def seats(request: web.Request, session: Session) -> web.StreamResponse:
    """Seats: live and borrowed seats (or ended ones), filtered, newest first."""
    domain = request.app[DOMAIN]
    license_id = params.number(request, "license_id")
    state = params.choice(request, "state", ("held", "borrowed", "all", "ended"))
    views = await queries.seat_views(
        domain,
        license_ids=None if license_id is None else [license_id],
        feature=params.text(request, "feature"),
        user=params.text(request, "user"),
        host=params.text(request, "host"),
        state=state,  # type: ignore[arg-type]  # checked by choice()
        limit=PAGE_SIZE + 1,
        before=params.number(request, "before"),
    )
    rows = [{**seat_view(v), "host": v.row.os_hostname, "address": v.row.ip_local} for v in views[:PAGE_SIZE]]
    more = params.link(request, before=rows[-1]["id"]) if len(views) > PAGE_SIZE else None
    return html(request, session, "seats.html", seats=rows, more=more, state=state, query=request.query)


@page()
async def seat_end(request: web.Request, session: Session) -> web.StreamResponse:
    """The confirmation before an admin ends a seat (the form posts to the same address)."""
    seat = seat_view(await queries.seat_view(request.app[DOMAIN], seat_id(request)))
    return html(request, session, "seat_end.html", seat=seat)


RANGES = {"7d": (timedelta(days=7), "hour"), "24h": (timedelta(hours=24), "hour"), "30d": (timedelta(days=30), "day")}


def _license(request: web.Request, domain: Domain) -> License | None:
    """The license a report is about: ?license_id=, else the first one served."""
    license_id = params.number(request, "license_id")
    if license_id is not None:
        found = domain.catalog.get(license_id)
        if found is None:
            raise InvalidRequest(f"license_id: no license {license_id} is served", param="license_id")
        return found
    return next(iter(domain.catalog.licenses()), None)


@page()
async def history(request: web.Request, session: Session) -> web.StreamResponse:
    """History: seat concurrency per hour or day (peak, average, limit, denials), as a chart and a table."""
    domain = request.app[DOMAIN]
    chosen = _license(request, domain)
    span = params.choice(request, "range", tuple(RANGES))
    feature = params.text(request, "feature")
    rows: list[dict[str, Any]] = []
    if chosen is not None:
        length, bucket = RANGES[span]
        until = domain.clock.now()
        report = await reports.concurrency(domain, chosen.id, feature, bucket, until - length, until)
        rows = concurrency_rows(report)
        if request.query.get("format") == "csv":
            name = f"concurrency-{chosen.id}{'-' + feature if feature else ''}-{span}.csv"
            return download(csv_text(rows, CONCURRENCY_COLUMNS), name, "text/csv")
    return html(
        request,
        session,
        "history.html",
        license=chosen,
        feature=feature,
        span=span,
        spans=tuple(RANGES),
        rows=rows,
        chart=chart(rows),
        csv=params.link(request, format="csv"),
    )


def chart(rows: list[dict[str, Any]], width: int = 720, height: int = 200) -> dict[str, Any] | None:
    """An SVG bar chart of the peaks, with the limit as a line and the average as a polyline (no script)."""
    if not rows:
        return None
    top = float(max(max(int(r["peak"]) for r in rows), max(int(r["limit"]) for r in rows), 1))
    step = width / len(rows)

    def y(value: float) -> float:
        return round(height - height * float(value) / top, 2)

    bars = [
        {
            "x": round(i * step, 2),
            "y": y(r["peak"]),
            "w": round(max(step - 1, 0.5), 2),
            "h": round(height - y(r["peak"]), 2),
            "title": f"{r['start']}: peak {r['peak']}, average {r['average']}, limit {r['limit']}, "
            f"{r['denials']} denied",
        }
        for i, r in enumerate(rows)
    ]
    average = " ".join(f"{round((i + 0.5) * step, 2)},{y(float(r['average']))}" for i, r in enumerate(rows))
    return {"width": width, "height": height, "bars": bars, "average": average, "limit_y": y(rows[-1]["limit"])}


@page()
async def denial_log(request: web.Request, session: Session) -> web.StreamResponse:
    """Denials: every refused seat or consumption request, newest first, filtered; CSV of the page."""
    domain = request.app[DOMAIN]
    where = denials.DenialFilter(
        license_id=params.number(request, "license_id"),
        feature=params.text(request, "feature"),
        user=params.text(request, "user"),
        reason=params.text(request, "reason"),
    )
    if request.query.get("format") == "csv":
        return download(csv_text(await _all_denials(domain, where), DENIAL_COLUMNS), "denials.csv", "text/csv")
    rows, next_id = await denials.page(domain, where, params.number(request, "cursor"), PAGE_SIZE)
    items = [denial_row(row) for row in rows]
    more = params.link(request, cursor=next_id) if next_id is not None else None
    csv = params.link(request, format="csv")
    return html(request, session, "denials.html", rows=items, more=more, query=request.query, csv=csv)


CSV_MOST_ROWS = 100_000  # a download of the denial log stops here (narrow it with the filters)


async def _all_denials(domain: Domain, where: denials.DenialFilter) -> list[dict[str, Any]]:
    """Every denial the filters match, newest first, up to CSV_MOST_ROWS, read a thousand at a time."""
    found: list[dict[str, Any]] = []
    cursor: int | None = None
    while len(found) < CSV_MOST_ROWS:
        rows, cursor = await denials.page(domain, where, cursor, 1000)
        found.extend(denial_row(row) for row in rows)
        if cursor is None:
            break
    return found[:CSV_MOST_ROWS]


@page()
async def usage(request: web.Request, session: Session) -> web.StreamResponse:
    """Usage: a license's consumption per day or per period, and its metering events."""
    domain = request.app[DOMAIN]
    chosen = _license(request, domain)
    bucket = params.choice(request, "bucket", ("day", "period"))
    feature = params.text(request, "feature")
    rows: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    more = None
    if chosen is not None:
        until = domain.clock.now()
        since = until - timedelta(days=30)
        _, _, found = await reports.consumption(domain, chosen.id, feature, bucket, since, until)  # type: ignore[arg-type]
        rows = consumption_rows(found)
        if request.query.get("format") == "csv":
            return download(csv_text(rows, CONSUMPTION_COLUMNS), f"consumption-{chosen.id}.csv", "text/csv")
        kept, older = await queries.usage_events(domain, chosen.id, params.number(request, "before"), PAGE_SIZE)
        events = [_event(row) for row in kept]
        more = params.link(request, before=older) if older is not None else None
    return html(
        request,
        session,
        "usage.html",
        license=chosen,
        bucket=bucket,
        feature=feature,
        rows=rows,
        events=events,
        more=more,
        csv=params.link(request, format="csv", before=None),
    )


def _event(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "feature": row.feature or None,
        "quantity": milli_to_str(row.quantity_milli),
        "user": row.user,
        "source": row.source,
        "event_id": row.event_id,
        "occurred_at": iso_us(row.occurred_at),
        "received_at": iso_us(row.received_at),
    }
