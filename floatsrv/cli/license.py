"""License file commands. The customer's admin: `floatsrv license import|list|remove` (on a server's data
directory, safe while it runs: the server applies the change within a second). The vendor, on its own
machine: `floatsrv vendor keygen|issue|inspect`."""

from __future__ import annotations

import json
import os
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click

from floatsrv.cli.tools import cli_actor, data_options, emit, resolve_config, run_with_store
from floatsrv.clock import SystemClock
from floatsrv.config import Config, ConfigError
from floatsrv.db.store import Store
from floatsrv.domain import activation, licensing
from floatsrv.domain.catalog import load_catalog
from floatsrv.domain.context import Domain
from floatsrv.domain.licensefiles import Licensing, file_state
from floatsrv.domain.licensing import FileRow
from floatsrv.domain.timemark import judged_now
from floatsrv.entitlements import issue as vendor
from floatsrv.entitlements.fileformat import check_signature, dearmour, kid_of, parse_envelope
from floatsrv.entitlements.request import read_request
from floatsrv.entitlements.trust import TrustAnchorError, load_trust_anchor, public_key_from_text
from floatsrv.entitlements.verify import open_file
from floatsrv.errors import LicenseFileRefused
from floatsrv.identity import fingerprint
from floatsrv.preflight import server_key_of
from floatsrv.signing import SignatureError, read_private_key
from floatsrv.times import iso_us, parse_instant

CLOCK = SystemClock()


async def _domain(store: Store, config: Config) -> Domain:
    """The domain as the admin commands see it: this build's keys, the server's key, the database's licenses."""
    try:
        anchor = load_trust_anchor()
    except TrustAnchorError as exc:
        click.echo(f"floatsrv: {exc}", err=True)
        sys.exit(2)
    licensing = Licensing(anchor, server_key_of(config), fingerprint=fingerprint(config.storage.data_dir))
    licensing.time.tolerance = timedelta(hours=config.licensing.clock_tolerance_hours)
    await store.read(licensing.time.load)
    return Domain(store, CLOCK, await load_catalog(store), licensing=licensing)


@click.group("license")
def license_group() -> None:
    """Vendor-signed license files: import, list, remove."""


