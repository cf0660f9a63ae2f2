"""The writer's memo: rows the writing connection read once and then keeps exact itself.

Every consumption asks for its counter's total and its license's active add-ons. Only the writer connection
changes either in this process, always through `db.consumption.add` (which adds to a memoised total) and
`db.addons`'s write functions (which drop the memoised add-ons), so the values can be kept between units
instead of being read again. They are dropped whole whenever they might no longer be exact: when a unit or
a batch is rolled back (its changes to the memo were made too), and when another connection has committed
(`PRAGMA data_version` moves; the store checks it once per batch, after taking the write lock, so nobody
else can commit until the batch ends). Reader connections have no memo and always read the database.
"""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from floatsrv.db.addons import AddonRow
    from floatsrv.db.consumption import CounterKey

# Enough for every live counter of a large site; past it the memo simply starts over.
_MOST = 50_000


class Memo:
    __slots__ = ("addons", "totals")

    def __init__(self) -> None:
        self.totals: dict[CounterKey, int] = {}
        self.addons: dict[int, tuple[AddonRow, ...]] = {}

    def clear(self) -> None:
        self.totals.clear()
        self.addons.clear()

    def bounded(self) -> None:
        if len(self.totals) > _MOST or len(self.addons) > _MOST:
            self.clear()


class WriterConnection(sqlite3.Connection):
    """The store's writing connection (sqlite3.connect's factory): a connection with a memo."""

    memo: Memo


def memo_of(conn: sqlite3.Connection) -> Memo | None:
    """The connection's memo; None on any other connection (readers, the admin CLI's)."""
    if type(conn) is WriterConnection:
        return conn.memo
    return getattr(conn, "memo", None)  # db.pg_store.PgWriterConnection has one too
