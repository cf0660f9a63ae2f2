"""Admin commands for a server's data directory (safe while it runs): status, licenses, seats, usage, and
the database itself (online backup, check). Human tables by default, `--json` for scripts (the JSON
shapes are those of the native API)."""

from __future__ import annotations

import json
import sqlite3
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import click

from floatsrv.cli.tools import cli_actor, data_options, emit, resolve_config, run_with_store
from floatsrv.clock import SystemClock
from floatsrv.config import Config
from floatsrv.db.store import Store
from floatsrv.domain import health, licensing, queries, seats
from floatsrv.domain.catalog import load_catalog
from floatsrv.domain.context import Domain
from floatsrv.domain.licensefiles import file_state
from floatsrv.domain.sync import AIRGAP, lag_seconds, status
from floatsrv.domain.views import license_view, seat_view
from floatsrv.quantity import milli_to_str
from floatsrv.times import iso_us


async def _domain(store: Store) -> Domain:
    return Domain(store=store, clock=SystemClock(), catalog=await load_catalog(store))


def _probe(config: Config) -> dict[str, Any]:
    """Ask the server at the configured address whether it is ready (admins want to know if it runs)."""
    wildcard = config.server.host in ("0.0.0.0", "::")  # noqa: S104 -- recognising it, not binding to it
    host = "127.0.0.1" if wildcard else config.server.host
    scheme = "https" if config.server.tls_cert else "http"
    url = f"{scheme}://{host}:{config.server.port}/readyz"
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310 -- our own configured address
            return {"url": url, "state": "ready", "status": resp.status}
    except urllib.error.HTTPError as exc:
        return {"url": url, "state": "not_ready", "status": exc.code}
    except (OSError, ValueError) as exc:
        return {"url": url, "state": "unreachable", "error": str(getattr(exc, "reason", exc))}


@click.command("status")
@click.option("--json", "as_json", is_flag=True)
@data_options
def status_command(as_json: bool, config_path: Path | None, data_dir: Path | None) -> None:
    """The server at a glance: is it up, its database, seats in use, what is owed upstream."""
    config = resolve_config(config_path, data_dir)

    async def work(store: Store) -> dict[str, Any]:
        domain = await _domain(store)
        states = await queries.license_states(domain)
        channels = [u.name for u in config.sync.upstreams] + [AIRGAP]
        now = domain.clock.now()
        kinds: dict[str, list[int]] = {"signed": [], "demo": [], "unsigned": []}
        for state in states:
            kinds[state.license.source.entitlements].append(state.license.id)
        files = await licensing.files(store)
        return {
            "database": {"path": str(config.db_path), "bytes": config.db_path.stat().st_size},
            "server": _probe(config) if config_path is not None else {"state": "unknown (give --config)"},
            "licenses": len(states),
            "entitlements": kinds,
            "license_files": [
                {"file_id": row.file_id, "state": file_state(row, now), "expires_at": iso_us(row.expires_at)}
                for row in files
            ],
            "seats_in_use": sum(s.seats_in_use for s in states),
            "seats_limit": sum(s.license.spec.floating_users for s in states),
            "sync": [
                {
                    "channel": c.channel,
                    "pending_records": c.pending_records,
                    "lag_seconds": lag_seconds(c.oldest_pending_at, now),
                    "parked_batches": c.parked_batches,
                    "last_success_at": iso_us(c.last_success_at),
                    "last_error": c.last_error,
                }
                for c in await status(store, channels)
            ],
        }

    report = run_with_store(config, work)
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    server = report["server"]
    click.echo(f"server:    {server['state']}" + (f" ({server['url']})" if "url" in server else ""))
    click.echo(f"database:  {report['database']['path']} ({report['database']['bytes'] / 2**20:.1f} MiB)")
    click.echo(f"licenses:  {report['licenses']}, seats in use {report['seats_in_use']} of {report['seats_limit']}")
    kinds = report["entitlements"]
    click.echo(
        f"terms:     {len(kinds['signed'])} vendor-signed, {len(kinds['demo'])} demo-signed, "
        f"{len(kinds['unsigned'])} unsigned (inline YAML)"
    )
    if kinds["unsigned"]:
        click.echo(f"warning:   licenses {kinds['unsigned']} are not signed by the vendor; usage upstream is flagged")
    for file in report["license_files"]:
        if file["state"] != "in_force":
            click.echo(f"warning:   license file {file['file_id']} has {file['state']} ({file['expires_at']})")
    for channel in report["sync"]:
        lag = channel["lag_seconds"]
        click.echo(
            f"sync {channel['channel']}: {channel['pending_records']} pending"
            + (f" (oldest {lag:.0f} s)" if lag is not None else "")
            + (f", {channel['parked_batches']} parked" if channel["parked_batches"] else "")
            + (f", last error: {channel['last_error']}" if channel["last_error"] else "")
        )


