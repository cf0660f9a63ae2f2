"""The one owner of the SQLite database: a writer thread for every change, a reader thread for queries.

Write units are plain synchronous functions `unit(conn) -> result`. The writer thread takes whatever units
are queued (group commit), opens ONE transaction with `BEGIN IMMEDIATE`, runs each unit inside its own
SAVEPOINT (a unit that raises rolls back only its own changes and gets its exception back), commits once,
and only then resolves the callers' futures: nothing is acknowledged before it is durable. A fault of the
storage itself (disk full, read-only file, I/O error, lock timeout) rolls back the whole batch and every
caller gets `StorageUnavailable`; the next batch simply tries again, so the server recovers by itself.

Why our own threads rather than aiosqlite: aiosqlite turns every statement into a separate hop through the
event loop, so a transaction would interleave with other coroutines and could not run whole units under
savepoints in one commit. A unit that runs start-to-finish on the connection's own thread cannot be
interleaved by anything, which is exactly the guarantee the seat limits and counters need.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

from floatsrv.clock import Clock
from floatsrv.db import migrate
from floatsrv.errors import StorageUnavailable
from floatsrv.times import to_us

T = TypeVar("T")
Unit = Callable[[sqlite3.Connection], T]

# Error names (Python's sqlite3 reports them) that mean "the storage failed", not "the unit is wrong".
_STORAGE_FAULTS = (
    "SQLITE_FULL",
    "SQLITE_IOERR",
    "SQLITE_READONLY",
    "SQLITE_CANTOPEN",
    "SQLITE_CORRUPT",
    "SQLITE_NOTADB",
    "SQLITE_BUSY",
    "SQLITE_LOCKED",
    "SQLITE_PROTOCOL",
    "SQLITE_PERM",
    "SQLITE_NOMEM",
)


def is_storage_fault(exc: BaseException) -> bool:
    name = getattr(exc, "sqlite_errorname", None) or ""
    return isinstance(exc, sqlite3.DatabaseError) and name.startswith(_STORAGE_FAULTS)


@dataclass(slots=True)
class _Job:
    unit: Callable[[sqlite3.Connection], Any]
    future: asyncio.Future[Any]


@dataclass(slots=True)
class StoreStats:
    """Counters kept by the writer thread (read without locking: they are only ever increased)."""

    commits: int = 0
    units: int = 0
    failed_batches: int = 0
    largest_batch: int = 0


@dataclass(frozen=True, slots=True)
class StoreOptions:
    synchronous: Literal["full", "normal"] = "full"
    busy_timeout_ms: int = 5000
    # Most units one transaction may carry; 1 gives one commit per request (the naive baseline).
    max_batch: int = 256


def connect(path: Path, options: StoreOptions, *, read_only: bool = False) -> sqlite3.Connection:
    """Open a connection with our pragmas. isolation_level=None: Python never BEGINs on its own."""
    conn = sqlite3.connect(path, isolation_level=None, timeout=options.busy_timeout_ms / 1000)
    conn.execute(f"PRAGMA busy_timeout = {int(options.busy_timeout_ms)}")
    conn.execute("PRAGMA foreign_keys = ON")
    if read_only:
        conn.execute("PRAGMA query_only = ON")
    return conn


def _deliver(outcomes: list[tuple[asyncio.Future[Any], Any, BaseException | None]]) -> None:
    for future, result, error in outcomes:
        if future.done():  # the caller went away (cancelled); the change stands regardless
            continue
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)


class _Worker(threading.Thread):
    def __init__(self, name: str, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(name=name, daemon=True)
        self.loop = loop
        self.jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self.ready: asyncio.Future[None] = loop.create_future()

    def _signal_ready(self, error: BaseException | None) -> None:
        def settle() -> None:
            if not self.ready.done():
                if error is None:
                    self.ready.set_result(None)
                else:
                    self.ready.set_exception(error)

        self.loop.call_soon_threadsafe(settle)

    def _send(self, outcomes: list[tuple[asyncio.Future[Any], Any, BaseException | None]]) -> None:
        if outcomes:
            # RuntimeError: the loop closed during shutdown, so nobody is waiting any more.
            with contextlib.suppress(RuntimeError):
                self.loop.call_soon_threadsafe(_deliver, outcomes)


class _Writer(_Worker):
    def __init__(self, path: Path, options: StoreOptions, clock: Clock, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__("floatsrv-writer", loop)
        self.path = path
        self.options = options
        self.clock = clock
        self.applied: list[int] = []
        self.stats = StoreStats()

    def run(self) -> None:
        try:
            conn = connect(self.path, self.options)
            try:
                migrate.check_identity(conn, str(self.path))
                mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                if str(mode).lower() != "wal":
                    raise migrate.SchemaError(f"cannot switch {self.path} to WAL mode (got {mode})")
                conn.execute(f"PRAGMA synchronous = {self.options.synchronous.upper()}")
                self.applied = migrate.migrate(conn, to_us(self.clock.now()))
            except BaseException:
                conn.close()
                raise
        except BaseException as exc:  # noqa: BLE001 -- handed to open(), which raises it in the caller
            self._signal_ready(exc)
            return
        self._signal_ready(None)
        try:
            self._serve(conn)
        finally:
            conn.close()

    def _serve(self, conn: sqlite3.Connection) -> None:
        while True:
            job = self.jobs.get()
            if job is None:
                return
            batch = [job]
            stop = False
            while len(batch) < self.options.max_batch:
                try:
                    more = self.jobs.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stop = True
                    break
                batch.append(more)
            self._send(self._run_batch(conn, batch))
            if stop:
                return

    def _run_batch(
        self, conn: sqlite3.Connection, batch: list[_Job]
    ) -> list[tuple[asyncio.Future[Any], Any, BaseException | None]]:
        outcomes: list[tuple[asyncio.Future[Any], Any, BaseException | None]] = []
        fault: BaseException | None = None
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            return [(job.future, None, _unavailable(exc)) for job in batch]
        for job in batch:
            try:
                conn.execute("SAVEPOINT unit")
            except sqlite3.Error as exc:
                fault = exc
                break
            try:
                result = job.unit(conn)
            except BaseException as exc:  # noqa: BLE001 -- delivered to the awaiting caller
                if is_storage_fault(exc):
                    fault = exc
                    break
                try:
                    conn.execute("ROLLBACK TO unit")
                    conn.execute("RELEASE unit")
                except sqlite3.Error as rollback_exc:
                    fault = rollback_exc
                    break
                outcomes.append((job.future, None, exc))
            else:
                try:
                    conn.execute("RELEASE unit")
                except sqlite3.Error as exc:
                    fault = exc
                    break
                outcomes.append((job.future, result, None))
        if fault is None:
            try:
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                fault = exc
        if fault is not None:
            with contextlib.suppress(sqlite3.Error):  # SQLite may have rolled back already
                conn.execute("ROLLBACK")
            # Every unit of the batch shares its fate: none of their changes exist.
            self.stats.failed_batches += 1
            error = _unavailable(fault)
            return [(job.future, None, error) for job in batch]
        self.stats.commits += 1
        self.stats.units += len(batch)
        self.stats.largest_batch = max(self.stats.largest_batch, len(batch))
        return outcomes


class _Reader(_Worker):
    def __init__(self, path: Path, options: StoreOptions, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__("floatsrv-reader", loop)
        self.path = path
        self.options = options

    def run(self) -> None:
        try:
            conn = connect(self.path, self.options, read_only=True)
        except BaseException as exc:  # noqa: BLE001 -- handed to open()
            self._signal_ready(exc)
            return
        self._signal_ready(None)
        try:
            while True:
                job = self.jobs.get()
                if job is None:
                    return
                self._send([self._run_one(conn, job)])
        finally:
            conn.close()

    def _run_one(self, conn: sqlite3.Connection, job: _Job) -> tuple[asyncio.Future[Any], Any, BaseException | None]:
        # One read transaction per query function: all its SELECTs see the same snapshot.
        try:
            conn.execute("BEGIN")
            try:
                return (job.future, job.unit(conn), None)
            finally:
                conn.execute("COMMIT")
        except BaseException as exc:  # noqa: BLE001 -- delivered to the awaiting caller
            return (job.future, None, _unavailable(exc) if is_storage_fault(exc) else exc)


def _unavailable(exc: BaseException) -> StorageUnavailable:
    error = StorageUnavailable(reason=getattr(exc, "sqlite_errorname", None) or type(exc).__name__)
    error.__cause__ = exc
    return error


class Store:
    """Async facade over the writer and reader threads. Open with `await open()`, always `await close()`."""

    def __init__(self, path: Path, clock: Clock, options: StoreOptions | None = None) -> None:
        self.path = path
        self.clock = clock
        self.options = options or StoreOptions()
        self._writer: _Writer | None = None
        self._reader: _Reader | None = None
        self._peek: sqlite3.Connection | None = None
        self._closed = False

    @property
    def stats(self) -> StoreStats:
        return self._writer.stats if self._writer else StoreStats()

    @property
    def pending_writes(self) -> int:
        """Write units queued and not yet taken by the writer (approximate: for metrics and tests)."""
        return self._writer.jobs.qsize() if self._writer else 0

    @property
    def applied_migrations(self) -> list[int]:
        return self._writer.applied if self._writer else []

    async def open(self) -> None:
        """Create or open the database, refuse foreign/newer files, apply migrations, start both threads."""
        loop = asyncio.get_running_loop()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        writer = _Writer(self.path, self.options, self.clock, loop)
        writer.start()
        try:
            await writer.ready
        except BaseException:
            await asyncio.to_thread(writer.join)
            raise
        self._writer = writer
        reader = _Reader(self.path, self.options, loop)
        reader.start()
        await reader.ready
        self._reader = reader

    def peek(self, unit: Unit[T]) -> T:
        """Run a *tiny* indexed read right here, on a connection owned by the calling (event-loop) thread.

        For the per-request credential checks only: a round trip to the reader thread would cost more
        than the query itself. WAL readers never wait for the writer, so this does not block the loop.
        """
        if self._closed:
            raise StorageUnavailable("the store is closed")
        if self._peek is None:
            self._peek = connect(self.path, self.options, read_only=True)
        try:
            return unit(self._peek)
        except sqlite3.Error as exc:
            if is_storage_fault(exc):
                raise _unavailable(exc) from exc
            raise

    async def write(self, unit: Unit[T]) -> T:
        """Run `unit(conn)` in the writer's transaction; return once it is committed.

        Raises whatever the unit raised (its changes rolled back), or StorageUnavailable.
        """
        return await self._submit(self._writer, unit)

    async def read(self, unit: Unit[T]) -> T:
        """Run `unit(conn)` on the reader (one consistent snapshot of committed data)."""
        return await self._submit(self._reader, unit)

    async def _submit(self, worker: _Worker | None, unit: Unit[T]) -> T:
        if worker is None or self._closed:
            raise StorageUnavailable("the store is closed")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        worker.jobs.put(_Job(unit, future))
        return await future

    async def close(self) -> None:
        """Finish queued units, then stop both threads. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        if self._peek is not None:
            self._peek.close()
        for worker in (self._reader, self._writer):
            if worker is not None:
                worker.jobs.put(None)
                await asyncio.to_thread(worker.join)
