"""Helpers shared by the admin commands: finding the data directory, opening the store, printing.

Admin commands work directly on the database of a (possibly running) server. That is safe: every change
is one `BEGIN IMMEDIATE` transaction (waiting up to `storage.busy_timeout_ms` for the server's writer),
and credential changes bump the auth version, which the running server checks on every request.
"""

from __future__ import annotations

import asyncio
import getpass
import json
import os
import sys
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import click

from floatsrv.auth.guard import touch_stamp
from floatsrv.clock import SystemClock
from floatsrv.config import Config, ConfigError, load_config, parse_config
from floatsrv.db.backends import make_store, password_of
from floatsrv.db.migrate import SchemaError
from floatsrv.db.store import Store, StoreOptions
from floatsrv.domain.accounts import Actor
from floatsrv.errors import FloatsrvError

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


def data_options(func: F) -> F:
    """`--config PATH` and/or `--data-dir DIR`: where the server keeps its database."""
    func = click.option("--data-dir", type=click.Path(path_type=Path), help="Data directory (overrides the config).")(
        func
    )
    func = click.option(
        "--config",
        "config_path",
        type=click.Path(path_type=Path),
        envvar="FLOATSRV_CONFIG",
        help="The server's YAML config (or set FLOATSRV_CONFIG).",
    )(func)
    return func


def resolve_config(config_path: Path | None, data_dir: Path | None) -> Config:
    if config_path is None and data_dir is None:
        raise click.UsageError("give --config PATH (or FLOATSRV_CONFIG) or --data-dir DIR")
    try:
        config = load_config(config_path) if config_path else parse_config("", Path.cwd())
    except ConfigError as exc:
        for line in exc.lines:
            click.echo(f"floatsrv: config error: {line}", err=True)
        sys.exit(2)
    return config.with_overrides(data_dir=data_dir)


def pg_password(config: Config) -> str | None:
    """The PostgreSQL password from storage.postgresql.password_file (None: asyncpg looks for one); a file
    that cannot be read is a config error (exit 2), as at the server's start."""
    try:
        return password_of(config)
    except ConfigError as exc:
        for line in exc.lines:
            click.echo(f"floatsrv: config error: {line}", err=True)
        sys.exit(2)


def cli_actor() -> Actor:
    try:
        who = getpass.getuser()
    except (KeyError, OSError):
        who = "unknown"
    return Actor(f"cli:{who}", "local")


def run_with_store(config: Config, work: Callable[[Store], Awaitable[T]], *, create: bool = False) -> T:
    """Open the server's store, run `work`, close it. Domain errors print one line and exit 1."""
    if config.storage.backend == "sqlite" and not create and not config.db_path.exists():
        click.echo(f"floatsrv: no database at {config.db_path} (start the server once, or check --data-dir)", err=True)
        sys.exit(1)
    warn_if_not_owner(config.storage.data_dir)
    pg_password(config)  # a bad password_file: one clear line, before anything opens

    async def main() -> T:
        store = make_store(config, SystemClock(), StoreOptions(busy_timeout_ms=config.storage.busy_timeout_ms))
        await store.open()
        try:
            return await work(store)
        finally:
            await store.close()
            # Whatever the command changed, a running server re-reads credentials on its next request.
            touch_stamp(config.auth_stamp_path)

    try:
        return asyncio.run(main())
    except FloatsrvError as exc:
        click.echo(f"floatsrv: {exc.code}: {exc.message}", err=True)
        sys.exit(1)
    except SchemaError as exc:
        click.echo(f"floatsrv: {exc}", err=True)
        sys.exit(1)


def warn_if_not_owner(data_dir: Path) -> None:
    """Files a command creates in the data directory belong to whoever runs it: as root, the server (running
    as its own user) may then fail to open them. Say so before anything is created."""
    try:
        owner = data_dir.stat().st_uid
    except OSError:
        return
    if hasattr(os, "geteuid") and os.geteuid() != owner:
        click.echo(
            f"floatsrv: warning: {data_dir} belongs to uid {owner} and you are uid {os.geteuid()}; run admin "
            "commands as the server's user (e.g. sudo -u floatsrv floatsrv ...)",
            err=True,
        )


def emit(rows: list[dict[str, Any]], columns: Iterable[str], as_json: bool) -> None:
    """Rows as JSON (`--json`, for scripts) or as an aligned table (for people)."""
    if as_json:
        click.echo(json.dumps(rows, indent=2, default=str))
        return
    cols = list(columns)
    cells = [[("-" if row.get(c) is None else str(row.get(c))) for c in cols] for row in rows]
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(cols)]
    click.echo("  ".join(c.upper().ljust(w) for c, w in zip(cols, widths, strict=True)).rstrip())
    for row in cells:
        click.echo("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
    if not rows:
        click.echo("(none)")
