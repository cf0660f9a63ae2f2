"""Sync commands: `floatsrv sync status|now|retry`, `floatsrv server-key`, and air-gapped usage files:
`floatsrv usage export|verify|ack`, plus the vendor's side: `floatsrv usage keygen|receipt`."""

from __future__ import annotations

import json
import os
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import click

from floatsrv.cli.tools import cli_actor, data_options, emit, resolve_config, run_with_store
from floatsrv.clock import SystemClock
from floatsrv.db.store import Store
from floatsrv.domain import airgap, sync
from floatsrv.domain.sync import AIRGAP, SyncFailed
from floatsrv.entitlements.trust import load_trust_anchor
from floatsrv.identity import fingerprint, machine_id
from floatsrv.signing import (
    RECEIPT,
    REPORT,
    SignatureError,
    load_or_create_private_key,
    new_private_key_pem,
    public_key,
    public_key_text,
    read_private_key,
    sign,
    verify,
)
from floatsrv.times import iso
from floatsrv.workers.sync import SyncWorker

CLOCK = SystemClock()


@click.group("sync")
def sync_group() -> None:
    """Upstream sync: status, send now, retry parked batches."""


@sync_group.command("status")
@click.option("--json", "as_json", is_flag=True)
@data_options
def sync_status(as_json: bool, config_path: Path | None, data_dir: Path | None) -> None:
    """Per channel: records owed, how late, parked batches, the last success and the last error."""
    config = resolve_config(config_path, data_dir)
    channels = [u.name for u in config.sync.upstreams] + [AIRGAP]
    statuses = run_with_store(config, lambda store: sync.status(store, channels))
    now = CLOCK.now()
    emit(
        [sync.channel_report(s, now) for s in statuses],
        ["channel", "pending_records", "lag_seconds", "parked_batches", "last_success_at", "consecutive_failures",
         "last_error"],
        as_json,
    )  # fmt: skip


@sync_group.command("now")
@data_options
def sync_now(config_path: Path | None, data_dir: Path | None) -> None:
    """Send what every upstream is owed now (beside a running server it waits for the server's pass first)."""
    config = resolve_config(config_path, data_dir)
    if not config.sync.upstreams:
        click.echo("no upstreams configured (sync.upstreams)")
        return

    async def work(store: Store) -> None:
        server = await sync.server_id(store, config.sync.server_id)
        async with aiohttp.ClientSession() as session:
            tolerance = timedelta(hours=config.licensing.clock_tolerance_hours)
            worker = SyncWorker(
                store,
                CLOCK,
                config.sync,
                session,
                server,
                wait_for_lease=True,
                clock_tolerance=tolerance,
                check_holdings=False,  # the server compares with the vendor, right after its start
            )
            try:
                reports = await worker.run()
            except SyncFailed as exc:
                click.echo(f"floatsrv: sync failed: {exc}", err=True)
                sys.exit(1)
        for report in reports:
            state = (
                "skipped (another sender still holds the lease)"
                if report.skipped
                else f"{report.records} records in {report.requests} requests"
            )
            if report.parked:
                state += f", {report.parked} batches parked (refused for good: see `floatsrv sync status`)"
            click.echo(f"{report.channel}: {state}")
        if any(report.parked for report in reports):
            sys.exit(1)

    run_with_store(config, work)


@sync_group.command("retry")
@data_options
def sync_retry(config_path: Path | None, data_dir: Path | None) -> None:
    """Put parked batches back in line (after fixing what the upstream refused)."""
    config = resolve_config(config_path, data_dir)

    async def work(store: Store) -> int:
        return await sync.retry_parked(store, CLOCK, [u.name for u in config.sync.upstreams], cli_actor())

    click.echo(f"{run_with_store(config, work)} parked batches will be sent again")


