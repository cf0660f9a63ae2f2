"""Admin commands for a server's data directory (safe while it runs): status, licenses, seats, usage. Human
tables by default, `--json` for scripts (the JSON shapes are those of the native API)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from floatsrv.cli.probe import readiness
from floatsrv.cli.tools import cli_actor, data_options, emit, resolve_config, run_with_store
from floatsrv.clock import SystemClock
from floatsrv.config import Config
from floatsrv.db.store import Store
from floatsrv.domain import licensing, queries, seats
from floatsrv.domain.catalog import load_catalog
from floatsrv.domain.context import Domain
from floatsrv.domain.licensefiles import file_state
from floatsrv.domain.sync import AIRGAP, channel_report, status
from floatsrv.domain.timemark import judged_now
from floatsrv.domain.views import license_view, seat_view
from floatsrv.quantity import milli_to_str
from floatsrv.times import iso_us


async def _domain(store: Store) -> Domain:
    return Domain(store=store, clock=SystemClock(), catalog=await load_catalog(store))


@click.command("status")
@click.option("--json", "as_json", is_flag=True)
@data_options
def status_command(as_json: bool, config_path: Path | None, data_dir: Path | None) -> None:
    """The server at a glance: is it up, its database, seats in use, what is owed upstream.

    Exit 1 when the server (given --config) does not answer ready: unreachable, not ready, or its TLS
    certificate does not verify; the line says which."""
    config = resolve_config(config_path, data_dir)

    async def work(store: Store) -> dict[str, Any]:
        domain = await _domain(store)
        states = await queries.license_states(domain)
        channels = [u.name for u in config.sync.upstreams] + [AIRGAP]
        now = domain.clock.now()
        judged = await judged_now(store, now)  # license files are in force or not by the server's trusted time
        kinds: dict[str, list[int]] = {"signed": [], "demo": [], "unsigned": []}
        for state in states:
            kinds[state.license.source.entitlements].append(state.license.id)
        files = await licensing.files(store)
        return {
            "database": {"path": str(config.db_path), "bytes": config.db_path.stat().st_size},
            "server": _server(config) if config_path is not None else {"state": "unknown"},
            "licenses": len(states),
            "entitlements": kinds,
            "license_files": [
                {"file_id": row.file_id, "state": file_state(row, judged), "expires_at": iso_us(row.expires_at)}
                for row in files
            ],
            "seats_in_use": sum(s.seats_in_use for s in states),
            "seats_limit": sum(s.license.spec.floating_users for s in states),
            "sync": [channel_report(c, now) for c in await status(store, channels)],
        }

    report = run_with_store(config, work)
    server = report["server"]
    down = server["state"] not in ("ready", "unknown")
    if as_json:
        click.echo(json.dumps(report, indent=2))
        sys.exit(1 if down else 0)
    if server["state"] == "unknown":
        click.echo("server:    unknown (give --config, or set FLOATSRV_CONFIG, to ask the running server)")
    else:
        click.echo(
            f"server:    {server['state']} ({server['url']})" + (f": {server['reason']}" if server["reason"] else "")
        )
    click.echo(f"database:  {report['database']['path']} ({report['database']['bytes'] / 2**20:.1f} MiB)")
    click.echo(f"licenses:  {report['licenses']}, seats in use {report['seats_in_use']} of {report['seats_limit']}")
    kinds = report["entitlements"]
    click.echo(
        f"terms:     {len(kinds['signed'])} vendor-signed, {len(kinds['demo'])} demo-signed, "
        f"{len(kinds['unsigned'])} unsigned (inline YAML)"
    )
    for line in server.get("warnings", []):  # what /readyz reports: expired licenses, seats over a limit, ...
        click.echo(f"warning:   {line}")
    if not server.get("warnings"):
        if kinds["unsigned"]:
            click.echo(f"warning:   licenses {kinds['unsigned']} are not signed by the vendor; usage is flagged")
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
    if down:
        sys.exit(1)


def _server(config: Config) -> dict[str, Any]:
    """The running server's answer to /readyz, as `status` shows it."""
    found = readiness(config)
    return {
        "url": found.url,
        "state": found.state,
        "status": found.status,
        "reason": found.reason,
        "warnings": found.warnings(),
        "checks": found.checks,
    }


@click.group("licenses")
def licenses_group() -> None:
    """The licenses this server serves, with live seat and consumption counts."""


@licenses_group.command("list")
@click.option("--product", help="Only this product's licenses.")
@click.option("--json", "as_json", is_flag=True)
@data_options
def licenses_list(product: str | None, as_json: bool, config_path: Path | None, data_dir: Path | None) -> None:
    """Licenses with seats in use, consumption, features, expiry and where their terms come from."""
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
    """Seats held now (with --all, ended ones too, and why they ended): license, feature, user, host."""
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
