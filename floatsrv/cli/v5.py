"""`floatsrv v5`: the certificate chain of LicenseSpring Floating Server v2 (`/api/v5`) signed replies."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

import click

from floatsrv.v5chain import load_signer, make_chain


@click.group("v5")
def v5_group() -> None:
    """LicenseSpring Floating Server v2 (/api/v5): make the certificate chain its signed replies are checked with."""


@v5_group.command("make-chain")
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path, file_okay=False))
@click.option("--force", is_flag=True, help="Replace an existing chain.pem / signing-key.pem in --out.")
def make_chain_command(out_dir: Path, force: bool) -> None:
    """Make a site's chain: DIR/chain.pem (leaf, intermediate, root: what apps are given) and
    DIR/signing-key.pem (the leaf's RSA key, mode 0600: it stays on the server)."""
    try:
        chain, key = make_chain(out_dir.absolute(), force=force)
    except FileExistsError as exc:
        click.echo(f"floatsrv: {exc}", err=True)
        sys.exit(1)
    signer = load_signer(key, chain, now=datetime.now(UTC))  # the rules serve applies, checked once here
    click.echo(f"certificate chain: {chain}  (give it to apps: the SDKs' certificate_chain_path)")
    click.echo(f"signing key:       {key}  (mode 0600; it stays on this server)")
    click.echo(f"the leaf expires on {signer.leaf_not_after:%Y-%m-%d}: make a new chain before then")
    click.echo("")
    click.echo("add to the server's config, then restart it:")
    click.echo("api_v5:")
    click.echo("  enabled: true")
    click.echo(f"  signing_key: {key}")
    click.echo(f"  certificate_chain: {chain}")
