"""Login attempts every node of a PostgreSQL site counts together (table `login_attempts`, PostgreSQL only).

A row is one admitted attempt: it counts against its address until taken back (the password was right), and
against its username while `for_user` (cleared by a success of that user, or when the attempt was never
checked). `at` is the attempt's time in seconds (the throttle's clock), also its key with the address.
"""

from __future__ import annotations

import sqlite3


def recent(conn: sqlite3.Connection, address: str, username: str, since: float) -> tuple[list[float], list[float]]:
    """(the address's attempt times, the username's counted failure times) after `since`, oldest first."""
    by_address = [
        float(row[0])
        for row in conn.execute(
            "SELECT at FROM login_attempts WHERE address = ? AND at > ? ORDER BY at", (address, since)
        )
    ]
    by_user = [
        float(row[0])
        for row in conn.execute(
            "SELECT at FROM login_attempts WHERE username = ? AND for_user AND at > ? ORDER BY at", (username, since)
        )
    ]
    return by_address, by_user


def add(conn: sqlite3.Connection, address: str, username: str, at: float) -> None:
    conn.execute(
        "INSERT INTO login_attempts (address, username, at, for_user) VALUES (?, ?, ?, true)", (address, username, at)
    )


def forget_before(conn: sqlite3.Connection, before: float) -> None:
    conn.execute("DELETE FROM login_attempts WHERE at <= ?", (before,))


def succeeded(conn: sqlite3.Connection, address: str, username: str, at: float) -> None:
    """The attempt's password was right: it no longer counts, nor do the user's other failures."""
    conn.execute("DELETE FROM login_attempts WHERE address = ? AND at = ?", (address, at))
    conn.execute("UPDATE login_attempts SET for_user = false WHERE username = ? AND for_user", (username,))


def not_checked(conn: sqlite3.Connection, address: str, at: float) -> None:
    """The attempt was never checked: it still counts for its address, not against its user."""
    conn.execute("UPDATE login_attempts SET for_user = false WHERE address = ? AND at = ?", (address, at))
