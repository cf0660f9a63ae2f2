"""The tests' throwaway PostgreSQL (tests/pgserver.py, tests/pgfixture.py): a fresh database per test that
takes tables and rows, databases that share nothing, and one dropped with a connection still open."""

from __future__ import annotations

import asyncpg
import pytest

from tests.pgfixture import new_database
from tests.pgserver import PgServer


async def tables(dsn: str) -> set[str]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        return {row["tablename"] for row in rows}
    finally:
        await conn.close()


async def test_a_fresh_database_takes_a_table_and_its_rows(pg_dsn: str) -> None:
    assert await tables(pg_dsn) == set()
    conn = await asyncpg.connect(pg_dsn)
    try:
        await conn.execute("CREATE TABLE seats (id BIGINT PRIMARY KEY, holder TEXT NOT NULL)")
        await conn.executemany("INSERT INTO seats VALUES ($1, $2)", [(1, "ann"), (2, "bob")])
        rows = await conn.fetch("SELECT id, holder FROM seats ORDER BY id")
        assert [tuple(row) for row in rows] == [(1, "ann"), (2, "bob")]
        assert await conn.fetchval("SHOW server_encoding") == "UTF8"
    finally:
        await conn.close()
    assert await tables(pg_dsn) == {"seats"}


async def test_two_databases_share_nothing(pg_server: PgServer) -> None:
    # create_database is synchronous, and fine inside a running event loop (as here).
    first, second = new_database(pg_server), new_database(pg_server)
    assert first != second
    conn = await asyncpg.connect(first)
    try:
        await conn.execute("CREATE TABLE only_here (x INT)")
    finally:
        await conn.close()
    assert await tables(first) == {"only_here"}
    assert await tables(second) == set()


async def test_a_database_is_dropped_even_while_connected(pg_server: PgServer) -> None:
    dsn = pg_server.create_database("dropped_while_connected")
    conn = await asyncpg.connect(dsn)
    try:
        pg_server.drop_database("dropped_while_connected")
        with pytest.raises((asyncpg.PostgresError, asyncpg.exceptions.InterfaceError, ConnectionError)):
            await conn.fetchval("SELECT 1")
    finally:
        await conn.close()
    with pytest.raises(asyncpg.InvalidCatalogNameError):
        await asyncpg.connect(dsn)
