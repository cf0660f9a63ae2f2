"""What every node of a PostgreSQL site agrees on, kept in `floatsrv_meta` (PostgreSQL only; db.pg_migrate).

- `site_settings`: a digest per shared section of the configuration (domain.site says which), as the node
  that started the site, or last reloaded, had them (a JSON object of hex strings);
- `site_policy`: that node's usage policy, which every node then serves, as domain.site encodes it (JSON
  with a format version, `domain.site.POLICY_FORMAT`; this module only moves the text);
- `site_generation`: moved by every change of the two, so nodes notice it with one small read.
"""

from __future__ import annotations

import json
import sqlite3


def _get(conn: sqlite3.Connection, key: str) -> str | None:
    row = conn.execute("SELECT value FROM floatsrv_meta WHERE key = ?", (key,)).fetchone()
    return None if row is None else str(row[0])


def _put(conn: sqlite3.Connection, key: str, value: str) -> None:
    conn.execute(
        "INSERT INTO floatsrv_meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (key, value),
    )


def settings(conn: sqlite3.Connection) -> dict[str, str] | None:
    text = _get(conn, "site_settings")
    return None if text is None else dict(json.loads(text))


def policy(conn: sqlite3.Connection) -> str | None:
    return _get(conn, "site_policy")


def generation(conn: sqlite3.Connection) -> int:
    return int(_get(conn, "site_generation") or 0)


def publish(conn: sqlite3.Connection, digests: dict[str, str], policy_json: str) -> int:
    """Make these the site's settings and policy (`policy_json` as domain.site encodes it); returns the new
    generation."""
    _put(conn, "site_settings", json.dumps(digests, sort_keys=True))
    _put(conn, "site_policy", policy_json)
    moved = generation(conn) + 1
    _put(conn, "site_generation", str(moved))
    return moved
