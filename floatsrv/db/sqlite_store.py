"""The SQLite backend (the default): one database file, one writer connection, a reader thread.

Where things run: the units execute on the event-loop thread, where they cannot be interleaved with
anything (they are synchronous) and pay no thread hand-off or GIL ping-pong per statement; the only calls
that may block, `BEGIN IMMEDIATE` (waiting for another process's lock) and `COMMIT` (fsync), run in a worker
thread, during which new units wait in the queue for the next batch. This is why floatsrv uses the stdlib
sqlite3 module rather than aiosqlite: aiosqlite turns every statement into a separate hop through another
thread, so a transaction could not be a single uninterrupted run of a unit. When units are already queued at
a COMMIT, the same trip to the thread begins their transaction (without waiting for another process's lock).

The writer's memo is dropped whenever `PRAGMA data_version` shows another connection committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from floatsrv.clock import Clock
from floatsrv.db import migrate
from floatsrv.db.memo import Memo, WriterConnection
from floatsrv.db.store import (
    Store,
    StoreOptions,
    T,
    Unit,
    _unavailable,
    is_storage_fault,
    storage_faults,
)
from floatsrv.errors import StorageUnavailable
from floatsrv.times import to_us


def connect(
    path: Path,
    options: StoreOptions,
    *,
    read_only: bool = False,
    any_thread: bool = False,
    factory: type[sqlite3.Connection] = sqlite3.Connection,
) -> sqlite3.Connection:
    """Open a connection with our pragmas. isolation_level=None: Python never BEGINs on its own."""
    conn = sqlite3.connect(
        path,
        isolation_level=None,
        timeout=options.busy_timeout_ms / 1000,
        check_same_thread=not any_thread,
        factory=factory,
    )
    conn.execute(f"PRAGMA busy_timeout = {int(options.busy_timeout_ms)}")
    conn.execute("PRAGMA foreign_keys = ON")
    if read_only:
        conn.execute("PRAGMA query_only = ON")
    return conn


def _open_writer(path: Path, options: StoreOptions, applied_at_us: int) -> tuple[WriterConnection, list[int]]:
    """Connect, refuse foreign/newer files, switch to WAL, migrate. Runs in a worker thread."""
    if not path.exists():
        # Created private whatever the umask: it holds password hashes and usage. SQLite gives the -wal and
        # -shm files the database file's permissions.
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    # any_thread: the connection is used by the loop thread and by worker threads, never at the same time.
    conn = connect(path, options, any_thread=True, factory=WriterConnection)
    assert isinstance(conn, WriterConnection)
    conn.memo = Memo()
    try:
        migrate.check_identity(conn, str(path))
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise migrate.SchemaError(f"cannot switch {path} to WAL mode (got {mode})")
        conn.execute(f"PRAGMA synchronous = {options.synchronous.upper()}")
        applied = migrate.migrate(conn, applied_at_us)
    except BaseException:
        conn.close()
        raise
    return conn, applied


def _begin(conn: sqlite3.Connection) -> int:
    """Take the write lock; then tell whether another connection has committed since (data_version)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        return int(conn.execute("PRAGMA data_version").fetchone()[0])
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
        raise


