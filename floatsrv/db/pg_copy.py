"""Moving a site from SQLite to PostgreSQL: copy a stopped server's whole database, then prove the copy.

`copy` reads the SQLite file in one read transaction and writes an *empty* PostgreSQL database (a new one,
or one this floatsrv has only just created its schema in): the schema first (db.pg_migrate, the same version
as the file's, which must be this build's), then every table, parents before children, in one PostgreSQL
transaction. The rows are already what the triggers made of them (counters, balances, the auth version), so
the target's own triggers are switched off while they are written, and switched on again before COMMIT.
Then every identity sequence is moved past the largest id copied, the server's keys become the site's
shared keys (db.shared_keys), and both databases are counted and summed table by table: the copy is only
reported done when every count and total matches. A failure leaves the target as it was (rolled back).
"""

from __future__ import annotations

import contextlib
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from floatsrv.db import migrate, pg_migrate, shared_keys
from floatsrv.db.pgconn import PgConnection

# Checked besides the row counts: columns whose sums must match (the numbers a vendor bills from).
_TOTALS = {
    "consumption_counters": ("total_milli", "compacted_milli"),
    "usage_events": ("quantity_milli",),
    "credit_ledger": ("amount_milli",),
    "seats": ("slot",),
}
_BOOKKEEPING = {"schema_migrations"}  # written by the target's own migration


class CopyError(Exception):
    """The copy was refused or did not verify; the target was left as it was."""


@dataclass(frozen=True, slots=True)
class CopyReport:
    tables: dict[str, int]  # rows copied per table
    totals: dict[str, int]  # "table.column" -> sum, equal on both sides


def _tables(lite: sqlite3.Connection) -> list[str]:
    """floatsrv's tables in an order where every table comes after those its foreign keys name."""
    names = [
        row[0]
        for row in lite.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
        if row[0] not in _BOOKKEEPING
    ]
    parents = {name: {row[2] for row in lite.execute(f'PRAGMA foreign_key_list("{name}")')} - {name} for name in names}
    ordered: list[str] = []
    while len(ordered) < len(names):
        ready = [n for n in names if n not in ordered and parents[n] <= set(ordered)]
        if not ready:
            raise CopyError(f"foreign keys form a cycle among {sorted(set(names) - set(ordered))}")
        ordered.extend(sorted(ready))
    return ordered


def _columns(lite: sqlite3.Connection, table: str) -> list[str]:
    return [row[1] for row in lite.execute(f'PRAGMA table_info("{table}")')]


def _quoted(name: str) -> str:
    return f'"{name}"'


def _measure(conn: Any, tables: list[str]) -> tuple[dict[str, int], dict[str, int]]:
    """(rows per table, sums of the billed columns) of one database."""
    counts, totals = {}, {}
    for table in tables:
        counts[table] = int(conn.execute(f"SELECT count(*) FROM {_quoted(table)}").fetchone()[0])
        for column in _TOTALS.get(table, ()):
            sql = f"SELECT COALESCE(SUM({_quoted(column)}), 0) FROM {_quoted(table)}"
            totals[f"{table}.{column}"] = int(conn.execute(sql).fetchone()[0])
    return counts, totals


def copy(source: Path, dsn: str, password: str | None, token_key: Path, identity_key: Path, now_us: int) -> CopyReport:
    """Copy the SQLite database at `source` into the empty PostgreSQL database at `dsn` (module docstring)."""
    lite = sqlite3.connect(f"file:{source}?mode=ro", uri=True, isolation_level=None)
    try:
        migrate.check_identity(lite, str(source))
        version = int(lite.execute("PRAGMA user_version").fetchone()[0])
        if version != migrate.latest_version():
            raise CopyError(
                f"{source} has schema {version}; start this floatsrv on it once (it migrates) and stop it, then copy"
            )
        pg = PgConnection(dsn, password=password)
    except (migrate.SchemaError, sqlite3.Error) as exc:
        lite.close()
        raise CopyError(str(exc)) from exc
    try:
        pg_migrate.migrate(pg, now_us)
        lite.execute("BEGIN")  # one snapshot of the source
        tables = _tables(lite)
        pg.execute("BEGIN")
        for table in tables:
            existing = int(pg.execute(f"SELECT count(*) FROM {_quoted(table)}").fetchone()[0])  # type: ignore[index]
            if existing and table != "auth_state":  # auth_state: the schema's own first row, replaced below
                raise CopyError(f"the target is not empty: {table} has {existing} rows; give an empty database")
        for table in tables:
            pg.execute(f"ALTER TABLE {_quoted(table)} DISABLE TRIGGER USER")
        pg.execute("DELETE FROM auth_state")
        copied = {}
        for table in tables:
            columns = _columns(lite, table)
            rows = lite.execute(f"SELECT {', '.join(map(_quoted, columns))} FROM {_quoted(table)}").fetchall()
            copied[table] = pg.copy_rows(table, columns, rows)
        for table in tables:
            pg.execute(f"ALTER TABLE {_quoted(table)} ENABLE TRIGGER USER")
        for (table,) in pg.execute(
            "SELECT table_name FROM information_schema.columns WHERE table_schema = current_schema()"
            " AND column_name = 'id' AND is_identity = 'YES'"
        ):
            pg.execute(
                f"SELECT setval(pg_get_serial_sequence(?, 'id'), COALESCE((SELECT max(id) FROM {_quoted(table)}), 0)"
                " + 1, false)",
                (table,),
            )
        for name, path in ((shared_keys.TOKEN, token_key), (shared_keys.IDENTITY, identity_key)):
            if path.exists():
                shared_keys.publish(pg, name, path, now_us)  # type: ignore[arg-type]  # sqlite3's shape
        want, got = _measure(lite, tables), _measure(pg, tables)
        wanted, found = {**want[0], **want[1]}, {**got[0], **got[1]}
        differ = sorted(key for key, value in wanted.items() if found.get(key) != value)
        if differ:
            raise CopyError(f"the copy does not verify (differs in {', '.join(differ)}); nothing was kept")
        pg.execute("COMMIT")
        return CopyReport(copied, want[1])
    except BaseException as exc:
        with contextlib.suppress(sqlite3.Error):  # a lost connection has rolled back already
            if pg.in_transaction:
                pg.execute("ROLLBACK")
        if isinstance(exc, (migrate.SchemaError, sqlite3.Error)):
            raise CopyError(str(exc)) from exc
        raise
    finally:
        pg.close()
        lite.close()
