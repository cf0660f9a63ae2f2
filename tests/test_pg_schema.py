"""The PostgreSQL schema is the SQLite schema: same tables, columns (order, nullability), indexes, refusals.

Both are built by the real migration code (db.migrate on a SQLite file, db.pg_migrate on a fresh PostgreSQL
database) and compared from each engine's own catalogue, so a migration written for one dialect only fails.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from floatsrv.db import migrate, pg_migrate
from floatsrv.db.pgconn import PgConnection

# PostgreSQL only, on purpose: SQLite keeps these facts in its header (PRAGMAs) and its keys in files.
PG_ONLY = {"floatsrv_meta", "shared_keys", "login_attempts"}


def sqlite_schema(path: Path) -> tuple[dict[str, list[tuple[str, bool]]], set[str]]:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        migrate.migrate(conn, 0)
        tables = [
            row[0]
            for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
        ]
        columns = {
            table: [(row[1], bool(row[3]) or bool(row[5])) for row in conn.execute(f"PRAGMA table_info({table})")]
            for table in tables
        }
        indexes = {
            row[0]
            for row in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'index' AND name NOT LIKE 'sqlite_autoindex%'"
            )
        }
        return columns, indexes
    finally:
        conn.close()


def pg_schema(conn: PgConnection) -> tuple[dict[str, list[tuple[str, bool]]], set[str]]:
    columns: dict[str, list[tuple[str, bool]]] = {}
    for table, column, nullable in conn.execute(
        "SELECT table_name, column_name, is_nullable FROM information_schema.columns"
        " WHERE table_schema = current_schema() ORDER BY table_name, ordinal_position"
    ):
        columns.setdefault(table, []).append((column, nullable == "NO"))
    constraint_indexes = {
        row[0] for row in conn.execute("SELECT conname FROM pg_constraint WHERE contype IN ('p', 'u')")
    }
    indexes = {
        row[0]
        for row in conn.execute("SELECT indexname, tablename FROM pg_indexes WHERE schemaname = current_schema()")
        if row[0] not in constraint_indexes and row[1] not in PG_ONLY
    }
    return {t: c for t, c in columns.items() if t not in PG_ONLY}, indexes


@pytest.fixture
def pg(pg_dsn: str) -> Any:
    conn = PgConnection(pg_dsn)
    try:
        yield conn
    finally:
        conn.close()


def test_versions_match() -> None:
    assert pg_migrate.available()[-1].version == migrate.latest_version()


def test_same_tables_columns_and_indexes(tmp_path: Path, pg: PgConnection) -> None:
    assert pg_migrate.migrate(pg, 0) == [migrate.latest_version()]
    lite_columns, lite_indexes = sqlite_schema(tmp_path / "x.db")
    pg_columns, pg_indexes = pg_schema(pg)
    assert sorted(pg_columns) == sorted(lite_columns)
    for table, columns in lite_columns.items():
        assert pg_columns[table] == columns, table
    assert pg_indexes == lite_indexes
    assert pg_migrate.migrate(pg, 0) == []  # idempotent: a second node starting finds nothing to do


def test_a_foreign_database_is_refused(pg: PgConnection) -> None:
    pg.script("CREATE TABLE payroll (id BIGINT)")
    with pytest.raises(migrate.SchemaError, match="not a floatsrv database"):
        pg_migrate.migrate(pg, 0)
    tables = {row[0] for row in pg.execute("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")}
    assert tables == {"payroll"}


def test_a_newer_database_is_refused(pg: PgConnection) -> None:
    pg_migrate.migrate(pg, 0)
    pg.execute("UPDATE floatsrv_meta SET value = '999' WHERE key = 'schema_version'")
    with pytest.raises(migrate.SchemaError, match="newer"):
        pg_migrate.migrate(pg, 0)
