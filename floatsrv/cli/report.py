"""`floatsrv report denials | concurrency | consumption`: the usage history reports of `/v1/reports`, read from
the data directory (safe while the server runs). Tables for people, `--csv` for a spreadsheet, `--json` for
scripts; the rows are those of the API."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import click

from floatsrv.cli.tools import data_options, emit, resolve_config, run_with_store
from floatsrv.clock import SystemClock
from floatsrv.db.store import Store
from floatsrv.domain import denials, reports
from floatsrv.domain.catalog import load_catalog
from floatsrv.domain.context import Domain
from floatsrv.domain.policy import Policy
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
from floatsrv.times import parse_instant, to_us


def _instant(_ctx: click.Context, _param: click.Parameter, value: str | None) -> datetime | None:
    """An ISO 8601 date-time, or a date (its first instant, UTC)."""
    if value is None:
        return None
    try:
        if len(value) == 10:
            return datetime.fromisoformat(value).replace(tzinfo=UTC)
        return parse_instant(value)
    except ValueError:
        raise click.BadParameter("give an ISO 8601 date (2026-12-01) or date-time (2026-12-01T09:00:00Z)") from None


def _window(func: Any) -> Any:
    func = click.option("--until", callback=_instant, help="End (exclusive): a date or ISO 8601 date-time.")(func)
    return click.option("--since", callback=_instant, help="Start: a date or ISO 8601 date-time.")(func)


def _output(func: Any) -> Any:
    func = click.option("--json", "as_json", is_flag=True, help="JSON rows, for scripts.")(func)
    return click.option("--csv", "as_csv", is_flag=True, help="CSV with a header line, for a spreadsheet.")(func)


def _show(rows: list[Row], columns: tuple[str, ...], as_csv: bool, as_json: bool) -> None:
    if as_csv:
        sys.stdout.write(csv_text(rows, columns))
    else:
        emit(rows, columns, as_json)


def _run(config_path: Path | None, data_dir: Path | None, work: Any) -> Any:
    config = resolve_config(config_path, data_dir)

    async def with_domain(store: Store) -> Any:
        domain = Domain(store=store, clock=SystemClock(), catalog=await load_catalog(store))
        domain.apply_policy(Policy(config.policy))  # the reservations the report shows (with --config)
        return await work(domain)

    return run_with_store(config, with_domain)


@click.group("report")
def report_group() -> None:
    """Usage history: denied requests, seat concurrency, consumption (tables, --csv or --json)."""


@report_group.command("denials")
@click.option("--license", "license_id", type=int, help="Only this license.")
@click.option("--feature", help="Only this feature's seats and consumption.")
@click.option("--user", help="Only this client user.")
@click.option("--reason", help="Only this reason (e.g. seats_reserved_for_others).")
@_window
@click.option("--limit", type=click.IntRange(1, 1000), default=100, show_default=True)
@click.option("--cursor", type=int, help="The next page: the cursor the previous page ended with.")
@_output
@data_options
def denials_command(
    license_id: int | None,
    feature: str | None,
    user: str | None,
    reason: str | None,
    since: datetime | None,
    until: datetime | None,
    limit: int,
    cursor: int | None,
    as_csv: bool,
    as_json: bool,
    config_path: Path | None,
    data_dir: Path | None,
) -> None:
    """Refused seats and consumptions, newest first: who asked, why, and how full it was."""
    where = denials.DenialFilter(
        license_id, feature, user, reason, to_us(since) if since else None, to_us(until) if until else None
    )

    async def work(domain: Domain) -> tuple[list[Row], int | None]:
        rows, next_id = await denials.page(domain, where, cursor, limit)
        return [denial_row(row) for row in rows], next_id

    rows, next_id = _run(config_path, data_dir, work)
    _show(rows, DENIAL_COLUMNS, as_csv, as_json)
    if next_id is not None:
        click.echo(f"more: --cursor {next_id}", err=True)


@report_group.command("concurrency")
@click.option("--license", "license_id", type=int, required=True, help="The license.")
@click.option("--feature", help="A floating feature's seats instead of the license's.")
@click.option("--bucket", type=click.Choice(["hour", "day"]), default="hour", show_default=True)
@_window
@_output
@data_options
def concurrency_command(
    license_id: int,
    feature: str | None,
    bucket: str,
    since: datetime | None,
    until: datetime | None,
    as_csv: bool,
    as_json: bool,
    config_path: Path | None,
    data_dir: Path | None,
) -> None:
    """Seats in use per hour or day: peak, time-weighted average, limit, reserved, denials."""

    async def work(domain: Domain) -> list[Row]:
        return concurrency_rows(await reports.concurrency(domain, license_id, feature, bucket, since, until))

    _show(_run(config_path, data_dir, work), CONCURRENCY_COLUMNS, as_csv, as_json)


@report_group.command("consumption")
@click.option("--license", "license_id", type=int, help="Only this license.")
@click.option("--feature", help="Only this feature.")
@click.option("--bucket", type=click.Choice(["day", "period"]), default="day", show_default=True)
@_window
@_output
@data_options
def consumption_command(
    license_id: int | None,
    feature: str | None,
    bucket: Literal["day", "period"],
    since: datetime | None,
    until: datetime | None,
    as_csv: bool,
    as_json: bool,
    config_path: Path | None,
    data_dir: Path | None,
) -> None:
    """Consumption per day (or per period) per license and feature."""

    async def work(domain: Domain) -> list[Row]:
        _, _, rows = await reports.consumption(domain, license_id, feature, bucket, since, until)
        return consumption_rows(rows)

    _show(_run(config_path, data_dir, work), CONSUMPTION_COLUMNS, as_csv, as_json)
