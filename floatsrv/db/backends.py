"""Which store a configuration asks for: `storage.backend` (sqlite, the default, or postgresql).

The PostgreSQL password is looked for, in order, in the DSN itself, in `storage.postgresql.password_file`,
and then by asyncpg in `PGPASSWORD` and `~/.pgpass` (libpq's rules). It is only ever handed to asyncpg.
"""

from __future__ import annotations

from floatsrv.clock import Clock
from floatsrv.config import Config, ConfigError
from floatsrv.db.store import Store, StoreOptions


def password_of(config: Config) -> str | None:
    """The password from `password_file` (its first line), or None to let asyncpg look for it."""
    settings = config.storage.postgresql
    if settings is None or settings.password_file is None:
        return None
    try:
        text = settings.password_file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"storage.postgresql.password_file: cannot read it ({exc.strerror})"]) from exc
    lines = text.splitlines()
    if not lines or not lines[0]:
        raise ConfigError(["storage.postgresql.password_file: the file is empty"])
    return lines[0]


def options_of(config: Config) -> StoreOptions:
    return StoreOptions(
        synchronous=config.storage.synchronous,
        busy_timeout_ms=config.storage.busy_timeout_ms,
        max_batch=config.storage.max_batch_units,
    )


def make_store(config: Config, clock: Clock, options: StoreOptions | None = None) -> Store:
    """The configured store, not yet opened."""
    options = options or options_of(config)
    settings = config.storage.postgresql
    if config.storage.backend == "postgresql" and settings is not None:
        from floatsrv.db.pg_store import PgStore  # asyncpg only where PostgreSQL is used

        return PgStore(
            settings.dsn.get_secret_value(),
            clock,
            options,
            password=password_of(config),
            pool_size=settings.pool_size,
        )
    from floatsrv.db.sqlite_store import SqliteStore

    return SqliteStore(config.db_path, clock, options)
