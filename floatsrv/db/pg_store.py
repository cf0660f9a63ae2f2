"""The PostgreSQL backend: several floatsrv nodes, one database, every write decision serialised across them.

Where things run: each connection (`db.pgconn.PgConnection`) belongs to one thread. The writer's thread
takes a whole batch from the event loop, runs it (BEGIN, the nodes' write lock, each unit in its savepoint,
COMMIT) and hands the outcomes back; the event loop meanwhile parses the next requests, which form the next
batch. Reads run on a small set of reader threads (`pool_size`), each query function in one snapshot.

Across nodes: every write transaction first takes one transaction-scoped advisory lock
(`pg_advisory_xact_lock`), the PostgreSQL counterpart of SQLite's `BEGIN IMMEDIATE`. So a batch on one node
and a batch on another never interleave, and every admission decision (a seat, a unit, an event id, a
credit) is made against what the other nodes committed before it, inside the transaction that records it.
The lock is released by COMMIT or ROLLBACK, and by PostgreSQL itself when a node dies mid-batch.

The writer's memo is dropped when `write_generation` (a row every batch increments, under the lock) shows
that another node committed since this node's last batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

from floatsrv.clock import Clock
from floatsrv.db import pg_migrate
from floatsrv.db.memo import Memo
from floatsrv.db.pgconn import PgConnection, PgFault, redact
from floatsrv.db.store import Batch, Outcomes, Store, StoreOptions, T, Unit, storage_faults
from floatsrv.errors import StorageUnavailable
from floatsrv.procid import current
from floatsrv.times import to_us

# pg_advisory_xact_lock(APP, purpose): APP is floatsrv's application id ("FLSV"), as in SQLite's header.
APP_LOCK = 0x464C5356
WRITE_LOCK = 1


class PgWriterConnection(PgConnection):
    """The writing connection: a connection with a memo (db.memo)."""

    def __init__(self, dsn: str, *, password: str | None, application_name: str) -> None:
        super().__init__(dsn, password=password, application_name=application_name)
        self.memo = Memo()


def node_name(process: str) -> str:
    """The `application_name` of a node's connections: what `pg_stat_activity` shows while the node lives.
    From its process id ("host:pid:boot:start", db.procid), hashed to fit PostgreSQL's 63 bytes."""
    return "floatsrv/" + hashlib.sha256(process.encode()).hexdigest()[:16]


# Background duties (one node at a time): the session-level advisory lock each is held under.
DUTIES = {"sweeper": 3, "sync": 4}


class _Pool:
    """Reader connections, one thread each; a query function takes any free one. Peeks have their own."""

    def __init__(self, dsn: str, password: str | None, size: int, node: str) -> None:
        self._dsn, self._password, self._node = dsn, password, node
        self._readers = [_Slot(f"floatsrv-pgread{number}") for number in range(size)]
        self._free: asyncio.Queue[_Slot] = asyncio.Queue()
        for slot in self._readers:
            self._free.put_nowait(slot)
        self._peek = _Slot("floatsrv-pgpeek")

    def _run(self, slot: _Slot, unit: Callable[[Any], T]) -> T:
        # A connection kept from earlier may have died since (a database restart or failover ends them all):
        # a read changes nothing, so it is tried once more on a new one, and the client never sees the old
        # connection's death. A fault on a new connection is the database's answer now: it is raised.
        while True:
            fresh = slot.conn is None
            if slot.conn is None:
                slot.conn = PgConnection(self._dsn, password=self._password, application_name=self._node)
            conn = slot.conn
            try:
                conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")  # one snapshot for the function
                try:
                    return unit(conn)
                finally:
                    if conn.in_transaction:
                        conn.execute("COMMIT")
            except PgFault:
                slot.conn = None  # reconnect next time
                conn.close()
                if fresh:
                    raise

    async def read(self, unit: Callable[[Any], T]) -> T:
        slot = await self._free.get()
        try:
            return await asyncio.get_running_loop().run_in_executor(slot.thread, self._run, slot, unit)
        finally:
            self._free.put_nowait(slot)

    def peek(self, unit: Callable[[Any], T]) -> T:
        """A tiny read from the event-loop thread: blocks it for one round trip (credential checks only)."""
        return self._peek.thread.submit(self._run, self._peek, unit).result()

    def close(self) -> None:
        for slot in (*self._readers, self._peek):
            if slot.conn is not None:
                slot.thread.submit(slot.conn.close).result()
            slot.thread.shutdown(wait=True)


class _Slot:
    """A reader connection and the one thread that uses it."""

    def __init__(self, name: str) -> None:
        self.thread = ThreadPoolExecutor(1, thread_name_prefix=name)
        self.conn: PgConnection | None = None