@click.command("server-key")
@data_options
def server_key(config_path: Path | None, data_dir: Path | None) -> None:
    """Print this server's identity key (Ed25519, base64): license files are bound to it, and the vendor
    verifies usage reports with it. The server makes it at its first start."""
    config = resolve_config(config_path, data_dir)
    if not config.signing_key_path.exists():
        click.echo(
            f"floatsrv: no server key at {config.signing_key_path}: start the server once (it makes its key)",
            err=True,
        )
        sys.exit(1)
    click.echo(public_key_text(read_private_key(config.signing_key_path)))


@click.command("fingerprint")
@click.option("--json", "as_json", is_flag=True)
@data_options
def fingerprint_command(as_json: bool, config_path: Path | None, data_dir: Path | None) -> None:
    """Print this host's fingerprint (machine id and data directory; license files may be bound to it)."""
    config = resolve_config(config_path, data_dir)
    data = config.storage.data_dir
    if not data.is_dir():
        click.echo(f"floatsrv: no data directory at {data}: start the server once", err=True)
        sys.exit(1)
    value = fingerprint(data)
    if as_json:
        facts = {"machine_id": bool(machine_id()), "data_dir": str(data.resolve())}
        click.echo(json.dumps({"fingerprint": value, "made_from": facts}))
    else:
        click.echo(value)


@click.group("usage")
def usage_group() -> None:
    """Consumption counters, and air-gapped usage: signed report files out, signed vendor receipts in."""


@usage_group.command("export")
@click.option("--out", "out_path", required=True, type=click.Path(path_type=Path, dir_okay=False))
@data_options
def usage_export(out_path: Path, config_path: Path | None, data_dir: Path | None) -> None:
    """Write every counter the vendor has not acknowledged yet to a signed report."""
    config = resolve_config(config_path, data_dir)
    key = load_or_create_private_key(config.signing_key_path)
    tolerance = timedelta(hours=config.licensing.clock_tolerance_hours)
    made = run_with_store(
        config, lambda store: airgap.export(store, CLOCK, cli_actor().name, config.sync.server_id, key, tolerance)
    )
    if made is None:
        click.echo("nothing to export: the vendor has acknowledged all usage")
        return
    _write_atomically(out_path, made.document)
    if made.asks_holdings:
        click.echo(
            f"this database was restored: wrote a request for what the vendor holds to {out_path} (no usage in it: "
            "after a restore its totals may be below the vendor's); import the vendor's receipt with "
            "`floatsrv usage ack`, then export again"
        )
        return
    click.echo(
        f"wrote {made.records} records to {out_path}; give it to the vendor and import their receipt with "
        "`floatsrv usage ack`"
    )


