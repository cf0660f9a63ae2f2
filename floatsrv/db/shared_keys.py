"""Keys every node of a PostgreSQL site must share, kept in the database and mirrored to each node's files.

On SQLite the server's keys live only in its data directory (`token.key`, the identity key). Several nodes
on one PostgreSQL database must sign and verify with the *same* keys, or a token issued by one node would be
refused by the other and a license file bound to one node's identity would be refused by the other. So on
PostgreSQL the database holds them (table `shared_keys`, PostgreSQL only) and each node keeps its files as a
mirror: everything that reads a key keeps reading the file.

- `adopt` (at start, in a write unit, under the nodes' write lock): the database's key wins and is written
  to the file; with none yet (the first node, or a site just moved from SQLite), the node's file, made if
  missing, becomes the shared key.
- `publish` (after the key file was replaced, e.g. a token key rotation): the file's bytes become shared.
- `refresh` (when the database says a key changed): the file is brought in line with the database.

The keys are as secret in the database as in the files: the database's backups must be guarded as the data
directory's are (docs/high-availability.md).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

from floatsrv.auth.tokens import write_secret

TOKEN = "token"  # noqa: S105 -- a name, not a secret: the bearer tokens' HMAC key (config.token_key_path)
IDENTITY = "identity"  # the server's Ed25519 identity key (config.signing_key_path)


def _stored(conn: sqlite3.Connection, name: str) -> bytes | None:
    row = conn.execute("SELECT value FROM shared_keys WHERE name = ?", (name,)).fetchone()
    return bytes(row[0]) if row else None


def refresh(conn: sqlite3.Connection, name: str, path: Path) -> bool:
    """Write the database's key to the file when they differ. True when the database has the key."""
    value = _stored(conn, name)
    if value is None:
        return False
    if not path.exists() or path.read_bytes() != value:
        write_secret(path, value)
    return True


def adopt(conn: sqlite3.Connection, name: str, path: Path, make: Callable[[Path], object], now: int) -> None:
    """At a node's start: the shared key if there is one, else this node's (made by `make` if missing)."""
    if refresh(conn, name, path):
        return
    make(path)
    publish(conn, name, path, now)


def publish(conn: sqlite3.Connection, name: str, path: Path, now: int) -> None:
    """The file's key becomes the key of every node."""
    conn.execute(
        "INSERT INTO shared_keys (name, value, updated_at) VALUES (?, ?, ?)"
        " ON CONFLICT (name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
        (name, path.read_bytes(), now),
    )