@license_group.command("import")
@click.argument("file", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@data_options
def license_import(file: Path, config_path: Path | None, data_dir: Path | None) -> None:
    """Verify a license file and apply it (a running server picks it up within a second)."""
    config = resolve_config(config_path, data_dir)
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        click.echo(f"floatsrv: license_file_malformed: cannot read {file}: {exc}", err=True)
        sys.exit(1)

    async def work(store: Store) -> licensing.ImportResult:
        domain = await _domain(store, config)
        return await licensing.import_text(domain, cli_actor(), text)

    result = run_with_store(config, work)
    row = result.file
    if result.outcome == "unchanged":
        click.echo(f"{row.file_id}: already in force, nothing changed")
        return
    click.echo(
        f"imported {row.file_id} (series {row.series}, sequence {row.sequence}): licenses "
        + ", ".join(str(i) for i in row.license_ids)
        + (f"; it replaces {result.superseded}" if result.superseded else "")
    )


@license_group.command("request")
@click.option("--out", "out_path", required=True, type=click.Path(path_type=Path, dir_okay=False))
@click.option("--force", is_flag=True, help="Overwrite FILE if it exists.")
@data_options
def license_request(out_path: Path, force: bool, config_path: Path | None, data_dir: Path | None) -> None:
    """Write an activation request for the vendor (offline activation or a rebind), signed by this server."""
    config = resolve_config(config_path, data_dir)
    if not out_path.absolute().parent.is_dir():
        raise click.BadParameter(f"the directory {out_path.absolute().parent} does not exist", param_hint="--out")
    if out_path.exists() and not force:
        raise click.BadParameter(f"{out_path} exists (give --force to overwrite it)", param_hint="--out")
    if not config.signing_key_path.exists():
        click.echo("floatsrv: this data directory has no server key yet: start the server once", err=True)
        sys.exit(1)
    key = read_private_key(config.signing_key_path)

    async def work(store: Store) -> tuple[str, bytes, str | None]:
        domain = await _domain(store, config)
        request, document = await activation.create_request(
            store, CLOCK, domain.licensing, key, cli_actor(), config.sync.server_id
        )
        return request.request_id, document, request.previous_fingerprint

    request_id, document, previous = run_with_store(config, work)
    out_path.write_bytes(document)
    rebind = f" (a rebind from fingerprint {previous})" if previous else ""
    click.echo(f"wrote {out_path}: activation request {request_id}{rebind}; send it to your vendor")


@license_group.command("list")
@click.option("--all", "include_ended", is_flag=True, help="Also superseded and removed files.")
@click.option("--json", "as_json", is_flag=True)
@data_options
def license_list(include_ended: bool, as_json: bool, config_path: Path | None, data_dir: Path | None) -> None:
    """License files in force (file id, key, series and sequence, binding, dates, licenses)."""
    config = resolve_config(config_path, data_dir)

    async def work(store: Store) -> tuple[list[FileRow], datetime]:
        return await licensing.files(store, include_ended), await judged_now(store, CLOCK.now())

    rows, now = run_with_store(config, work)
    emit(
        [
            {
                "file_id": row.file_id,
                "state": file_state(row, now),
                "kid": row.kid,
                "entitlements": row.entitlements,
                "series": row.series,
                "sequence": row.sequence,
                "binding": f"server {row.bound_to[:12]}..." if row.bound_to else "unbound",
                "issued_at": iso_us(row.issued_at),
                "expires_at": iso_us(row.expires_at),
                "refresh_by": iso_us(row.refresh_by),
                "fingerprint": row.fingerprint,
                "request_id": row.request_id,
                "licenses": ",".join(str(i) for i in row.license_ids),
            }
            for row in rows
        ],
        ["file_id", "state", "kid", "series", "sequence", "binding"]
        + ["issued_at", "expires_at", "refresh_by", "licenses"],
        as_json,
    )


@license_group.command("remove")
@click.argument("file_id")
@data_options
def license_remove(file_id: str, config_path: Path | None, data_dir: Path | None) -> None:
    """End a file in force: its licenses stop being served and their seats end."""
    config = resolve_config(config_path, data_dir)

    async def work(store: Store) -> None:
        domain = await _domain(store, config)
        await licensing.remove(domain, cli_actor(), file_id)

    run_with_store(config, work)
    click.echo(f"removed {file_id}; a file of its series needs a higher sequence from now on")


@click.group("vendor")
def vendor_group() -> None:
    """The vendor's tools (run on the vendor's machine): signing keys and license files."""


@vendor_group.command("keygen")
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path, file_okay=False))
def vendor_keygen(out_dir: Path) -> None:
    """Make a vendor signing key: OUT/vendor.key (private, mode 0600) and OUT/vendor.pub (for builds)."""
    private, public = out_dir / "vendor.key", out_dir / "vendor.pub"
    for path in (private, public):
        if path.exists():
            raise click.UsageError(f"{path} exists; refusing to overwrite a key")
    pem, public_text, kid = vendor.new_key()
    out_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    public.write_text(public_text + "\n", encoding="ascii")
    click.echo(f"key {kid}: private {private} (keep it secret), public {public} (give it to builds: --vendor-key)")


def _key_text(value: str) -> str:
    """A key given as its text, or as a file holding it."""
    path = Path(value)
    return path.read_text(encoding="ascii").strip() if path.is_file() else value.strip()


def _instant(value: str | None, option: str) -> datetime | None:
    if value is None:
        return None
    try:
        return parse_instant(value)
    except ValueError:
        raise click.BadParameter(
            "must be an ISO 8601 date-time, e.g. 2027-12-31T23:59:59Z", param_hint=option
        ) from None


