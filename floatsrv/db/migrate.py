"""Forward-only schema migrations, applied at start-up before the server accepts requests.

Each `migrations/NNNN_name.sql` runs statement by statement inside its own transaction, together with the
row that records it and the new `PRAGMA user_version`, so a failed migration leaves no trace and stays
pending. (We never use `executescript`: it silently COMMITs any open transaction first.)
The database also carries our `application_id`, so a foreign or corrupt file is refused, never rewritten.
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass
from importlib import resources

APPLICATION_ID = 0x464C5356  # "FLSV"

_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


class SchemaError(Exception):
    """The database file cannot be used: foreign, corrupt, or from a newer floatsrv."""


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


def available() -> list[Migration]:
    found = []
    for entry in resources.files("floatsrv.db").joinpath("migrations").iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append(Migration(int(match.group(1)), match.group(2), entry.read_text(encoding="utf-8")))
    return sorted(found, key=lambda m: m.version)


def latest_version() -> int:
    return available()[-1].version


def statements(sql: str) -> list[str]:
    """Split a script into complete statements (trigger bodies keep their inner semicolons)."""
    out: list[str] = []
    buffer = ""
    for line in sql.splitlines(keepends=True):
        if not buffer and (not line.strip() or line.lstrip().startswith("--")):
            continue
        buffer += line
        if sqlite3.complete_statement(buffer):
            out.append(buffer.strip())
            buffer = ""
    if buffer.strip():
        raise ValueError(f"incomplete SQL statement at the end of a migration: {buffer[:60]!r}")
    return out


def too_new(current: int, newest: int) -> SchemaError:
    return SchemaError(
        f"the database has schema version {current}, newer than this floatsrv understands ({newest}); "
        "run a newer floatsrv or restore a backup"
    )


def check_identity(conn: sqlite3.Connection, path: str) -> None:
    """Refuse files that are not ours. Reads only; must run before anything writes to the file."""
    try:
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        tables = [row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    except sqlite3.DatabaseError as exc:
        raise SchemaError(f"{path} is not a usable SQLite database ({exc}); refusing to start") from exc
    if app_id == APPLICATION_ID or (app_id == 0 and not tables):
        return
    raise SchemaError(
        f"{path} is not a floatsrv database (application_id={app_id:#x}, tables: {', '.join(tables[:5]) or '-'}); "
        "refusing to touch it. Point storage.data_dir at an empty directory or a floatsrv data directory."
    )


def migrate(conn: sqlite3.Connection, applied_at_us: int, upto: int | None = None) -> list[int]:
    """Apply pending migrations (up to version `upto`, default all); return the versions applied.

    Raises SchemaError for a database newer than this floatsrv.
    """
    migrations = available()
    current = conn.execute("PRAGMA user_version").fetchone()[0]
    newest = migrations[-1].version
    if current > newest:
        raise too_new(current, newest)
    applied = []
    for migration in migrations:
        if migration.version <= current or (upto is not None and migration.version > upto):
            continue
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)"
            )
            for statement in statements(migration.sql):
                conn.execute(statement)
            conn.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                (migration.version, migration.name, applied_at_us),
            )
            # PRAGMA arguments cannot be bound; both values are integers we control.
            conn.execute(f"PRAGMA user_version = {int(migration.version)}")
            conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        applied.append(migration.version)
    return applied