class _Reader(threading.Thread):
    """One thread with a read-only connection; each query function runs in one read transaction."""

    def __init__(self, path: Path, options: StoreOptions, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(name="floatsrv-reader", daemon=True)
        self.path, self.options, self.loop = path, options, loop
        self.jobs: queue.SimpleQueue[tuple[Callable[[sqlite3.Connection], Any], asyncio.Future[Any]] | None] = (
            queue.SimpleQueue()
        )
        self.ready: asyncio.Future[None] = loop.create_future()

    def _post(self, future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
        def settle() -> None:
            if future.done():
                return
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)

        with contextlib.suppress(RuntimeError):  # the loop closed during shutdown: nobody is waiting
            self.loop.call_soon_threadsafe(settle)

    def run(self) -> None:
        try:
            conn = connect(self.path, self.options, read_only=True)
        except BaseException as exc:  # noqa: BLE001 -- handed to open(), which raises it in the caller
            self._post(self.ready, None, exc)
            return
        self._post(self.ready, None, None)
        try:
            while (job := self.jobs.get()) is not None:
                unit, future = job
                try:
                    conn.execute("BEGIN")  # one snapshot for all the function's SELECTs
                    try:
                        result = unit(conn)
                    finally:
                        conn.execute("COMMIT")
                except BaseException as exc:  # noqa: BLE001 -- delivered to the awaiting caller
                    self._post(future, None, _unavailable(exc) if is_storage_fault(exc) else exc)
                else:
                    self._post(future, result, None)
        finally:
            conn.close()


class SqliteStore(Store):
    """The store on one SQLite file (see the module docstring)."""

    backend = "sqlite"

    def __init__(self, path: Path, clock: Clock, options: StoreOptions | None = None) -> None:
        super().__init__(clock, options)
        self.path = path
        self._conn: WriterConnection | None = None
        self._data_version = -1  # another connection's commit moves it: the memo is then dropped
        self._reader: _Reader | None = None
        self._peek: sqlite3.Connection | None = None

    @property
    def where(self) -> str:
        return str(self.path)

    async def open(self) -> None:
        """Create or open the database, refuse foreign/newer files, apply migrations, start the reader."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn, self.applied_migrations = await self._off_loop(
            _open_writer, self.path, self.options, to_us(self.clock.now())
        )
        self._loop = asyncio.get_running_loop()
        reader = _Reader(self.path, self.options, self._loop)
        reader.start()
        await reader.ready
        self._reader = reader
        self._opened = True

    def peek(self, unit: Unit[T]) -> T:
        """Run a *tiny* indexed read right here, on a connection owned by the calling (event-loop) thread.

        For the per-request credential checks only: a round trip to the reader thread would cost more
        than the query itself. WAL readers never wait for the writer, so this does not block the loop.
        """
        if self._closed:
            raise StorageUnavailable("the store is closed")
        if self._peek is None:
            self._peek = connect(self.path, self.options, read_only=True)
        with storage_faults():
            return unit(self._peek)

    def schema_version(self) -> int:
        return int(self.peek(lambda conn: conn.execute("PRAGMA user_version").fetchone()[0]))

    async def read(self, unit: Unit[T]) -> T:
        """Run `unit(conn)` on the reader (one consistent snapshot of committed data)."""
        if self._reader is None or self._closed:
            raise StorageUnavailable("the store is closed")
        future: asyncio.Future[T] = self._loop.create_future()
        self._reader.jobs.put((unit, future))
        return await future

    async def _flush(self) -> None:
        """Apply and commit batches until the queue is empty."""
        assert self._conn is not None
        conn = self._conn
        version: int | None = None  # set while a transaction is open: the last commit began the next one
        while self._queue:
            if version is None:
                try:
                    version = await self._off_loop(_begin, conn)  # may wait for another process
                except sqlite3.Error as exc:
                    self._note_fault(exc)
                    self._fail(self._take(), _unavailable(exc))
                    continue
            if version != self._data_version:
                conn.memo.clear()
                self._data_version = version
            conn.memo.bounded()
            batch = self._take()
            outcomes, fault = self._apply(conn, batch)
            version = None
            if fault is None:
                try:
                    version = await self._off_loop(self._commit, conn)  # the fsync happens there, off the loop
                except sqlite3.Error as exc:
                    fault = exc
            if fault is not None:
                conn.memo.clear()  # it holds the batch's changes, which are gone
                with contextlib.suppress(sqlite3.Error):  # SQLite may have rolled back already
                    await self._off_loop(conn.execute, "ROLLBACK")
            self._settle(batch, outcomes, fault)

    def _commit(self, conn: sqlite3.Connection) -> int | None:
        """COMMIT (runs in a worker thread). Only an error of the COMMIT itself fails the batch.

        When more units are already queued, their transaction is begun in the same trip to the worker
        thread, saving a hand-off per batch; that begin never waits for another process's lock (the
        batch's answers would wait with it), so with the lock held elsewhere the next batch begins on its
        own, waiting as usual. Returns the new transaction's data_version, or None when none was begun.
        A begun transaction is always used: only `_flush` takes units off the queue, so it is not empty
        when `_flush` looks again.
        """
        conn.execute("COMMIT")
        if not self._queue:
            return None
        try:
            conn.execute("PRAGMA busy_timeout = 0")
            try:
                return _begin(conn)
            finally:
                conn.execute(f"PRAGMA busy_timeout = {int(self.options.busy_timeout_ms)}")
        except sqlite3.Error:
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            return None

    async def close(self) -> None:
        """Finish queued writes, then stop. Safe to call twice."""
        if not await self._finish_writes():
            return
        if self._peek is not None:
            self._peek.close()
        if self._reader is not None:
            self._reader.jobs.put(None)
            await self._off_loop(self._reader.join)
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await self._off_loop(conn.close)
        self._executor.shutdown(wait=False)
