"""Command-line interface: `floatsrv serve | check-config | hash-password`, admin commands (`user`, `token`,
`apikey`, `audit`, `sync`, `usage`, `server-key`) and `floatsrv --version`.

Exit codes: 0 ok; 1 check-config found problems or a runtime failure (`sync now` also when an upstream
refused a batch for good and it was parked); 2 invalid configuration or usage at `serve` (one line per
problem on stderr, naming the YAML key path); 3 an unusable data directory or database at `serve`
(foreign, corrupt, from a newer floatsrv, or not writable). Admin commands log to stderr; stdout carries
only their output.
"""

from __future__ import annotations

import gc
import sys
from pathlib import Path

import click

from floatsrv import __version__
from floatsrv.config import EXIT_BAD_CONFIG, Config, ConfigError, load_config


def _load(path: Path) -> Config:
    try:
        return load_config(path)
    except ConfigError as exc:
        for line in exc.lines:
            click.echo(f"floatsrv: config error: {line}", err=True)
        sys.exit(EXIT_BAD_CONFIG)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="floatsrv")
def main() -> None:
    """floatsrv: a self-hosted floating license server."""
    from floatsrv.log import configure_cli_logging

    configure_cli_logging()  # `serve` replaces this with the server's own logging


@main.command()
@click.option("--config", "config_path", required=True, type=click.Path(path_type=Path), help="YAML config file.")
@click.option("--host", help="Listen address (overrides server.host).")
@click.option("--port", type=click.IntRange(0, 65535), help="Listen port (overrides server.port).")
@click.option("--data-dir", type=click.Path(path_type=Path), help="Data directory (overrides storage.data_dir).")
def serve(config_path: Path, host: str | None, port: int | None, data_dir: Path | None) -> None:
    """Run the server until SIGINT/SIGTERM."""
    # Start-up builds large acyclic trees (a config with thousands of licenses): cyclic collections during
    # it cost more than the parsing itself. The server re-enables the collector once it is listening.
    gc.disable()
    config = _load(config_path).with_overrides(host=host, port=port, data_dir=data_dir)
    from floatsrv.server import run

    def reload_config() -> Config:  # SIGHUP: the same file and the same command-line overrides
        return load_config(config_path).with_overrides(host=host, port=port, data_dir=data_dir)

    sys.exit(run(config, reload_config))


@main.command("check-config")
@click.option("--config", "config_path", required=True, type=click.Path(path_type=Path), help="YAML config file.")
def check_config(config_path: Path) -> None:
    """Validate a config file: exit 0 when it is valid, 1 (with one line per problem) when not."""
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        for line in exc.lines:
            click.echo(f"floatsrv: config error: {line}", err=True)
        sys.exit(1)
    from floatsrv.cli.license import check_license_files
    from floatsrv.entitlements.trust import TrustAnchorError, config_problems, load_trust_anchor

    try:
        problems = config_problems(
            load_trust_anchor(),
            inline_licenses=bool(config.licenses),
            vendor_public_key=config.sync.vendor_public_key is not None,
        )
    except TrustAnchorError as exc:
        problems = [str(exc)]
    files, from_files, file_problems = check_license_files(config)
    for line in problems + file_problems:
        click.echo(f"floatsrv: config error: {line}", err=True)
    if problems or file_problems:
        sys.exit(1)
    click.echo(
        f"{config_path}: ok (license files: {files} with {from_files} licenses, inline licenses: "
        f"{len(config.licenses)}, users: {len(config.auth.users)}, data in {config.storage.data_dir})"
    )


def _register_admin_commands() -> None:
    from floatsrv.cli.admin import db_group, licenses_group, seats_group, status_command, usage_show
    from floatsrv.cli.auth import apikey_group, audit_command, token_group, user_group
    from floatsrv.cli.license import license_group, vendor_group
    from floatsrv.cli.sync import server_key, sync_group, usage_group
    from floatsrv.container import container_start

    usage_group.add_command(usage_show)
    for command in (
        status_command,
        licenses_group,
        seats_group,
        user_group,
        token_group,
        apikey_group,
        audit_command,
        sync_group,
        usage_group,
        server_key,
        db_group,
        license_group,
        vendor_group,
        container_start,
    ):
        main.add_command(command)


_register_admin_commands()


@main.command("hash-password")
@click.password_option(help="The password to hash (prompted for when omitted).")
def hash_password_command(password: str) -> None:
    """Print an scrypt hash for `password_hash` in the config."""
    from floatsrv.auth.passwords import hash_password

    click.echo(hash_password(password))
