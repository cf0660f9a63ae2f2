"""A PostgreSQL connection with the shape of an `sqlite3.Connection`, so every unit of `floatsrv.db` runs on both.

The units of the write path are plain synchronous functions over a connection (`db.store` says why). This
module lets the same functions run on PostgreSQL through asyncpg: a `PgConnection` belongs to one thread,
which owns a private event loop that is *not* running between statements; each `execute` drives that loop
just until asyncpg has the answer (`run_until_complete`). A statement therefore costs one round trip to the
server and no thread hand-off, and a unit stays one uninterrupted run of Python, as on SQLite.

What is translated, once per distinct SQL text (the texts are constants, so the cache is small):
- `?` placeholders become `$1`, `$2`, ... (and `?3` becomes `$3`);
- the column name `user`, a reserved word in PostgreSQL, is quoted (in SQLite it is an ordinary name);
- an INSERT into a table whose `id` PostgreSQL assigns gets `RETURNING id`, for `cursor.lastrowid`;
- parameters are converted to the types PostgreSQL inferred for them (SQLite stores any value anywhere;
  asyncpg refuses an int for a text parameter), and integral results of `SUM` come back as `int`.

Errors come back as the `sqlite3` exceptions the callers already handle: constraint violations as
`sqlite3.IntegrityError`; everything that means "the database is unreachable or cannot take writes"
(connection lost, shut down, read-only standby, disk full, serialization failure) as `PgFault`, whose
`sqlite_errorname` starts with `PG_`, which `db.store.is_storage_fault` counts as a storage fault.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from decimal import Decimal
from typing import Any

import asyncpg
from asyncpg import exceptions as pgerr

# PostgreSQL's answer to "which faults are the storage's, not the statement's": by SQLSTATE class.
_FAULT_CLASSES = {
    "08": "PG_CONNECTION",  # connection exception
    "25": "PG_READ_ONLY",  # e.g. 25006: the server is a standby (a failover is under way)
    "40": "PG_BUSY",  # serialization failure, deadlock
    "53": "PG_RESOURCES",  # disk full (53100), out of memory, too many connections
    "55": "PG_BUSY",  # lock not available
    "57": "PG_SHUTDOWN",  # admin shutdown, crash shutdown, cannot connect now
    "58": "PG_IOERR",  # system error (I/O)
}


def redact(dsn: str) -> str:
    """The DSN without its password, for log lines and messages."""
    scheme, sep, rest = dsn.partition("://")
    if not sep or "@" not in rest:
        return dsn
    credentials, _, host = rest.rpartition("@")
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}@{host}" if user else f"{scheme}://{host}"


class PgFault(sqlite3.OperationalError):
    """The PostgreSQL server cannot be reached or cannot take writes (not a fault of the statement)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.sqlite_errorname = reason


def _fault_name(exc: BaseException) -> str | None:
    if isinstance(exc, pgerr.DiskFullError):
        return "PG_DISK_FULL"
    if isinstance(exc, pgerr.PostgresError):
        return _FAULT_CLASSES.get(str(exc.sqlstate)[:2])
    if isinstance(exc, (OSError, asyncio.TimeoutError, pgerr.InterfaceError, pgerr.InternalClientError)):
        return "PG_CONNECTION"
    return None


def translate_error(exc: BaseException) -> BaseException:
    """The sqlite3-shaped exception for an asyncpg one (see the module docstring)."""
    fault = _fault_name(exc)
    if fault is not None:
        error: BaseException = PgFault(fault, f"{type(exc).__name__}: {exc}")
    elif isinstance(exc, pgerr.IntegrityConstraintViolationError):
        error = sqlite3.IntegrityError(str(exc))
    elif isinstance(exc, pgerr.PostgresError):
        error = sqlite3.OperationalError(f"{type(exc).__name__}: {exc}")
    else:
        return exc
    error.__cause__ = exc
    return error


