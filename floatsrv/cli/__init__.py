"""Command-line interface: `floatsrv serve | check-config | healthcheck | hash-password`, admin commands
(`status`, `licenses`, `seats`, `user`, `token`, `apikey`, `audit`, `sync`, `usage`, `server-key`, `db`,
`license`, `v5`, `report`) and the vendor's (`vendor`), and `floatsrv --version`.

Admin commands are imported only when they run (`LazyGroup`): `floatsrv --version`, `check-config` and
`healthcheck` stay fast (bench/startup.py measures them) instead of importing the whole server.

Exit codes: 0 ok; 1 check-config found problems, `status`/`healthcheck` found the server not ready, or a
runtime failure (`sync now` also when an upstream refused a batch for good and it was parked); 2 invalid
configuration or usage at `serve` (one line per problem on stderr, naming the YAML key path); 3 an unusable
data directory or database at `serve` (foreign, corrupt, from a newer floatsrv, or not writable). Admin
commands log to stderr; stdout carries only their output.
"""

from __future__ import annotations

import gc
import importlib
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from floatsrv import __version__

if TYPE_CHECKING:
    from floatsrv.config import Config

# name -> (module, attribute, the one-line help `floatsrv --help` shows without importing the module).
# tests/test_cli_contract.py checks each line against the command's own help.
LAZY: dict[str, tuple[str, str, str]] = {
    "status": (
        "floatsrv.cli.admin",
        "status_command",
        "The server at a glance: is it up, its database, seats in use, what is owed upstream.",
    ),
    "licenses": (
        "floatsrv.cli.admin",
        "licenses_group",
        "The licenses this server serves, with live seat and consumption counts.",
    ),
    "seats": (
        "floatsrv.cli.admin",
        "seats_group",
        "Seats held now (and their history); revoke one.",
    ),
    "user": (
        "floatsrv.cli.auth",
        "user_group",
        "Manage users (a new or reset user gets a temporary password to change at first login).",
    ),
    "token": (
        "floatsrv.cli.auth",
        "token_group",
        "List and revoke bearer tokens; rotate the signing key.",
    ),
    "apikey": (
        "floatsrv.cli.auth",
        "apikey_group",
        "API keys for apps: long-lived, scoped to a role, revocable. Shown once.",
    ),
    "audit": (
        "floatsrv.cli.auth",
        "audit_command",
        "Show the audit log, newest first.",
    ),
    "sync": (
        "floatsrv.cli.sync",
        "sync_group",
        "Upstream sync: status, send now, retry parked batches.",
    ),
    "usage": (
        "floatsrv.cli.sync",
        "usage_group",
        "Consumption counters, and air-gapped usage: signed report files out, signed vendor receipts in.",
    ),
    "server-key": (
        "floatsrv.cli.sync",
        "server_key",
        "Print this server's identity key (Ed25519, base64).",
    ),
    "fingerprint": (
        "floatsrv.cli.sync",
        "fingerprint_command",
        "Print this host's fingerprint (machine id and data directory; license files may be bound to it).",
    ),
    "db": (
        "floatsrv.cli.db",
        "db_group",
        "The database and keys of a data directory: backup, restore, check.",
    ),
    "license": (
        "floatsrv.cli.license",
        "license_group",
        "Vendor-signed license files: import, list, remove.",
    ),
    "vendor": (
        "floatsrv.cli.license",
        "vendor_group",
        "The vendor's tools (run on the vendor's machine): signing keys and license files.",
    ),
    "v5": (
        "floatsrv.cli.v5",
        "v5_group",
        "LicenseSpring Floating Server v2 (/api/v5): make the certificate chain its signed replies are checked with.",
    ),
    "report": (
        "floatsrv.cli.report",
        "report_group",
        "Usage history: denied requests, seat concurrency, consumption (tables, --csv or --json).",
    ),
    "container-start": ("floatsrv.container", "container_start", ""),  # hidden: the image's entry point
}


