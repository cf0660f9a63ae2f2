"""The one owner of the SQLite database: group-committed writes, a reader thread for queries.

Write units are plain synchronous functions `unit(conn) -> result`. Units queued while a commit is in
flight are applied together in the next transaction (group commit): `BEGIN IMMEDIATE`, then each unit
inside its own SAVEPOINT (a unit that raises rolls back only its own changes and gets its exception back),
then one COMMIT, and only then are the callers' futures resolved: nothing is acknowledged before it is
durable. A fault of the storage itself (disk full, read-only file, I/O error, lock timeout) rolls back the
whole batch and every caller gets `StorageUnavailable`; the next batch simply tries again, so the server
recovers by itself.

Where things run: the units execute on the event-loop thread, where they cannot be interleaved with
anything (they are synchronous) and pay no thread hand-off or GIL ping-pong per statement; the only calls
that may block, `BEGIN IMMEDIATE` (waiting for another process's lock) and `COMMIT` (fsync), run in a worker
thread, during which new units wait in the queue for the next batch. This is why floatsrv uses the stdlib
sqlite3 module rather than aiosqlite: aiosqlite turns every statement into a separate hop through another
thread, so a transaction could not be a single uninterrupted run of a unit. When units are already queued at
a COMMIT, the same trip to the thread begins their transaction (without waiting for another process's lock).

The writer's memo (db.memo) lets units reuse counter totals and add-ons they or earlier units read; the
store drops it on every rollback and whenever `PRAGMA data_version` shows another connection committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, Literal, NamedTuple, TypeVar

from floatsrv.clock import Clock
from floatsrv.db import migrate
from floatsrv.db.memo import Memo, WriterConnection
from floatsrv.errors import StorageFull, StorageUnavailable
from floatsrv.log import get_logger
from floatsrv.times import to_us

log = get_logger("floatsrv.store")

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


class AfterBatch(NamedTuple, Generic[T]):
    """A unit's result that wants a view of the batch's final state (e.g. a license's live counts).

    `read(conn)` runs once per `key` after every unit of the batch has run, inside the same transaction,
    and `finish(view)` turns that shared view into this unit's result. Fifty heartbeats on one license in
    one batch then cost one state read, and each answer shows exactly what the batch commits.
    """

    key: Hashable
    read: Callable[[sqlite3.Connection], Any]
    finish: Callable[[Any], T]


@dataclass(slots=True)
class StoreStats:
    """Counters and state of the write path (for health, metrics and tests)."""

    commits: int = 0
    units: int = 0
    failed_batches: int = 0
    largest_batch: int = 0
    # The storage fault the last batch hit (an SQLite error name), None once a commit succeeds again.
    fault: str | None = None
    fault_since: float | None = None  # time.time() of the first failure of the current fault
    last_commit: float | None = None  # time.time() of the last successful commit
    # Real work (not readiness probes): when a batch of it last failed, and last committed. A small probe
    # may fit where real writes do not (a nearly full disk), so readiness looks at these too.
    last_failure: float | None = None
    last_failure_reason: str | None = None
    last_real_commit: float | None = None


class Probe:
    """A write unit that only proves the database takes writes (`/readyz`): its commit is not real work."""

    __slots__ = ("unit",)

    def __init__(self, unit: Callable[[sqlite3.Connection], Any]) -> None:
        self.unit = unit

    def __call__(self, conn: sqlite3.Connection) -> Any:
        return self.unit(conn)


@dataclass(frozen=True, slots=True)
class StoreOptions:
    synchronous: Literal["full", "normal"] = "full"
    busy_timeout_ms: int = 5000
    # Most units one transaction may carry; 1 gives one commit per request (the naive baseline).
    max_batch: int = 256


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


def _unavailable(exc: BaseException) -> StorageUnavailable:
    reason = getattr(exc, "sqlite_errorname", None) or type(exc).__name__
    kind = StorageFull if reason == "SQLITE_FULL" else StorageUnavailable
    error = kind(reason=reason)
    error.__cause__ = exc
    return error


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


class Store:
    """Async facade over the database. Open with `await open()`, always `await close()`."""

    def __init__(self, path: Path, clock: Clock, options: StoreOptions | None = None) -> None:
        self.path = path
        self.clock = clock
        self.options = options or StoreOptions()
        self.stats = StoreStats()
        self.applied_migrations: list[int] = []
        self._conn: WriterConnection | None = None
        self._data_version = -1  # another connection's commit moves it: the memo is then dropped
        self._reader: _Reader | None = None
        self._peek: sqlite3.Connection | None = None
        self._queue: deque[tuple[Callable[[sqlite3.Connection], Any], asyncio.Future[Any]]] = deque()
        self._flusher: asyncio.Task[None] | None = None
        self._closed = False
        self._loop: asyncio.AbstractEventLoop  # the loop the store was opened on (set by open)
        # The writer's blocking calls (BEGIN, which may wait for another process; COMMIT, which fsyncs) run on
        # this thread of their own: nothing else (password hashing, file reads) can ever queue in front of them.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="floatsrv-db")

    def _off_loop(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        return asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    @property
    def pending_writes(self) -> int:
        """Write units queued and not yet applied (for metrics and tests)."""
        return len(self._queue)

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

    def write_then_read(self, unit: Callable[[sqlite3.Connection], AfterBatch[T]]) -> asyncio.Future[T]:
        """Like `write`, for a unit whose result is completed from the batch's final state (AfterBatch):
        the future resolves to what `AfterBatch.finish` makes of that state."""
        future: asyncio.Future[T] = self._enqueue(unit)
        return future

    def write(self, unit: Unit[T]) -> asyncio.Future[T]:
        """Queue `unit(conn)` for the next group transaction; the future resolves once that is committed.

        Resolves to whatever the unit returned, or raises what it raised (its changes rolled back) or
        StorageUnavailable. A plain function handing back the future (`await store.write(unit)`): no
        coroutine of its own to create and resume on the hottest path.
        """
        future: asyncio.Future[T] = self._enqueue(unit)
        return future

    def _enqueue(self, unit: Callable[[sqlite3.Connection], Any]) -> asyncio.Future[Any]:
        if self._conn is None or self._closed:
            raise StorageUnavailable("the store is closed")
        future: asyncio.Future[Any] = self._loop.create_future()
        self._queue.append((unit, future))
        flusher = self._flusher
        if flusher is None or flusher.done():
            self._flusher = self._loop.create_task(self._flush(), name="floatsrv-commit")
        return future

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
            real = any(not isinstance(unit, Probe) for unit, _ in batch)
            if fault is not None:
                conn.memo.clear()  # it holds the batch's changes, which are gone
                with contextlib.suppress(sqlite3.Error):  # SQLite may have rolled back already
                    await self._off_loop(conn.execute, "ROLLBACK")
                self._note_fault(fault)
                if real:
                    self.stats.last_failure = time.time()
                    self.stats.last_failure_reason = self.stats.fault
                self._fail(batch, _unavailable(fault))  # every unit shares the batch's fate
                continue
            self._note_commit()
            if real:
                self.stats.last_real_commit = self.stats.last_commit
            self.stats.commits += 1
            self.stats.units += len(batch)
            self.stats.largest_batch = max(self.stats.largest_batch, len(batch))
            for future, result, error in outcomes:
                if future.done():  # the caller went away; the change stands regardless
                    continue
                if error is not None:
                    future.set_exception(error)
                else:
                    future.set_result(result)

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

    def _note_fault(self, exc: BaseException) -> None:
        stats = self.stats
        stats.failed_batches += 1
        reason = getattr(exc, "sqlite_errorname", None) or type(exc).__name__
        if stats.fault is None:
            stats.fault_since = time.time()
            log.error("storage_failed", reason=reason, error=str(exc), path=str(self.path))
        elif stats.fault != reason:
            log.error("storage_failed", reason=reason, error=str(exc), path=str(self.path))
        stats.fault = reason

    def _note_commit(self) -> None:
        stats = self.stats
        stats.last_commit = time.time()
        if stats.fault is not None:
            log.info(
                "storage_recovered", reason=stats.fault, failed_for_s=round(time.time() - (stats.fault_since or 0), 1)
            )
            stats.fault = stats.fault_since = None

    def _take(self) -> list[tuple[Callable[[sqlite3.Connection], Any], asyncio.Future[Any]]]:
        size = min(len(self._queue), self.options.max_batch)
        return [self._queue.popleft() for _ in range(size)]

    @staticmethod
    def _fail(
        batch: list[tuple[Callable[[sqlite3.Connection], Any], asyncio.Future[Any]]], error: StorageUnavailable
    ) -> None:
        for _, future in batch:
            if not future.done():
                future.set_exception(error)

    @staticmethod
    def _apply(
        conn: WriterConnection, batch: list[tuple[Callable[[sqlite3.Connection], Any], asyncio.Future[Any]]]
    ) -> tuple[list[tuple[asyncio.Future[Any], Any, BaseException | None]], BaseException | None]:
        """Run each unit in its own savepoint. Returns the outcomes, or the storage fault that sinks them all."""
        outcomes: list[tuple[asyncio.Future[Any], Any, BaseException | None]] = []
        for unit, future in batch:
            try:
                conn.execute("SAVEPOINT unit")
                try:
                    result = unit(conn)
                except BaseException as exc:  # noqa: BLE001 -- delivered to the awaiting caller
                    if is_storage_fault(exc):
                        return outcomes, exc
                    conn.execute("ROLLBACK TO unit")
                    conn.execute("RELEASE unit")
                    conn.memo.clear()  # it may hold the unit's changes, which are gone
                    outcomes.append((future, None, exc))
                else:
                    conn.execute("RELEASE unit")
                    outcomes.append((future, result, None))
            except sqlite3.Error as exc:  # the savepoint bookkeeping itself failed: the storage is in trouble
                return outcomes, exc
        views: dict[Hashable, Any] = {}
        for index, (future, result, error) in enumerate(outcomes):
            if not isinstance(result, AfterBatch):
                continue
            try:
                if result.key not in views:
                    views[result.key] = result.read(conn)
                outcomes[index] = (future, result.finish(views[result.key]), error)
            except BaseException as exc:  # noqa: BLE001 -- a failed read fails only the units that wanted it
                if is_storage_fault(exc):
                    return outcomes, exc
                outcomes[index] = (future, None, exc)
        return outcomes, None

    async def close(self) -> None:
        """Finish queued writes, then stop. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        if self._flusher is not None:
            with contextlib.suppress(Exception):
                await self._flusher
        if self._peek is not None:
            self._peek.close()
        if self._reader is not None:
            self._reader.jobs.put(None)
            await self._off_loop(self._reader.join)
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await self._off_loop(conn.close)
        self._executor.shutdown(wait=False)
