"""`floatsrv db migrate --to`: a populated SQLite site moved to PostgreSQL answers exactly as before.

A real server on SQLite is given seats, consumption, usage events (with ids), credits, an add-on and tokens;
it is stopped; its database is copied; a server on the PostgreSQL copy (same data directory, same keys) must
give the same /v1 and /api/v4 answers, accept the tokens the SQLite server issued, and remember the event ids.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from tests.conftest import example_dict
from tests.licensing import sign_licenses
from tests.metering_config import metering_license
from tests.pgfixture import new_database
from tests.pgserver import PgServer
from tests.procs import ServerProcess

# GET answers compared before and after (viewer or admin reads).
READS = [
    "/v1/licenses",
    "/v1/licenses/1001",
    "/v1/seats?license_id=1001&state=all",
    "/v1/licenses/1001/credits",
    "/v1/licenses/1001/credits/ledger",
    "/v1/licenses/1001/addons",
    "/v1/addons",
    "/v1/license-files",
    "/v1/reports/denials",
    "/v1/reports/consumption?license_id=1001",
    "/api/v4/license?product=demo",
]


def populate(server: ServerProcess, admin: str, user: str) -> None:
    for name in ("alice", "bob"):
        assert server.request("POST", "/api/v4/register", {"product": "demo", "user": name}, user)[0] == 200
    body: dict[str, Any] = {"product": "demo", "user": "alice", "feature": "export"}
    assert server.request("POST", "/api/v4/featureRegister", body, user)[0] == 200
    for number in range(5):
        event = {"event_id": f"job-{number}", "product": "demo", "feature": "logs", "quantity": "2.5"}
        assert server.request("POST", "/v1/usage/events", event, user)[0] == 200
    body = {"product": "demo", "user": "carol", "feature": "storage", "consumptions": 3}
    assert server.request("POST", "/api/v4/add_feature_consumption", body, user)[0] == 200
    status, reply = server.request("POST", "/v1/licenses/1001/credits", {"amount": "40", "note": "PO-7"}, admin)
    assert status == 200, reply
    addon: dict[str, Any] = {"name": "More API", "feature": "api", "consumption_model": "metered", "included_units": 20}
    status, reply = server.request("POST", "/v1/addons", addon, admin)
    assert status in (200, 201), reply
    addon_id = reply["data"]["id"]
    status, reply = server.request("POST", "/v1/licenses/1001/addons", {"addon_id": addon_id}, admin)
    assert status in (200, 201), reply
    for number in range(3):  # a refusal, for the denial log
        body = {"product": "demo", "user": f"late-{number}"}
        server.request("POST", "/api/v4/register", body, user)


def answers(server: ServerProcess, token: str) -> dict[str, Any]:
    found = {}
    for path in READS:
        status, body = server.request("GET", path, token=token)
        assert status == 200, (path, body)
        found[path] = body
    return found


def test_a_populated_sqlite_site_answers_the_same_from_postgresql(
    tmp_path: Path, pg_dsn: str, pg_server: PgServer
) -> None:
    data = example_dict()
    metering_license(data)
    sign_licenses(data, tmp_path)
    lite = ServerProcess(tmp_path, data, signed=False)
    lite.start()
    admin, user = lite.token(), lite.token("demo", "demo-password")
    populate(lite, admin, user)
    before = answers(lite, admin)
    lite.stop()

    copied = lite.cli("db", "migrate", "--to", pg_dsn)
    assert copied.returncode == 0, copied.stderr
    assert "verified" in copied.stdout
    assert "usage_events.quantity_milli: 15500" in copied.stdout  # 5 events of 2.5 and 3 units of storage

    moved = {**data, "storage": {**data["storage"], "backend": "postgresql", "postgresql": {"dsn": pg_dsn}}}
    pg = ServerProcess(tmp_path, moved, signed=False)
    pg.start()
    try:
        after = answers(pg, admin)  # the SQLite server's tokens: the keys moved with the database
        for path in READS:
            assert after[path] == before[path], path
        replay = {"event_id": "job-0", "product": "demo", "feature": "logs", "quantity": "2.5"}
        status, reply = pg.request("POST", "/v1/usage/events", replay, user)
        assert (status, reply["data"]["replay"]) == (200, True)  # the event ids moved too
    finally:
        pg.stop()

    again = lite.cli("db", "migrate", "--to", pg_dsn)
    assert again.returncode == 1 and "not empty" in again.stderr, again.stderr

    # The backup docs/high-availability.md gives: pg_dump, then pg_restore into an empty database.
    dump = tmp_path / "floatsrv.dump"
    tools = pg_server.bin
    subprocess.run([str(tools / "pg_dump"), "--format=custom", f"--file={dump}", pg_dsn], check=True)
    restored_dsn = new_database(pg_server)
    subprocess.run([str(tools / "pg_restore"), "--no-owner", f"--dbname={restored_dsn}", str(dump)], check=True)
    moved["storage"] = {**moved["storage"], "postgresql": {"dsn": restored_dsn}}
    restored = ServerProcess(tmp_path, moved, signed=False)
    restored.start()
    try:
        assert answers(restored, admin) == after
    finally:
        restored.stop()
