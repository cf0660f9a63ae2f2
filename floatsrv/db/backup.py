"""Online backups and offline checks of the database file, on connections of their own (never the store's)."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from floatsrv.db import migrate, readonly


def read_only(path: Path, busy_timeout_ms: int = 5000) -> sqlite3.Connection:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None, timeout=busy_timeout_ms / 1000)
    conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
    return conn


def backup(path: Path, out: Path, busy_timeout_ms: int = 5000) -> int:
    """Copy the live database to `out` with SQLite's backup API: one consistent snapshot, taken while the
    server keeps serving (WAL readers never block the writer). The copy is checked, made a standalone
    single file (rollback journal, no -wal), fsynced, and only then renamed into place (mode 0600).
    Returns its size in bytes. Raises sqlite3.Error or RuntimeError (a copy that fails its check)."""
    temp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    source = read_only(path, busy_timeout_ms)
    try:
        target = sqlite3.connect(temp, isolation_level=None)
        try:
            source.backup(target)  # all pages in one step: a single read transaction, so one snapshot
            target.execute("PRAGMA journal_mode = DELETE")
            problems = readonly.integrity_problems(target)
        finally:
            target.close()
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    finally:
        source.close()
    if problems:
        temp.unlink(missing_ok=True)
        raise RuntimeError(f"the backup copy failed its check: {problems[0]}")
    os.chmod(temp, 0o600)  # it holds password hashes and usage
    with temp.open("rb") as handle:
        os.fsync(handle.fileno())
    os.replace(temp, out)
    return out.stat().st_size


def check(path: Path, busy_timeout_ms: int = 5000, *, current: bool = True) -> tuple[int | None, list[str]]:
    """(schema version, problems) of a database file, read-only; no problems means healthy. `current=False`:
    an older schema is no problem (a restored backup is migrated forward at the next start)."""
    try:
        conn = read_only(path, busy_timeout_ms)
    except sqlite3.Error as exc:
        return None, [f"cannot open {path}: {exc}"]
    try:
        migrate.check_identity(conn, str(path))
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        problems = readonly.integrity_problems(conn)
        if version > migrate.latest_version() or (current and version != migrate.latest_version()):
            problems.append(f"schema version {version}, this floatsrv expects {migrate.latest_version()}")
        return version, problems
    except migrate.SchemaError as exc:
        return None, [str(exc)]
    except sqlite3.DatabaseError as exc:
        return None, [f"{path}: {exc}"]
    finally:
        conn.close()