def to_postgres(sql: str) -> str:
    """SQLite-dialect SQL as PostgreSQL reads it: `$n` placeholders and a quoted `user` column."""
    out: list[str] = []
    index, number, size = 0, 0, len(sql)
    while index < size:
        char = sql[index]
        if char in "'\"":  # a string literal or a quoted name: copied as is, doubled quotes included
            end = index + 1
            while end < size:
                if sql[end] == char:
                    if end + 1 < size and sql[end + 1] == char:
                        end += 2
                        continue
                    break
                end += 1
            out.append(sql[index : end + 1])
            index = end + 1
        elif sql.startswith("--", index):  # a comment, to the end of the line
            end = sql.find("\n", index)
            end = size if end < 0 else end
            out.append(sql[index:end])
            index = end
        elif char == "?":
            end = index + 1
            while end < size and sql[end].isdigit():
                end += 1
            if end > index + 1:  # ?NNN: a numbered parameter, the same in both dialects but for the sign
                out.append("$" + sql[index + 1 : end])
            else:
                number += 1
                out.append(f"${number}")
            index = end
        elif char.isalpha() or char == "_":
            end = index
            while end < size and (sql[end].isalnum() or sql[end] in "_$"):
                end += 1
            word = sql[index:end]
            out.append('"user"' if word == "user" else word)  # the column; USER (upper case) stays a keyword
            index = end
        else:
            out.append(char)
            index += 1
    return "".join(out)


def _coerce(value: Any, type_name: str) -> Any:
    """A parameter as PostgreSQL's inferred type wants it (SQLite would have taken it as is)."""
    if value is None:
        return None
    if type_name in ("int8", "int4", "int2"):
        return int(value) if isinstance(value, (bool, str)) else value
    if type_name in ("text", "varchar", "bpchar"):
        return value if isinstance(value, str) else str(value)
    if type_name == "bool":
        return bool(value)
    if type_name == "float8":
        return float(value)
    if type_name == "numeric":
        return Decimal(value) if isinstance(value, (int, str)) else value
    return value


def _row(record: asyncpg.Record, numeric: Sequence[int]) -> tuple[Any, ...]:
    row = tuple(record)
    if not numeric:
        return row
    values = list(row)
    for at in numeric:
        value = values[at]
        if isinstance(value, Decimal) and value == value.to_integral_value():
            values[at] = int(value)  # SUM over integers: SQLite answers an int
    return tuple(values)


class PgCursor:
    """What `execute` returns: the rows (already fetched), the row count of a data change, and the id of the
    row an INSERT made (`lastrowid`, as sqlite3 gives it; asked of PostgreSQL with RETURNING id)."""

    __slots__ = ("_rows", "_at", "rowcount", "lastrowid")

    def __init__(self, rows: list[tuple[Any, ...]], rowcount: int, lastrowid: int | None = None) -> None:
        self._rows, self._at, self.rowcount, self.lastrowid = rows, 0, rowcount, lastrowid

    def fetchone(self) -> tuple[Any, ...] | None:
        if self._at >= len(self._rows):
            return None
        self._at += 1
        return self._rows[self._at - 1]

    def fetchall(self) -> list[tuple[Any, ...]]:
        rows, self._at = self._rows[self._at :], len(self._rows)
        return rows

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        return iter(self.fetchall())


class _Statement:
    __slots__ = ("prepared", "types", "numeric", "returns_id")

    def __init__(self, prepared: Any, returns_id: bool) -> None:
        self.prepared = prepared
        self.returns_id = returns_id
        self.types = tuple(param.name for param in prepared.get_parameters())
        self.numeric = tuple(at for at, attr in enumerate(prepared.get_attributes()) if attr.type.name == "numeric")


def _rowcount(status: str | None) -> int:
    # "UPDATE 3", "DELETE 0", "INSERT 0 1": the last word is the count; SELECT and others: -1 as in sqlite3.
    if not status:
        return -1
    words = status.split()
    return int(words[-1]) if words[0] in ("INSERT", "UPDATE", "DELETE") and words[-1].isdigit() else -1


