"""The write path every storage backend shares: group commit of synchronous write units, and their outcomes.

Write units are plain synchronous functions `unit(conn) -> result`. Units queued while a commit is in
flight are applied together in the next transaction (group commit): the transaction is begun with the
database's write lock held, then each unit runs inside its own SAVEPOINT (a unit that raises rolls back only
its own changes and gets its exception back), then one COMMIT, and only then are the callers' futures
resolved: nothing is acknowledged before it is durable. A fault of the storage itself (disk full, read-only
file, I/O error, lock timeout, a lost database connection) rolls back the whole batch and every caller gets
`StorageUnavailable`; the next batch simply tries again, so the server recovers by itself.

`Store` is that shared part; `db.sqlite_store.SqliteStore` (the default: one file, one machine) and
`db.pg_store.PgStore` (PostgreSQL: several nodes, one database) are the backends, each saying where its
units run and how its write lock is taken. `open_store` picks one from the configuration.

The writer's memo (db.memo) lets units reuse counter totals and add-ons they or earlier units read; a
backend drops it on every rollback and whenever another connection (or node) may have committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections import deque
from collections.abc import Callable, Hashable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Generic, Literal, NamedTuple, TypeVar

from floatsrv.clock import Clock
from floatsrv.errors import StorageFull, StorageUnavailable
from floatsrv.log import get_logger

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
    "PG_",  # db.pgconn.PgFault: PostgreSQL unreachable, shut down, read-only, full
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


def _unavailable(exc: BaseException) -> StorageUnavailable:
    reason = getattr(exc, "sqlite_errorname", None) or type(exc).__name__
    kind = StorageFull if reason in ("SQLITE_FULL", "PG_DISK_FULL") else StorageUnavailable
    error = kind(reason=reason)
    error.__cause__ = exc
    return error


@contextlib.contextmanager
def storage_faults() -> Iterator[None]:
    """Around a read: a storage fault raised inside (`is_storage_fault`) becomes StorageUnavailable (or
    StorageFull); any other error passes unchanged."""
    try:
        yield
    except sqlite3.Error as exc:
        if is_storage_fault(exc):
            raise _unavailable(exc) from exc
        raise


Batch = list[tuple[Callable[[sqlite3.Connection], Any], asyncio.Future[Any]]]
Outcomes = list[tuple[asyncio.Future[Any], Any, BaseException | None]]


class Store:
    """Async facade over the database. Open with `await open()`, always `await close()`.

    The shared queue and bookkeeping of group commit; a backend supplies `open`, `read`, `peek`, `close`
    and `_flush` (which takes batches off the queue, applies them with `_apply` and settles them).
    """

    backend = "none"
    # Whether several floatsrv nodes may serve this database at once (PostgreSQL): then keys, throttling,
    # credentials and policy are shared through it, and background duties are taken in turn.
    shared = False

    def __init__(self, clock: Clock, options: StoreOptions | None = None) -> None:
        self.clock = clock
        self.options = options or StoreOptions()
        self.stats = StoreStats()
        self.applied_migrations: list[int] = []
        self._queue: deque[tuple[Callable[[sqlite3.Connection], Any], asyncio.Future[Any]]] = deque()
        self._flusher: asyncio.Task[None] | None = None
        self._opened = False  # set by the backend's open() once writes can be queued
        self._closed = False
        self._loop: asyncio.AbstractEventLoop  # the loop the store was opened on (set by open)
        # The writer's blocking calls run on this thread of their own: nothing else (password hashing, file
        # reads) can ever queue in front of them.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="floatsrv-db")

    @property
    def where(self) -> str:
        """The database, for log lines and messages (never a password)."""
        raise NotImplementedError

    def _off_loop(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        return asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    @property
    def pending_writes(self) -> int:
        """Write units queued and not yet applied (for metrics and tests)."""
        return len(self._queue)

    async def open(self) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError

    async def _finish_writes(self) -> bool:
        """The start of every close: no new writes, the queued ones committed. False if already closed."""
        if self._closed:
            return False
        self._closed = True
        if self._flusher is not None:
            with contextlib.suppress(Exception):
                await self._flusher
        return True

    def peek(self, unit: Unit[T]) -> T:
        """Run a *tiny* indexed read at once, from the calling (event-loop) thread (credential checks)."""
        raise NotImplementedError

    def schema_version(self) -> int:
        """The database's schema version (the number of its newest migration)."""
        raise NotImplementedError

    async def read(self, unit: Unit[T]) -> T:
        """Run `unit(conn)` on a reader (one consistent snapshot of committed data)."""
        raise NotImplementedError

    async def _flush(self) -> None:
        raise NotImplementedError

    async def duty(self, name: str) -> bool:
        """Whether this node should do a background duty ("sweeper", "sync") now. One SQLite server: always."""
        return True

    def alone(self, conn: sqlite3.Connection) -> bool:
        """Inside a unit: whether no other node serves this database now (its start is the site's start)."""
        return True

    def node_gone(self, conn: sqlite3.Connection, process: str) -> bool:
        """Inside a unit: whether the node of that process (db.procid) is known to be gone from the database
        (PostgreSQL sees its connections end). One SQLite server: never said here."""
        return False

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
        if not self._opened or self._closed:
            raise StorageUnavailable("the store is closed")
        future: asyncio.Future[Any] = self._loop.create_future()
        self._queue.append((unit, future))
        flusher = self._flusher
        if flusher is None or flusher.done():
            self._flusher = self._loop.create_task(self._flush(), name="floatsrv-commit")
        return future

    def _note_fault(self, exc: BaseException) -> None:
        stats = self.stats
        stats.failed_batches += 1
        reason = getattr(exc, "sqlite_errorname", None) or type(exc).__name__
        if stats.fault is None:
            stats.fault_since = time.time()
            log.error("storage_failed", reason=reason, error=str(exc), database=self.where)
        elif stats.fault != reason:
            log.error("storage_failed", reason=reason, error=str(exc), database=self.where)
        stats.fault = reason

    def _note_commit(self) -> None:
        stats = self.stats
        stats.last_commit = time.time()
        if stats.fault is not None:
            log.info(
                "storage_recovered", reason=stats.fault, failed_for_s=round(time.time() - (stats.fault_since or 0), 1)
            )
            stats.fault = stats.fault_since = None

    def _take(self) -> Batch:
        size = min(len(self._queue), self.options.max_batch)
        return [self._queue.popleft() for _ in range(size)]

    @staticmethod
    def _fail(batch: Batch, error: StorageUnavailable) -> None:
        for _, future in batch:
            if not future.done():
                future.set_exception(error)

    @staticmethod
    def _apply(conn: Any, batch: Batch) -> tuple[Outcomes, BaseException | None]:
        """Run each unit in its own savepoint. Returns the outcomes, or the storage fault that sinks them all."""
        outcomes: Outcomes = []
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

    def _settle(self, batch: Batch, outcomes: Outcomes, fault: BaseException | None) -> None:
        """After a batch: record it and resolve its callers (all with StorageUnavailable on a fault)."""
        real = any(not isinstance(unit, Probe) for unit, _ in batch)
        if fault is not None:
            self._note_fault(fault)
            if real:
                self.stats.last_failure = time.time()
                self.stats.last_failure_reason = self.stats.fault
            self._fail(batch, _unavailable(fault))  # every unit shares the batch's fate
            return
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
