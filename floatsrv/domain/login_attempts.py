"""Login throttling shared by every node of a PostgreSQL site (auth.throttle is the one-process version).

Each attempt is judged and recorded in one write transaction under the nodes' write lock, with the same
rule (`auth.throttle.wait_for`) over the attempts every node recorded: a burst spread over several nodes gets
no more checks than one node would give, and a correct login from a clean address is never locked out by
failures elsewhere. Attempts older than the longer window are forgotten as they are judged.
"""

from __future__ import annotations

import math
import sqlite3

from floatsrv.auth.throttle import Attempt, ThrottleRule, wait_for
from floatsrv.clock import Clock
from floatsrv.db import login_attempts as db
from floatsrv.db.store import Store


class SharedThrottle:
    def __init__(self, store: Store, clock: Clock, per_address: ThrottleRule, per_user: ThrottleRule) -> None:
        self._store, self._clock = store, clock
        self._address, self._user = per_address, per_user
        self._horizon = max(per_address.window, per_user.window).total_seconds()

    async def admit(self, address: str, username: str) -> Attempt | int:
        """Count an attempt before its check: the Attempt, or whole seconds to wait (nothing counted)."""
        now = self._clock.now().timestamp()

        def unit(conn: sqlite3.Connection) -> Attempt | int:
            db.forget_before(conn, now - self._horizon)
            by_address, by_user = db.recent(conn, address, username, now - self._address.window.total_seconds())
            if by_address:  # the per-user window may differ from the per-address one
                by_user = db.recent(conn, address, username, now - self._user.window.total_seconds())[1]
            wait = wait_for(self._address, self._user, by_address, by_user, now)
            if wait > 0:
                return max(1, math.ceil(wait))
            db.add(conn, address, username, now)
            return Attempt(address, username, now, not by_address)

        return await self._store.write(unit)

    async def succeeded(self, attempt: Attempt) -> None:
        await self._store.write(lambda conn: db.succeeded(conn, attempt.address, attempt.username, attempt.at))

    async def not_checked(self, attempt: Attempt) -> None:
        await self._store.write(lambda conn: db.not_checked(conn, attempt.address, attempt.at))
