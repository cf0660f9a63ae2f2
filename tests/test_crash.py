"""Crash safety: SIGKILL under concurrent load, several times over, loses and doubles nothing.

Clients register seats, consume through /api/v4 and send idempotent /v1 usage events from several threads,
recording every answer. The server is killed with SIGKILL at a random moment, restarted, and the database
is checked against what was acknowledged: every acknowledged consumption present exactly once, requests
in flight at the kill present at most once, seats never above the limit nor held twice, and SQLite's
integrity check clean. At the end, in-flight events are sent again: each counts exactly once overall.
"""

from __future__ import annotations

import random
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.conftest import example_dict
from tests.procs import ServerProcess

SEATS = 4
USERS = [f"ws-{n}" for n in range(10)]
CYCLES = 5


def crash_config() -> dict[str, Any]:
    config = example_dict()
    license = config["licenses"][0]
    license["floating_users"] = SEATS
    license["features"] += [
        {"code": "meter", "feature_type": "consumption", "allow_unlimited_consumptions": True},
        {"code": "events", "feature_type": "consumption", "allow_unlimited_consumptions": True},
    ]
    config["seats"] = {"sweep_interval_seconds": 0.2}
    return config


@dataclass
class Ledger:
    """What clients were told (acknowledged) and what they sent without an answer (in flight at the kill)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    meter_acked: int = 0
    meter_unknown: int = 0
    events_acked: dict[str, int] = field(default_factory=dict)
    events_unknown: dict[str, int] = field(default_factory=dict)
    seat_answers: int = 0


def client(server: ServerProcess, token: str, ledger: Ledger, stop: threading.Event, seed: int) -> None:
    rng = random.Random(seed)
    n = 0
    while not stop.is_set():
        n += 1
        kind = rng.choice(("seat", "seat", "meter", "event"))
        try:
            if kind == "seat":
                user = rng.choice(USERS)
                path = "/api/v4/register" if rng.random() < 0.7 else "/api/v4/unregister"
                status, body = server.request("POST", path, {"product": "demo", "user": user}, token)
                assert status in (200, 400), body
                with ledger.lock:
                    ledger.seat_answers += 1
            elif kind == "meter":
                quantity = rng.randint(1, 5)
                try:
                    status, body = server.request(
                        "POST",
                        "/api/v4/add_feature_consumption",
                        {"product": "demo", "user": "ws-0", "feature": "meter", "consumptions": quantity},
                        token,
                    )
                except OSError:
                    with ledger.lock:
                        ledger.meter_unknown += quantity
                    raise
                assert status == 200, body
                with ledger.lock:
                    ledger.meter_acked += quantity
            else:
                event_id = f"c{seed}-{n}-{rng.randrange(10**9)}"
                quantity = rng.randint(1, 5)
                body = {"event_id": event_id, "product": "demo", "feature": "events", "quantity": str(quantity)}
                try:
                    status, reply = server.request("POST", "/v1/usage/events", body, token)
                except OSError:
                    with ledger.lock:
                        ledger.events_unknown[event_id] = quantity
                    raise
                assert status == 200, reply
                with ledger.lock:
                    ledger.events_acked[event_id] = quantity
        except OSError:
            return  # the server is gone


def check_database(db: Path, ledger: Ledger) -> None:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        meter = conn.execute(
            "SELECT COALESCE(SUM(total_milli), 0) FROM consumption_counters"
            " WHERE license_id = 1001 AND feature = 'meter'"
        ).fetchone()[0]
        assert ledger.meter_acked * 1000 <= meter <= (ledger.meter_acked + ledger.meter_unknown) * 1000
        # Counters equal the sum of their events (nothing half-applied).
        for feature in ("meter", "events"):
            events = conn.execute(
                "SELECT COALESCE(SUM(quantity_milli), 0) FROM usage_events WHERE license_id = 1001 AND feature = ?",
                (feature,),
            ).fetchone()[0]
            counter = conn.execute(
                "SELECT COALESCE(SUM(total_milli - compacted_milli), 0) FROM consumption_counters"
                " WHERE license_id = 1001 AND feature = ?",
                (feature,),
            ).fetchone()[0]
            assert events == counter, feature
        stored = dict(
            conn.execute(
                "SELECT event_id, quantity_milli FROM usage_events WHERE license_id = 1001 AND feature = 'events'"
            ).fetchall()
        )
        ids = [row[0] for row in conn.execute("SELECT event_id FROM usage_events WHERE feature = 'events'")]
        assert len(ids) == len(set(ids)), "an event was counted twice"
        for event_id, quantity in ledger.events_acked.items():
            assert stored.get(event_id) == quantity * 1000, f"acknowledged event {event_id} is missing"
        assert set(stored) <= set(ledger.events_acked) | set(ledger.events_unknown)
        # Seats: never more held than the limit, never one user twice.
        held = conn.execute(
            "SELECT user, COUNT(*) FROM seats"
            " WHERE license_id = 1001 AND feature = '' AND ended_at IS NULL GROUP BY user"
        ).fetchall()
        assert len(held) <= SEATS and all(count == 1 for _, count in held), held
    finally:
        conn.close()


def test_sigkill_under_load_loses_and_doubles_nothing(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path, crash_config())
    ledger = Ledger()
    rng = random.Random(20261124)
    for cycle in range(CYCLES):
        server.start()
        token = server.token("demo", "demo-password")
        stop = threading.Event()
        threads = [
            threading.Thread(target=client, args=(server, token, ledger, stop, cycle * 100 + i)) for i in range(6)
        ]
        for thread in threads:
            thread.start()
        time.sleep(rng.uniform(0.5, 2.0))  # let load build, then kill at a random moment
        server.kill()
        stop.set()
        for thread in threads:
            thread.join(30)
        check_database(server.data_dir / "floatsrv.db", ledger)
    assert ledger.seat_answers > 100 and ledger.meter_acked > 100 and len(ledger.events_acked) > 50, ledger

    # Clients retry what they never got an answer for: each event then counts exactly once.
    server.start()
    try:
        token = server.token("demo", "demo-password")
        for event_id, quantity in ledger.events_unknown.items():
            body = {"event_id": event_id, "product": "demo", "feature": "events", "quantity": str(quantity)}
            status, reply = server.request("POST", "/v1/usage/events", body, token)
            assert status == 200, reply
        for event_id, quantity in list(ledger.events_acked.items())[:20]:  # replays of acknowledged ones
            body = {"event_id": event_id, "product": "demo", "feature": "events", "quantity": str(quantity)}
            status, reply = server.request("POST", "/v1/usage/events", body, token)
            assert status == 200 and reply["data"]["replay"] is True, reply
        status, view = server.request("GET", "/v1/licenses/1001", token=token)
        events = next(f for f in view["data"]["features"] if f["code"] == "events")
        expected = sum(ledger.events_acked.values()) + sum(ledger.events_unknown.values())
        assert events["consumption"]["total"] == str(expected)
    finally:
        assert server.stop() == 0
    ledger.events_acked.update(ledger.events_unknown)
    ledger.events_unknown.clear()
    check_database(server.data_dir / "floatsrv.db", ledger)