@click.group("licenses")
def licenses_group() -> None:
    """The licenses this server serves, with live seat and consumption counts."""


@licenses_group.command("list")
@click.option("--product", help="Only this product's licenses.")
@click.option("--json", "as_json", is_flag=True)
@data_options
def licenses_list(product: str | None, as_json: bool, config_path: Path | None, data_dir: Path | None) -> None:
    config = resolve_config(config_path, data_dir)

    async def work(store: Store) -> list[dict[str, Any]]:
        return [license_view(state) for state in await queries.license_states(await _domain(store), product)]

    views = run_with_store(config, work)
    rows = [
        {
            "id": v["id"],
            "product": v["product"],
            "seats": f"{v['seats_in_use']}/{v['floating_users']}",
            "consumption": None
            if v["consumption"] is None
            else f"{v['consumption']['total']}/{v['consumption']['capacity'] or 'unlimited'}",
            "features": ",".join(f["code"] for f in v["features"]),
            "enabled": v["enabled"],
            "expires": v["validity_period"],
            "terms": v["entitlements"] + (f" ({v['license_file']})" if v["license_file"] else ""),
        }
        for v in views
    ]
    columns = ["id", "product", "seats", "consumption", "features", "enabled", "expires", "terms"]
    emit(views if as_json else rows, columns, as_json)


@click.group("seats")
def seats_group() -> None:
    """Seats held now (and their history); revoke one."""


