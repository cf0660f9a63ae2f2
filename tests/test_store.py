"""The store on a real SQLite file: group commit isolation, storage faults, refusing foreign databases."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from floatsrv.clock import ManualClock
from floatsrv.db.migrate import APPLICATION_ID, SchemaError, latest_version, statements
from floatsrv.db.sqlite_store import SqliteStore
from floatsrv.db.store import Store, StoreOptions
from floatsrv.errors import SeatsExhausted, StorageUnavailable


async def open_store(path: Path, **options: object) -> Store:
    store = SqliteStore(path, ManualClock(), StoreOptions(**options))  # type: ignore[arg-type]
    await store.open()
    await store.write(lambda c: c.execute("CREATE TABLE IF NOT EXISTS scratch (k TEXT PRIMARY KEY, v BLOB)"))
    return store


def put(key: str, value: bytes = b"x") -> Callable[[sqlite3.Connection], str]:
    def unit(conn: sqlite3.Connection) -> str:
        conn.execute("INSERT INTO scratch (k, v) VALUES (?, ?)", (key, value))
        return key

    return unit


def put_then_fail(key: str) -> Callable[[sqlite3.Connection], None]:
    def unit(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO scratch (k, v) VALUES (?, 'partial')", (key,))
        raise SeatsExhausted("domain refusal after a partial write")

    return unit


async def keys(store: Store) -> list[str]:
    return await store.read(lambda c: [r[0] for r in c.execute("SELECT k FROM scratch ORDER BY k")])


async def test_one_units_error_never_undoes_anothers(tmp_path: Path) -> None:
    store = await open_store(tmp_path / "db.sqlite")
    try:
        units = [put(f"k{i:03d}") if i % 7 else put_then_fail(f"bad{i:03d}") for i in range(100)]
        results = await asyncio.gather(*(store.write(u) for u in units), return_exceptions=True)
        failures = [r for r in results if isinstance(r, BaseException)]
        assert len(failures) == 15 and all(isinstance(f, SeatsExhausted) for f in failures)
        stored = await keys(store)
        assert stored == sorted(f"k{i:03d}" for i in range(100) if i % 7)
        assert not any(k.startswith("bad") for k in stored)
    finally:
        await store.close()


@pytest.mark.parametrize(("max_batch", "most_commits"), [(256, 50), (1, 200)])
async def test_concurrent_writes_share_commits(tmp_path: Path, max_batch: int, most_commits: int) -> None:
    store = await open_store(tmp_path / "db.sqlite", max_batch=max_batch)
    try:
        before = store.stats.commits
        await asyncio.gather(*(store.write(put(f"g{i}")) for i in range(200)))
        assert len(await keys(store)) == 200
        commits = store.stats.commits - before
        assert commits <= most_commits
        if max_batch == 1:
            assert commits == 200 and store.stats.largest_batch == 1
    finally:
        await store.close()


async def test_storage_fault_fails_the_whole_batch_and_recovers(tmp_path: Path) -> None:
    store = await open_store(tmp_path / "db.sqlite")
    try:
        await store.write(put("before"))

        def cap(conn: sqlite3.Connection) -> None:
            pages = conn.execute("PRAGMA page_count").fetchone()[0]
            conn.execute(f"PRAGMA max_page_count = {pages + 1}")

        await store.write(cap)
        big = b"z" * 200_000  # needs many more pages than allowed: SQLITE_FULL, a real storage fault
        results = await asyncio.gather(
            store.write(put("small-1")),
            store.write(put("huge", big)),
            store.write(put("small-2")),
            return_exceptions=True,
        )
        assert all(isinstance(r, StorageUnavailable) for r in results), results
        assert await keys(store) == ["before"]  # nothing of the failed batch exists
        await store.write(lambda c: c.execute("PRAGMA max_page_count = 1073741823"))
        await store.write(put("after"))
        assert await keys(store) == ["after", "before"]
    finally:
        await store.close()


async def test_foreign_database_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE invoices (id INTEGER)")
    before = path.read_bytes()
    store = SqliteStore(path, ManualClock())
    with pytest.raises(SchemaError, match="not a floatsrv database"):
        await store.open()
    assert path.read_bytes() == before


async def test_corrupt_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "junk.db"
    path.write_bytes(b"this is not sqlite at all" * 100)
    with pytest.raises(SchemaError, match="not a usable SQLite database"):
        await SqliteStore(path, ManualClock()).open()
    assert path.read_bytes() == b"this is not sqlite at all" * 100


async def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    store = await open_store(path)
    await store.close()
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {latest_version() + 1}")
    with pytest.raises(SchemaError, match="newer than this floatsrv"):
        await SqliteStore(path, ManualClock()).open()


async def test_reopening_applies_nothing_and_keeps_data(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    store = await open_store(path)
    assert store.applied_migrations == list(range(1, latest_version() + 1))
    await store.write(put("kept"))
    await store.close()
    store = await open_store(path)
    try:
        assert store.applied_migrations == []
        assert await keys(store) == ["kept"]
        app_id = await store.read(lambda c: c.execute("PRAGMA application_id").fetchone()[0])
        assert app_id == APPLICATION_ID
    finally:
        await store.close()


async def test_closed_store_refuses_work(tmp_path: Path) -> None:
    store = await open_store(tmp_path / "db.sqlite")
    await store.close()
    await store.close()  # idempotent
    with pytest.raises(StorageUnavailable):
        await store.write(put("late"))


def test_statement_splitter_keeps_trigger_bodies() -> None:
    sql = "CREATE TABLE t (a);\n-- comment\nCREATE TRIGGER x AFTER INSERT ON t BEGIN\n SELECT 1;\n SELECT 2;\nEND;\n"
    assert len(statements(sql)) == 2