class PgConnection:
    """One asyncpg connection driven synchronously from the thread that opened it (see the module docstring)."""

    def __init__(
        self,
        dsn: str,
        *,
        password: str | None = None,
        application_name: str = "floatsrv",
        connect_timeout: float = 10.0,
    ) -> None:
        self._loop = asyncio.new_event_loop()
        self._statements: dict[str, _Statement] = {}
        self._identities: frozenset[str] | None = None  # read once the schema exists (after migrations)
        self._pending: list[str] = []  # deferred savepoint statements (`_DEFERRED`), sent with the next one
        try:
            self._conn: asyncpg.Connection = self._run(
                asyncpg.connect(
                    dsn,
                    password=password,
                    timeout=connect_timeout,
                    statement_cache_size=0,
                    server_settings={"application_name": application_name},
                )
            )
        except BaseException:
            self._loop.close()
            raise

    def _run(self, awaitable: Any) -> Any:
        try:
            return self._loop.run_until_complete(awaitable)
        except (TimeoutError, pgerr.PostgresError, pgerr.InterfaceError, OSError) as exc:
            raise translate_error(exc) from exc

    @property
    def in_transaction(self) -> bool:
        return bool(self._conn.is_in_transaction())

    def _identity_tables(self) -> frozenset[str]:
        """Tables whose `id` PostgreSQL assigns (SQLite's rowid aliases): an INSERT into one reports its id."""
        if self._identities is None:
            rows = self._run(
                self._conn.fetch(
                    "SELECT table_name FROM information_schema.columns WHERE table_schema = current_schema()"
                    " AND column_name = 'id' AND is_identity = 'YES'"
                )
            )
            self._identities = frozenset(str(row[0]) for row in rows)
        return self._identities

    def _statement(self, sql: str) -> _Statement:
        statement = self._statements.get(sql)
        if statement is None:
            text = to_postgres(sql)
            words = sql.split(None, 3)
            returns_id = (
                len(words) > 2
                and words[0].upper() == "INSERT"
                and words[2] in self._identity_tables()
                and "RETURNING" not in sql.upper()
            )
            if returns_id:
                text += " RETURNING id"
            statement = _Statement(self._run(self._conn.prepare(text)), returns_id)
            if len(self._statements) > 2000:  # statements are constants; a flood of texts would be a bug
                self._statements.clear()
            self._statements[sql] = statement
        return statement

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> PgCursor:
        args = tuple(params or ())
        if not args and sql in _DEFERRED:
            # The store's per-unit savepoint bookkeeping: sent with whatever comes next, in the same round
            # trip ("RELEASE unit; SAVEPOINT unit" between two units), not in one of its own.
            self._pending.append(sql)
            return PgCursor([], -1)
        if not args and _is_control(sql):
            self._run(self._conn.execute("; ".join([*self._pending, sql])))  # BEGIN, COMMIT...: not prepared
            self._pending.clear()
            return PgCursor([], -1)
        if self._pending:
            script, self._pending = "; ".join(self._pending), []
            self._run(self._conn.execute(script))
        statement = self._statement(sql)
        values = [_coerce(value, kind) for value, kind in zip(args, statement.types, strict=True)]
        records = self._run(statement.prepared.fetch(*values))
        if statement.returns_id:
            return PgCursor([], len(records), int(records[0][0]) if records else None)
        rows = [_row(record, statement.numeric) for record in records]
        return PgCursor(rows, _rowcount(statement.prepared.get_statusmsg()))

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> PgCursor:
        count = 0
        for params in rows:
            count += max(self.execute(sql, params).rowcount, 0)
        return PgCursor([], count)

    def copy_rows(self, table: str, columns: list[str], rows: list[tuple[Any, ...]]) -> int:
        """Bulk-write rows with COPY (moving a site: db.pg_copy); returns how many."""
        if rows:
            self._run(self._conn.copy_records_to_table(table, records=rows, columns=columns))
        return len(rows)

    def script(self, sql: str) -> None:
        """Run several statements at once (schema scripts), with no parameters."""
        self._run(self._conn.execute(sql))

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._loop.run_until_complete(self._conn.close(timeout=5))
        with contextlib.suppress(Exception):
            self._conn.terminate()
        self._loop.close()


_DEFERRED = frozenset({"SAVEPOINT unit", "RELEASE unit"})  # db.store's savepoint per unit
_CONTROL = ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE", "START", "END", "SET", "LISTEN", "NOTIFY")


def _is_control(sql: str) -> bool:
    return sql.lstrip()[:10].split(" ", 1)[0].upper() in _CONTROL