@seats_group.command("list")
@click.option("--license", "license_id", type=int, help="Only this license's seats.")
@click.option("--user", help="Only this user's seats.")
@click.option("--all", "show_all", is_flag=True, help="Ended seats too (with why they ended).")
@click.option("--limit", type=click.IntRange(1, 100_000), default=1000, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@data_options
def seats_list(
    license_id: int | None,
    user: str | None,
    show_all: bool,
    limit: int,
    as_json: bool,
    config_path: Path | None,
    data_dir: Path | None,
) -> None:
    config = resolve_config(config_path, data_dir)

    async def work(store: Store) -> list[dict[str, Any]]:
        views = await queries.seat_views(
            await _domain(store),
            license_ids=None if license_id is None else [license_id],
            feature=None,
            user=user,
            state="all" if show_all else "held",
            limit=limit,
        )
        return [seat_view(view) for view in views]

    views = run_with_store(config, work)
    rows = [
        {**v, "license": v["license_id"], "feature": v["feature"] or "-", "host": v["client"]["os_hostname"]}
        for v in views
    ]
    columns = ["id", "license", "feature", "user", "state", "registered_at", "expires_at", "end_reason", "host"]
    emit(views if as_json else rows, columns, as_json)


@seats_group.command("revoke")
@click.argument("seat_id", type=int)
@data_options
def seats_revoke(seat_id: int, config_path: Path | None, data_dir: Path | None) -> None:
    """End a held seat now (reason admin_removed); the user's app gets a seat again by re-registering."""
    config = resolve_config(config_path, data_dir)
    actor = cli_actor()

    async def work(store: Store) -> dict[str, Any]:
        domain = await _domain(store)
        seat = await seats.revoke_seat(domain, seat_id, actor.name, actor.peer)
        return seat_view(await queries.seat_view(domain, seat.id))

    view = run_with_store(config, work)
    click.echo(f"seat {view['id']} revoked: user {view['user']!r} on license {view['license_id']}")


@click.command("show")
@click.option("--license", "license_id", type=int, help="Only this license's counters.")
@click.option("--limit", type=click.IntRange(1, 100_000), default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@data_options
def usage_show(
    license_id: int | None, limit: int, as_json: bool, config_path: Path | None, data_dir: Path | None
) -> None:
    """Consumption counters per license, feature and period, and what each upstream has confirmed."""
    config = resolve_config(config_path, data_dir)

    async def work(store: Store) -> list[dict[str, Any]]:
        rows = await queries.counters(await _domain(store), license_id, limit)
        return [
            {
                "license_id": row.license_id,
                "feature": row.feature or None,
                "period_start": iso_us(row.period_start) if row.period_start else None,
                "period_end": iso_us(row.period_end),
                "total": milli_to_str(row.total_milli),
                "revision": row.revision,
                "updated_at": iso_us(row.updated_at),
                "delivered": row.delivered,
            }
            for row in rows
        ]

    counters = run_with_store(config, work)
    rows = [
        {
            **c,
            "feature": c["feature"] or "(license)",
            "period_start": c["period_start"] or "(no reset)",
            "delivered": " ".join(f"{ch}@{rev}" for ch, rev in sorted(c["delivered"].items())) or "-",
        }
        for c in counters
    ]
    emit(
        counters if as_json else rows,
        ["license_id", "feature", "period_start", "total", "revision", "delivered"],
        as_json,
    )


@click.group("db")
def db_group() -> None:
    """The database file: online backup and integrity check."""


@db_group.command("backup")
@click.option("--out", "out_path", required=True, type=click.Path(path_type=Path, dir_okay=False))
@data_options
def db_backup(out_path: Path, config_path: Path | None, data_dir: Path | None) -> None:
    """Copy the database while the server runs (SQLite's backup API: one consistent snapshot), check the
    copy, and write it atomically (mode 0600). Restore: stop the server, put the file in place as
    floatsrv.db (remove floatsrv.db-wal and -shm), start it."""
    import asyncio

    config = resolve_config(config_path, data_dir)
    if not config.db_path.exists():
        click.echo(f"floatsrv: no database at {config.db_path}", err=True)
        sys.exit(1)
    try:
        size = asyncio.run(health.backup_database(config.db_path, out_path, config.storage.busy_timeout_ms))
    except (OSError, RuntimeError, sqlite3.Error) as exc:
        click.echo(f"floatsrv: backup failed: {exc}", err=True)
        sys.exit(1)
    click.echo(f"backup written: {out_path} ({size / 2**20:.1f} MiB)")


@db_group.command("check")
@click.option("--json", "as_json", is_flag=True)
@data_options
def db_check(as_json: bool, config_path: Path | None, data_dir: Path | None) -> None:
    """Check the database read-only (SQLite integrity, foreign keys, counters against their events,
    schema version). Exit 0 when healthy, 1 with one line per problem."""
    import asyncio

    config = resolve_config(config_path, data_dir)
    if not config.db_path.exists():
        click.echo(f"floatsrv: no database at {config.db_path}", err=True)
        sys.exit(1)
    version, problems = asyncio.run(health.check_database(config.db_path, config.storage.busy_timeout_ms))
    if as_json:
        click.echo(json.dumps({"path": str(config.db_path), "schema_version": version, "problems": problems}, indent=2))
    elif problems:
        for problem in problems:
            click.echo(f"floatsrv: {problem}", err=True)
    else:
        click.echo(f"{config.db_path}: ok (schema {version})")
    sys.exit(1 if problems else 0)