class PgStore(Store):
    """The store on a PostgreSQL database shared by every node (see the module docstring)."""

    backend = "postgresql"
    shared = True

    def __init__(
        self,
        dsn: str,
        clock: Clock,
        options: StoreOptions | None = None,
        *,
        password: str | None = None,
        pool_size: int = 2,
    ) -> None:
        super().__init__(clock, options)
        self.dsn = dsn
        self._password = password
        self._pool_size = pool_size
        self.node = node_name(current().text())
        self._conn: PgWriterConnection | None = None
        self._duties = _Slot("floatsrv-pgduty")  # its session holds the advisory locks of the duties held
        self._held: set[str] = set()
        self._generation = -1  # the write generation after this node's last batch
        self._pool: _Pool | None = None

    @property
    def where(self) -> str:
        return redact(self.dsn)

    def _connect(self) -> PgWriterConnection:
        if self._conn is None:
            self._conn = PgWriterConnection(self.dsn, password=self._password, application_name=self.node)
        return self._conn

    def _open_writer(self, applied_at_us: int) -> list[int]:
        conn = self._connect()
        try:
            return pg_migrate.migrate(conn, applied_at_us)
        except BaseException:
            self._conn = None
            conn.close()
            raise

    async def open(self) -> None:
        """Connect, refuse a foreign or newer database, apply migrations (one node at a time)."""
        try:
            self.applied_migrations = await self._off_loop(self._open_writer, to_us(self.clock.now()))
        except sqlite3.Error as exc:
            reason = getattr(exc, "sqlite_errorname", None) or type(exc).__name__
            raise StorageUnavailable(f"cannot open PostgreSQL at {self.where}", reason=reason) from exc
        self._loop = asyncio.get_running_loop()
        self._pool = _Pool(self.dsn, self._password, self._pool_size, self.node)
        self._opened = True

    def peek(self, unit: Unit[T]) -> T:
        if self._pool is None or self._closed:
            raise StorageUnavailable("the store is closed")
        with storage_faults():
            return self._pool.peek(unit)

    def schema_version(self) -> int:
        return self.peek(lambda conn: pg_migrate.schema_version(cast(PgConnection, conn)))

    async def read(self, unit: Unit[T]) -> T:
        if self._pool is None or self._closed:
            raise StorageUnavailable("the store is closed")
        with storage_faults():
            return await self._pool.read(unit)

    def _run_batch(self, batch: Batch) -> tuple[Outcomes, BaseException | None]:
        """One transaction for the batch, under the nodes' write lock (runs on the writer's thread)."""
        try:
            conn, generation = self._begin()
        except sqlite3.Error as exc:
            self._drop(exc)
            return [], exc
        if generation != self._generation + 1:
            conn.memo.clear()  # another node committed since our last batch
        conn.memo.bounded()
        outcomes, fault = self._apply(conn, batch)
        if fault is None:
            try:
                conn.execute("COMMIT")
                self._generation = generation
                return outcomes, None
            except sqlite3.Error as exc:
                fault = exc
        conn.memo.clear()  # it holds the batch's changes, which are gone
        self._generation = -1
        self._drop(fault)
        return outcomes, fault

    def _begin(self) -> tuple[PgWriterConnection, int]:
        """Open the batch's transaction under the write lock; its write generation. Nothing of the batch has
        been sent yet, so when a connection kept from an earlier batch turns out dead (a database restart or
        failover ends them all), this is tried once more on a new one instead of failing the batch."""
        while True:
            fresh = self._conn is None
            conn = self._connect()
            try:
                conn.execute("BEGIN")
                conn.execute("SELECT pg_advisory_xact_lock(?, ?)", (APP_LOCK, WRITE_LOCK))
                row = conn.execute(
                    "UPDATE floatsrv_meta SET value = CAST(CAST(value AS BIGINT) + 1 AS TEXT)"
                    " WHERE key = 'write_generation' RETURNING value"
                ).fetchone()
                return conn, int(row[0])  # type: ignore[index]
            except PgFault:
                if fresh:
                    raise
                self._forget_connection()

    def _drop(self, fault: BaseException) -> None:
        """After a failed batch: roll back, or forget a connection that is gone (the next batch reconnects)."""
        conn = self._conn
        if conn is None:
            return
        if isinstance(fault, PgFault):
            self._forget_connection()
            return
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")

    def _hold(self, name: str) -> bool:
        slot = self._duties
        if slot.conn is not None and self._held:
            try:
                slot.conn.execute("SELECT 1")  # the session (and so every lock it holds) is still there
            except PgFault:
                slot.conn.close()
                slot.conn, self._held = None, set()
        if name in self._held:
            return True
        if slot.conn is None:
            slot.conn = PgConnection(self.dsn, password=self._password, application_name=self.node)
        row = slot.conn.execute("SELECT pg_try_advisory_lock(?, ?)", (APP_LOCK, DUTIES[name])).fetchone()
        if row is not None and row[0]:
            self._held.add(name)
            return True
        return False

    async def duty(self, name: str) -> bool:
        """Whether this node holds (or has just taken) the duty: a session-level advisory lock, which
        PostgreSQL releases the moment the node's connection ends, so a survivor takes it on its next try."""
        try:
            return await asyncio.get_running_loop().run_in_executor(self._duties.thread, self._hold, name)
        except sqlite3.Error:
            return False  # the database is unreachable: no duty can be done anyway

    def alone(self, conn: sqlite3.Connection) -> bool:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'floatsrv/%' AND application_name <> ?",
            (self.node,),
        )
        return int(row.fetchone()[0]) == 0

    def node_gone(self, conn: sqlite3.Connection, process: str) -> bool:
        row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = ?", (node_name(process),))
        return int(row.fetchone()[0]) == 0

    async def _flush(self) -> None:
        """Apply and commit batches until the queue is empty."""
        while self._queue:
            batch = self._take()
            try:
                outcomes, fault = await self._off_loop(self._run_batch, batch)
            except Exception as exc:  # noqa: BLE001 -- unforeseen: its callers must still get an answer
                await self._off_loop(self._forget_connection)
                outcomes, fault = [], exc
            self._settle(batch, outcomes, fault)

    def _forget_connection(self) -> None:
        """After a failure that leaves the connection's state unknown: the next batch opens a new one."""
        conn, self._conn = self._conn, None
        self._generation = -1
        if conn is not None:
            conn.close()

    async def close(self) -> None:
        """Finish queued writes, then stop. Safe to call twice."""
        if not await self._finish_writes():
            return
        if self._pool is not None:
            await self._off_loop(self._pool.close)
        if self._duties.conn is not None:
            self._duties.thread.submit(self._duties.conn.close).result()
        self._duties.thread.shutdown(wait=True)
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await self._off_loop(conn.close)
        self._executor.shutdown(wait=False)
