"""The floor: the least work a durable, authenticated heartbeat or consumption needs on floatsrv's stack.

    python3 bench/floor.py PORT DATA_DIR

It serves `POST /api/v4/register` and `POST /api/v4/add_feature_consumption`:
- the bearer token is checked by comparing strings;
- the JSON body is parsed with the stdlib and its fields' types checked;
- the change is made in a group-committed transaction, one savepoint per request, with synchronous=FULL
  and the fsync off the event loop, as floatsrv does it: a heartbeat renews the seat (a SELECT and an
  UPDATE), a consumption stores the event and adds it to its counter (an INSERT and an upsert); the seats
  in use or the counters are read once per batch;
- the reply is JSON of the size of floatsrv's (2.5 KB for register, 0.6 KB for a consumption), and each
  request writes one JSON log line.

There is no validation library, no domain layer, no metrics, no limits, no periods and no client fields. It
is not a license server; it shows how close to the echo ceiling the design of issue 6 can get on aiohttp and
SQLite, so that floatsrv's own figures can be read against it (bench/README.md).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import sys
import time
from pathlib import Path

import orjson
from aiohttp import web

TOKEN = "Bearer floor-token"
LICENSE_JSON = json.dumps({"id": 1, "product": "bench", "floating_users": 1000, "padding": "x" * 2250})
FEATURE = {"id": 1, "code": "meter", "feature_type": "consumption", "padding": "x" * 520}
TIMEOUT_US = 30 * 60 * 1_000_000


class Writer:
    """One connection; requests queued while a commit is in flight share the next transaction."""

    def __init__(self, path: Path) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.conn.execute("PRAGMA journal_mode = WAL")
        self.conn.execute("PRAGMA synchronous = FULL")
        self.conn.execute(
            "CREATE TABLE IF NOT EXISTS seats (id INTEGER PRIMARY KEY, license_id INTEGER NOT NULL,"
            " user TEXT NOT NULL, heartbeat_at INTEGER NOT NULL, expires_at INTEGER NOT NULL,"
            " UNIQUE (license_id, user))"
        )
        self.conn.execute(
            "CREATE TABLE IF NOT EXISTS events (id INTEGER PRIMARY KEY, license_id INTEGER NOT NULL,"
            " feature TEXT NOT NULL, user TEXT, quantity INTEGER NOT NULL, received_at INTEGER NOT NULL)"
        )
        self.conn.execute(
            "CREATE TABLE IF NOT EXISTS counters (license_id INTEGER NOT NULL, feature TEXT NOT NULL,"
            " total INTEGER NOT NULL, PRIMARY KEY (license_id, feature))"
        )
        # (user, feature or None for a heartbeat, quantity, now, future)
        self.queue: list[tuple[str, str | None, int, int, asyncio.Future[int]]] = []
        self.flusher: asyncio.Task[None] | None = None

    async def change(self, user: str, feature: str | None, quantity: int, now: int) -> int:
        """A heartbeat (feature None) or a consumption; returns the seats in use or the feature's total once
        the change is committed."""
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.queue.append((user, feature, quantity, now, future))
        if self.flusher is None or self.flusher.done():
            self.flusher = asyncio.create_task(self.flush())
        return await future

    def _renew(self, user: str, now: int) -> None:
        conn = self.conn
        row = conn.execute("SELECT id FROM seats WHERE license_id = 1 AND user = ?", (user,)).fetchone()
        if row is None:
            conn.execute(
                "INSERT INTO seats (license_id, user, heartbeat_at, expires_at) VALUES (1, ?, ?, ?)",
                (user, now, now + TIMEOUT_US),
            )
        else:
            conn.execute(
                "UPDATE seats SET heartbeat_at = ?, expires_at = ? WHERE id = ?", (now, now + TIMEOUT_US, row[0])
            )

    def _consume(self, user: str, feature: str, quantity: int, now: int) -> None:
        self.conn.execute(
            "INSERT INTO events (license_id, feature, user, quantity, received_at) VALUES (1, ?, ?, ?, ?)",
            (feature, user, quantity, now),
        )
        self.conn.execute(
            "INSERT INTO counters (license_id, feature, total) VALUES (1, ?, ?)"
            " ON CONFLICT DO UPDATE SET total = total + excluded.total",
            (feature, quantity),
        )

    async def flush(self) -> None:
        conn = self.conn
        while self.queue:
            await asyncio.to_thread(conn.execute, "BEGIN IMMEDIATE")
            batch, self.queue = self.queue, []
            now = 0
            for user, feature, quantity, now, _ in batch:
                conn.execute("SAVEPOINT unit")
                if feature is None:
                    self._renew(user, now)
                else:
                    self._consume(user, feature, quantity, now)
                conn.execute("RELEASE unit")
            in_use = conn.execute(
                "SELECT count(*) FROM seats WHERE license_id = 1 AND expires_at > ?", (now,)
            ).fetchone()[0]
            totals = dict(conn.execute("SELECT feature, total FROM counters WHERE license_id = 1").fetchall())
            await asyncio.to_thread(conn.execute, "COMMIT")
            for _, feature, _, _, future in batch:
                if not future.done():
                    future.set_result(in_use if feature is None else totals[feature])


_log = bytearray()


def _log_line(route: str, user: str, started: float) -> None:
    _log.extend(
        orjson.dumps(
            {
                "event": "request_completed",
                "route": route,
                "status": 200,
                "user": user,
                "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                "timestamp": time.time(),
            },
            option=orjson.OPT_APPEND_NEWLINE,
        )
    )
    if len(_log) > 65536:
        sys.stdout.buffer.write(_log)
        _log.clear()


def _refusal(status: int, code: str) -> web.Response:
    return web.json_response({"status": status, "code": code, "message": code}, status=status)


async def register(request: web.Request) -> web.Response:
    started = time.perf_counter()
    if request.headers.get("Authorization") != TOKEN:
        return _refusal(401, "unauthorized")
    body = json.loads(await request.read())
    user = body.get("user") if isinstance(body, dict) else None
    if not isinstance(user, str) or not isinstance(body.get("product"), str):
        return _refusal(400, "invalid_request")
    in_use = await request.app[WRITER].change(user, None, 0, time.time_ns() // 1000)
    answer = {
        "floating_slots_in_use": in_use,
        "license_json": LICENSE_JSON,
        "license_id": 1,
        "floating_in_use_devices": in_use,
        "floating_users": 1000,
        "floating_timeout": 30,
        "is_borrowed": False,
        "borrowed_until": None,
    }
    response = web.Response(body=orjson.dumps(answer), content_type="application/json")
    _log_line("/api/v4/register", user, started)
    return response


async def add_feature_consumption(request: web.Request) -> web.Response:
    started = time.perf_counter()
    if request.headers.get("Authorization") != TOKEN:
        return _refusal(401, "unauthorized")
    body = json.loads(await request.read())
    if not isinstance(body, dict):
        return _refusal(400, "invalid_request")
    user, feature, quantity = body.get("user"), body.get("feature"), body.get("consumptions")
    if not (isinstance(user, str) and isinstance(feature, str) and type(quantity) is int and quantity > 0):
        return _refusal(400, "invalid_request")
    total = await request.app[WRITER].change(user, feature, quantity, time.time_ns() // 1000)
    answer = {**FEATURE, "license_id": 1, "total_consumptions": total}
    response = web.Response(body=orjson.dumps(answer), content_type="application/json")
    _log_line("/api/v4/add_feature_consumption", user, started)
    return response


async def ready(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


WRITER = web.AppKey("writer", Writer)


def main() -> None:
    app = web.Application()
    data_dir = Path(sys.argv[2])
    data_dir.mkdir(parents=True, exist_ok=True)
    app[WRITER] = Writer(data_dir / "floor.db")
    app.router.add_post("/api/v4/register", register)
    app.router.add_post("/api/v4/add_feature_consumption", add_feature_consumption)
    app.router.add_get("/", ready)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)


if __name__ == "__main__":
    main()