@usage_group.command("verify")
@click.argument("report", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.option("--public-key", "key_text", required=True, help="The server's public key (from `floatsrv server-key`).")
def usage_verify(report: Path, key_text: str) -> None:
    """Check a usage report's signature (exit 1 when it fails)."""
    try:
        payload = verify(REPORT, report.read_bytes(), public_key(key_text))
    except SignatureError as exc:
        click.echo(f"floatsrv: report rejected: {exc}", err=True)
        sys.exit(1)
    click.echo(f"valid report {payload['report_id']} from {payload['server_id']}: {len(payload['records'])} records")


@usage_group.command("ack")
@click.argument("receipt", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.option(
    "--vendor-public-key",
    "key_text",
    help="Defaults to sync.vendor_public_key from the config (a vendor build uses its own keys only).",
)
@data_options
def usage_ack(receipt: Path, key_text: str | None, config_path: Path | None, data_dir: Path | None) -> None:
    """Import the vendor's signed receipt: its report's usage counts as delivered."""
    config = resolve_config(config_path, data_dir)
    try:
        keys = airgap.receipt_keys(load_trust_anchor(), key_text, config.sync.vendor_public_key)
    except airgap.ReceiptRefused as exc:
        raise click.UsageError(str(exc)) from None
    try:
        payload = airgap.verify_receipt(receipt.read_bytes(), keys)
    except airgap.ReceiptRefused as exc:
        click.echo(f"floatsrv: {exc}", err=True)
        sys.exit(1)
    done = run_with_store(
        config, lambda store: airgap.acknowledge(store, CLOCK, cli_actor().name, payload, config.sync.server_id)
    )
    click.echo(f"acknowledged {done.records} records of report {done.report_id}")
    if done.repaired:
        click.echo(
            f"usage_rollback_detected: the vendor holds usage this database lost (a restored backup?); "
            f"{done.repaired} counters were repaired from its totals and go out in the next report",
            err=True,
        )


@usage_group.command("keygen")
@click.option("--out", "out_path", required=True, type=click.Path(path_type=Path, dir_okay=False))
def usage_keygen(out_path: Path) -> None:
    """Vendor side: make a receipt-signing key (private key to --out; prints the public key for the config)."""
    if out_path.exists():
        raise click.UsageError(f"{out_path} exists; refusing to overwrite a key")
    fd = os.open(out_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(new_private_key_pem())
    click.echo(public_key_text(read_private_key(out_path)))


@usage_group.command("receipt")
@click.argument("report", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.option("--server-public-key", "server_key_text", required=True)
@click.option("--vendor-key", "vendor_key", required=True, type=click.Path(path_type=Path, exists=True))
@click.option("--out", "out_path", required=True, type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--ledger",
    "ledger_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="The vendor's ledger (JSON, made if missing): it keeps each counter's highest revision, and the receipt "
    "states what it holds, so a customer's rolled-back database is found and repaired.",
)
def usage_receipt(
    report: Path, server_key_text: str, vendor_key: Path, out_path: Path, ledger_path: Path | None
) -> None:
    """Vendor side: verify a customer's report and sign a receipt for it."""
    try:
        payload = verify(REPORT, report.read_bytes(), public_key(server_key_text))
    except SignatureError as exc:
        click.echo(f"floatsrv: report rejected: {exc}", err=True)
        sys.exit(1)
    receipt: dict[str, object] = {
        "report_id": payload["report_id"],
        "server_id": payload["server_id"],
        "acknowledged_at": iso(CLOCK.now()),
        "records": len(payload["records"]),
    }
    if ledger_path is not None:
        receipt["holdings"] = _merge_into_ledger(ledger_path, payload)
        if payload.get("holdings_requested"):
            receipt["holdings_requested"] = True
        if payload.get("usage_rollback") or payload.get("clock_tampered"):
            flags = [name for name in ("usage_rollback", "clock_tampered") if payload.get(name)]
            click.echo(f"note: the report is flagged: {', '.join(flags)}", err=True)
    _write_atomically(out_path, sign(RECEIPT, receipt, read_private_key(vendor_key)))
    click.echo(f"receipt for report {payload['report_id']} written to {out_path}")


def _merge_into_ledger(path: Path, report: dict[str, Any]) -> list[dict[str, Any]]:
    """Keep each counter's highest revision in the vendor's ledger; what it holds of the report's counters."""
    ledger: dict[str, dict[str, Any]] = json.loads(path.read_text()) if path.exists() else {}
    if report.get("holdings_requested"):  # a restored server asks for all it has sent
        return [_holding(entry) for key, entry in sorted(ledger.items()) if json.loads(key)[0] == report["server_id"]]
    held = []
    for record in report["records"]:
        key = json.dumps([report["server_id"], record["license_id"], record["feature"], record["period_start"]])
        known = ledger.get(key)
        if known is None or record["revision"] > known["revision"]:
            ledger[key] = known = record
        held.append(_holding(known))
    _write_atomically(path, (json.dumps(ledger, indent=1, sort_keys=True) + "\n").encode())
    return held


def _holding(record: dict[str, Any]) -> dict[str, Any]:
    return {name: record[name] for name in ("license_id", "feature", "period_start", "period_end", "revision",
                                            "quantity")}  # fmt: skip


def _write_atomically(path: Path, data: bytes) -> None:
    temp = path.with_name(path.name + ".tmp")
    with temp.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temp, path)