@vendor_group.command("issue")
@click.option("--key", "key_path", required=True, type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.option("--licenses", "licenses_path", required=True, type=click.Path(path_type=Path, exists=True))
@click.option("--server-key", help="The customer server's key (`floatsrv server-key` prints it), or a file with it.")
@click.option("--request", "request_path", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.option("--unbound", is_flag=True, help="Valid on any server (only on purpose, e.g. a demo).")
@click.option("--series", default="default", show_default=True)
@click.option("--sequence", type=click.IntRange(1, 2**53 - 1), default=1, show_default=True)
@click.option("--expires", help="ISO 8601 date-time after which the file's licenses are no longer served.")
@click.option("--refresh-by", help="ISO 8601 date-time by which a newer file must arrive, or its licenses stop.")
@click.option("--not-before", help="ISO 8601 date-time from which the file may be imported (default: now).")
@click.option("--issued-at", help="ISO 8601 date-time the file says it was issued (default: now).")
@click.option("--file-id", help="Default: a new random id.")
@click.option("--out", "out_path", required=True, type=click.Path(path_type=Path, dir_okay=False))
def vendor_issue(
    key_path: Path,
    licenses_path: Path,
    server_key: str | None,
    request_path: Path | None,
    unbound: bool,
    series: str,
    sequence: int,
    expires: str | None,
    refresh_by: str | None,
    not_before: str | None,
    issued_at: str | None,
    file_id: str | None,
    out_path: Path,
) -> None:
    """Sign a license file for one server (--server-key), an activation request (--request), or any (--unbound)."""
    if not out_path.absolute().parent.is_dir():
        raise click.BadParameter(f"the directory {out_path.absolute().parent} does not exist", param_hint="--out")
    if sum((server_key is not None, request_path is not None, unbound)) != 1:
        raise click.UsageError("give exactly one of --server-key, --request, --unbound")
    binding: dict[str, object] = {"unbound": True}
    request_id = None
    if request_path is not None:
        try:
            request = read_request(request_path.read_bytes())
        except (OSError, SignatureError) as exc:
            raise click.BadParameter(str(exc), param_hint="--request") from None
        binding = {"server_key": request.server_key, "fingerprint": request.fingerprint}
        request_id = request.request_id
        if request.previous_fingerprint:
            click.echo(
                f"note: a rebind: server {request.server_id} moved from fingerprint {request.previous_fingerprint} "
                f"to {request.fingerprint}"
            )
    if server_key is not None:
        try:
            text = _key_text(server_key)
            public_key_from_text(text)
        except (OSError, ValueError) as exc:
            raise click.BadParameter(str(exc), param_hint="--server-key") from None
        binding = {"server_key": text}
    try:
        specs = vendor.validated(vendor.read_licenses(licenses_path.read_text(encoding="utf-8")))
        key = read_private_key(key_path)
        payload = vendor.payload_bytes(
            specs,
            binding=binding,
            issued_at=_instant(issued_at, "--issued-at") or datetime.now(UTC),
            not_before=_instant(not_before, "--not-before"),
            expires_at=_instant(expires, "--expires"),
            series=series,
            sequence=sequence,
            file_id=file_id,
            request_id=request_id,
            refresh_by=_instant(refresh_by, "--refresh-by"),
        )
    except ConfigError as exc:
        for line in exc.lines:
            click.echo(f"floatsrv: {licenses_path}: {line}", err=True)
        sys.exit(1)
    except (LicenseFileRefused, SignatureError, ValueError) as exc:
        click.echo(f"floatsrv: {exc}", err=True)
        sys.exit(1)
    out_path.write_text(vendor.issue(payload, key), encoding="ascii")
    click.echo(
        f"wrote {out_path}: {len(specs)} licenses, series {series} sequence {sequence}, key {kid_of(key.public_key())}"
    )


@vendor_group.command("inspect")
@click.argument("file", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.option("--public-key", "key_text", help="Verify with this key (text or file); default: this build's keys.")
def vendor_inspect(file: Path, key_text: str | None) -> None:
    """Print a license file's payload and whether its signature verifies (exit 1 when it does not)."""
    text = file.read_text(encoding="utf-8", errors="replace")
    try:
        envelope = parse_envelope(dearmour(text))
        payload = json.loads(envelope.payload)
    except (LicenseFileRefused, ValueError) as exc:
        click.echo(f"floatsrv: {getattr(exc, 'code', 'license_file_malformed')}: {exc}", err=True)
        sys.exit(1)
    click.echo(json.dumps(payload, indent=2, ensure_ascii=False))
    try:
        if key_text is not None:
            try:
                key = public_key_from_text(_key_text(key_text))
            except (OSError, ValueError) as exc:
                raise click.BadParameter(str(exc), param_hint="--public-key") from None
            check_signature(envelope, key)
            verdict = f"signature verifies with the given key ({kid_of(key)})"
        else:
            opened = open_file(text, load_trust_anchor())
            verdict = f"signature verifies with this build's key {opened.key.kid} ({opened.entitlements})"
    except LicenseFileRefused as exc:
        click.echo(f"NOT VERIFIED: {exc.code}: {exc.message}", err=True)
        sys.exit(1)
    click.echo(f"kid {envelope.kid}: {verdict}", err=True)
