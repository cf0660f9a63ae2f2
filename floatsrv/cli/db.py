"""`floatsrv db`: the database and keys of a data directory: backup archives (while the server runs), restore
(into a stopped one) and a read-only integrity check."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from floatsrv import __version__, datalock
from floatsrv.cli.tools import data_options, pg_password, resolve_config
from floatsrv.config import Config
from floatsrv.db import archive
from floatsrv.domain import health


@click.group("db")
def db_group() -> None:
    """The database and keys of a data directory: backup, restore, check."""


def _files(config: Config) -> archive.DataFiles:
    return archive.DataFiles(config.db_path, config.token_key_path, config.signing_key_path)


@db_group.command("backup")
@click.option("--out", "out_path", required=True, type=click.Path(path_type=Path, dir_okay=False))
@click.option("--force", is_flag=True, help="Replace an existing file at --out.")
@data_options
def db_backup(out_path: Path, force: bool, config_path: Path | None, data_dir: Path | None) -> None:
    """Back up the database and the server's keys into one archive, while the server runs.

    The database is copied with SQLite's backup API (one consistent snapshot) and checked; the token signing
    key and the server's identity key go with it, so a restored server accepts every token it issued and
    keeps its identity. Written atomically, mode 0600. Restore with `floatsrv db restore`."""
    config = resolve_config(config_path, data_dir)
    directory = out_path.absolute().parent
    if not directory.is_dir():
        click.echo(f"floatsrv: the directory {directory} does not exist", err=True)
        sys.exit(1)
    if out_path.exists() and not force:
        click.echo(f"floatsrv: {out_path} exists: give --force to replace it", err=True)
        sys.exit(1)
    try:
        written = archive.write(_files(config), out_path, __version__, config.storage.busy_timeout_ms)
    except (archive.ArchiveError, OSError) as exc:
        click.echo(f"floatsrv: backup failed: {exc}", err=True)
        sys.exit(1)
    click.echo(
        f"backup written: {written.path} ({written.size / 2**20:.1f} MiB; {', '.join(written.files)}; "
        f"schema {written.schema_version})"
    )


@db_group.command("restore")
@click.argument("archive_path", metavar="PATH", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@data_options
def db_restore(archive_path: Path, config_path: Path | None, data_dir: Path | None) -> None:
    """Restore a backup made by `floatsrv db backup` into a stopped server's data directory.

    Everything is verified first (digests, the database's integrity and schema, the keys); the files there
    before are moved to before-restore-<time>/ in the data directory, not deleted. Refused while a server
    runs on the data directory. Start the server afterwards: tokens and the server's identity are kept."""
    config = resolve_config(config_path, data_dir)
    target = config.storage.data_dir
    try:
        target.mkdir(parents=True, exist_ok=True)
        lock = datalock.hold(target)
    except (datalock.DataDirLocked, OSError) as exc:
        click.echo(f"floatsrv: cannot restore: {exc}", err=True)
        sys.exit(1)
    try:
        restored = archive.restore(archive_path, _files(config), config.storage.busy_timeout_ms)
    except (archive.ArchiveError, OSError) as exc:
        click.echo(f"floatsrv: restore refused: {exc}", err=True)
        sys.exit(1)
    finally:
        datalock.release(lock)
    click.echo(
        f"restored {', '.join(restored.files)} (backup of {restored.created_at}, schema {restored.schema_version}) "
        f"into {target}" + (f"; the previous files are in {restored.moved_aside}" if restored.moved_aside else "")
    )


@db_group.command("check")
@click.option("--json", "as_json", is_flag=True)
@data_options
def db_check(as_json: bool, config_path: Path | None, data_dir: Path | None) -> None:
    """Check the database read-only (SQLite integrity, foreign keys, counters against their events,
    schema version). Exit 0 when healthy, 1 with one line per problem."""
    import asyncio

    config = resolve_config(config_path, data_dir)
    postgresql = config.storage.postgresql if config.storage.backend == "postgresql" else None
    if postgresql is not None:
        from floatsrv.db import pg_migrate
        from floatsrv.db.pgconn import redact

        where = redact(postgresql.dsn.get_secret_value())
        version, problems = pg_migrate.check(postgresql.dsn.get_secret_value(), pg_password(config))
    else:
        where = str(config.db_path)
        if not config.db_path.exists():
            click.echo(f"floatsrv: no database at {config.db_path}", err=True)
            sys.exit(1)
        version, problems = asyncio.run(health.check_database(config.db_path, config.storage.busy_timeout_ms))
    if as_json:
        click.echo(json.dumps({"path": where, "schema_version": version, "problems": problems}, indent=2))
    elif problems:
        for problem in problems:
            click.echo(f"floatsrv: {problem}", err=True)
    else:
        click.echo(f"{where}: ok (schema {version})")
    sys.exit(1 if problems else 0)


@db_group.command("migrate")
@click.option("--to", "target", required=True, metavar="DSN", help="postgresql://user@host:port/database (empty).")
@data_options
def db_migrate(target: str, config_path: Path | None, data_dir: Path | None) -> None:
    """Copy a stopped server's SQLite database and keys into an empty PostgreSQL database, and verify it.

    Everything is copied (licenses and license files, seats, counters, usage events, the sync outbox, users,
    tokens, audit) and then counted and summed on both sides; the keys become the site's shared keys. The
    password: in the DSN, or from storage.postgresql.password_file, PGPASSWORD or ~/.pgpass. Refused while a
    server runs on the data directory. Then set `storage.backend: postgresql` (docs/high-availability.md)."""
    import time

    from floatsrv.db import pg_copy
    from floatsrv.db.pgconn import redact

    config = resolve_config(config_path, data_dir)
    if not target.startswith(("postgresql://", "postgres://")):
        click.echo("floatsrv: --to must be a URL: postgresql://user@host:port/database", err=True)
        sys.exit(2)
    if not config.db_path.exists():
        click.echo(f"floatsrv: no database at {config.db_path}", err=True)
        sys.exit(1)
    try:
        lock = datalock.hold(config.storage.data_dir)
    except (datalock.DataDirLocked, OSError) as exc:
        click.echo(f"floatsrv: cannot copy: {exc} (stop the server first)", err=True)
        sys.exit(1)
    try:
        report = pg_copy.copy(
            config.db_path,
            target,
            pg_password(config),
            config.token_key_path,
            config.signing_key_path,
            time.time_ns() // 1000,
        )
    except pg_copy.CopyError as exc:
        click.echo(f"floatsrv: copy refused: {exc}", err=True)
        sys.exit(1)
    finally:
        datalock.release(lock)
    rows = sum(report.tables.values())
    click.echo(f"copied {rows} rows of {len(report.tables)} tables from {config.db_path} to {redact(target)}; verified")
    for name, total in sorted(report.totals.items()):
        click.echo(f"  {name}: {total} (equal on both)")