class LazyGroup(click.Group):
    """A group whose subcommands in LAZY are imported when they run (their help is listed without it)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *LAZY})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is not None or cmd_name not in LAZY:
            return command
        module, attribute, _ = LAZY[cmd_name]
        loaded: object = getattr(importlib.import_module(module), attribute)
        if not isinstance(loaded, click.Command):
            raise TypeError(f"{module}.{attribute} is not a click command")
        if cmd_name == "usage" and isinstance(loaded, click.Group):  # `usage show`: with the admin views
            from floatsrv.cli.admin import usage_show

            loaded.add_command(usage_show)
        self.add_command(loaded, cmd_name)
        return loaded

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        name, command, rest = super().resolve_command(ctx, args)
        if name in LAZY:  # about to run (not merely listed in a help): admin commands log to stderr
            from floatsrv.log import configure_cli_logging

            configure_cli_logging()  # (`serve` sets up the server's own logging)
        return name, command, rest

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = []
        for name in self.list_commands(ctx):
            if name in LAZY and name not in self.commands:
                if LAZY[name][2]:
                    rows.append((name, LAZY[name][2]))
                continue
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, command.get_short_help_str(formatter.width - 6 - len(name))))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


def _load(path: Path) -> Config:
    from floatsrv.config import EXIT_BAD_CONFIG, ConfigError, load_config

    try:
        return load_config(path)
    except ConfigError as exc:
        for line in exc.lines:
            click.echo(f"floatsrv: config error: {line}", err=True)
        sys.exit(EXIT_BAD_CONFIG)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="floatsrv")
def main() -> None:
    """floatsrv: a self-hosted floating license server."""


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
    from floatsrv.config import load_config
    from floatsrv.server import run

    def reload_config() -> Config:  # SIGHUP: the same file and the same command-line overrides
        return load_config(config_path).with_overrides(host=host, port=port, data_dir=data_dir)

    sys.exit(run(config, reload_config))


@main.command("check-config")
@click.option(
    "--config",
    "config_path",
    required=True,
    envvar="FLOATSRV_CONFIG",
    type=click.Path(path_type=Path),
    help="YAML config file (or set FLOATSRV_CONFIG).",
)
def check_config(config_path: Path) -> None:
    """Validate a config file: exit 0 when it is valid, 1 (with one line per problem) when not."""
    from floatsrv.config import ConfigError, load_config

    try:
        config = load_config(config_path)
    except ConfigError as exc:
        for line in exc.lines:
            click.echo(f"floatsrv: config error: {line}", err=True)
        sys.exit(1)
    from floatsrv.entitlements.trust import TrustAnchorError, config_problems, load_trust_anchor
    from floatsrv.preflight import check_license_files, preflight

    try:
        problems = config_problems(
            load_trust_anchor(),
            inline_licenses=bool(config.licenses),
            vendor_public_key=config.sync.vendor_public_key is not None,
        )
    except TrustAnchorError as exc:
        problems = [str(exc)]
    files, from_files, file_problems = check_license_files(config)
    # What serve would refuse beyond the file itself (TLS, the data directory, subscriptions), or warn about.
    findings = preflight(config, [*config.licenses, *from_files])
    for line in problems + file_problems + findings.errors:
        click.echo(f"floatsrv: config error: {line}", err=True)
    for line in findings.warnings:
        click.echo(f"floatsrv: warning: {line}", err=True)
    if problems or file_problems or findings.errors:
        sys.exit(1)
    click.echo(
        f"{config_path}: ok (license files: {files} with {len(from_files)} licenses, inline licenses: "
        f"{len(config.licenses)}, users: {len(config.auth.users)}, data in {config.storage.data_dir})"
    )


@main.command("healthcheck")
@click.option(
    "--config",
    "config_path",
    envvar="FLOATSRV_CONFIG",
    type=click.Path(path_type=Path),
    help="The server's YAML config (or set FLOATSRV_CONFIG): where it listens.",
)
@click.option("--timeout", type=click.FloatRange(0.1, 60), default=3.0, show_default=True, help="Seconds to wait.")
def healthcheck(config_path: Path | None, timeout: float) -> None:
    """Exit 0 when the configured server answers /readyz ready, else 1 with one line saying why."""
    from floatsrv.cli.probe import readiness
    from floatsrv.config import ConfigError, load_config
    from floatsrv.container import config_to_check

    config_path = config_to_check(os.environ, config_path)  # in the image, possibly its loopback-only demo
    if config_path is None:
        raise click.UsageError("give --config PATH (or set FLOATSRV_CONFIG)")
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        click.echo(f"floatsrv: not healthy: config error: {exc.lines[0]}", err=True)
        sys.exit(1)
    found = readiness(config, timeout)
    if not found.ok:
        click.echo(f"floatsrv: not healthy: {found.state} ({found.url}): {found.reason}", err=True)
        sys.exit(1)
    click.echo(f"ready ({found.url})")


@main.command("reload")
@click.option("--pid", type=click.IntRange(1), help="The server's process id (systemd's $MAINPID).")
@click.option(
    "--config",
    "config_path",
    envvar="FLOATSRV_CONFIG",
    type=click.Path(path_type=Path),
    help="The server's YAML config (or set FLOATSRV_CONFIG): find the server serving its data directory.",
)
@click.option("--data-dir", type=click.Path(path_type=Path), help="Data directory (overrides the config).")
def reload_command(pid: int | None, config_path: Path | None, data_dir: Path | None) -> None:
    """Ask the running server to re-read its config (SIGHUP), without dropping registrations."""
    import signal

    if pid is None:
        from floatsrv.cli.tools import resolve_config
        from floatsrv.datalock import holder

        config = resolve_config(config_path, data_dir)
        pid = holder(config.storage.data_dir)
        if pid is None:
            click.echo(f"floatsrv: no floatsrv is serving {config.storage.data_dir}", err=True)
            sys.exit(1)
    try:
        os.kill(pid, signal.SIGHUP)
    except OSError as exc:
        click.echo(f"floatsrv: cannot signal process {pid}: {exc.strerror or exc}", err=True)
        sys.exit(1)
    click.echo(f"asked floatsrv (pid {pid}) to reload its config; its log says what changed (config_reloaded)")


@main.command("hash-password")
@click.password_option(help="The password to hash (prompted for when omitted).")
def hash_password_command(password: str) -> None:
    """Print an scrypt hash for `password_hash` in the config."""
    from floatsrv.auth.passwords import hash_password

    click.echo(hash_password(password))
