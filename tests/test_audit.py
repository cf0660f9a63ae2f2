"""The audit log: one row per security-relevant action, written in the action's own transaction (so it
vanishes with it), append-only, readable through the admin API and the CLI."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from datetime import timedelta
from typing import Any

import jwt
import pytest

from floatsrv.appkeys import DOMAIN, SYNC
from floatsrv.domain import accounts
from floatsrv.domain.accounts import Actor
from floatsrv.errors import StorageUnavailable
from floatsrv.models import Role
from tests.conftest import Api, basic
from tests.metering_config import metering_license
from tests.polling import wait_until
from tests.upstreams import UPSTREAM_TOKEN


async def audit(api: Api, token: str, **params: str) -> list[dict[str, Any]]:
    status, body = await api.get("/v1/audit", token=token, params=params)
    assert status == 200, body
    rows: list[dict[str, Any]] = body["data"]["data"]
    return rows


async def test_each_audited_action_leaves_a_row(api: Api) -> None:
    admin = await api.login("admin", "admin-password")
    async with api.client.get("/auth", headers={"Authorization": basic("demo", "hunter2-guess")}):
        pass
    _, body = await api.post("/v1/users", {"username": "ivy", "role": "user"}, token=admin)
    temporary = body["data"]["temporary_password"]
    ivy = await api.login("ivy", temporary)
    await api.post("/v1/me/password", {"current_password": temporary, "new_password": "ivys-new-password"}, token=ivy)
    await api.post("/v1/users/ivy/password", {}, token=admin)
    async with api.client.patch("/v1/users/ivy", json={"role": "viewer"}, headers={"Authorization": f"Bearer {admin}"}):
        pass
    demo = await api.login()
    async with api.client.delete(
        f"/v1/tokens/{jwt.decode(demo, options={'verify_signature': False})['jti']}",
        headers={"Authorization": f"Bearer {admin}"},
    ):
        pass
    await api.post("/v1/users/demo/revoke-tokens", {}, token=admin)
    _, body = await api.post("/v1/api-keys", {"name": "k1"}, token=admin)
    async with api.client.delete(f"/v1/api-keys/{body['data']['id']}", headers={"Authorization": f"Bearer {admin}"}):
        pass
    await api.post("/api/v4/register", {"product": "demo", "user": "victim"}, token=admin)
    await api.login()
    [seat] = [s for s in await api.seats() if s["user"] == "victim"]
    status, body = await api.post(f"/v1/seats/{seat['id']}/revoke", {}, token=admin)
    assert status == 200 and body["data"]["end_reason"] == "admin_removed"
    async with api.client.delete("/v1/users/ivy", headers={"Authorization": f"Bearer {admin}"}):
        pass
    await api.post("/v1/signing-key/rotate", {}, token=admin)
    admin = await api.login("admin", "admin-password")

    rows = await audit(api, admin, limit="1000")
    trail = [(r["action"], r["actor"]) for r in reversed(rows) if r["actor"] != "system"]
    assert trail == [
        ("license_file_imported", "config"),  # the test's license file, taken in at start
        ("login_succeeded", "demo"),
        ("login_succeeded", "admin"),
        ("login_failed", "demo"),
        ("user_created", "admin"),
        ("login_succeeded", "ivy"),
        ("password_changed", "ivy"),
        ("password_reset", "admin"),
        ("user_updated", "admin"),
        ("login_succeeded", "demo"),
        ("token_revoked", "admin"),
        ("user_tokens_revoked", "admin"),
        ("api_key_created", "admin"),
        ("api_key_revoked", "admin"),
        ("login_succeeded", "demo"),
        ("seat_revoked", "admin"),
        ("user_deleted", "admin"),
        ("signing_key_rotated", "admin"),
        ("login_succeeded", "admin"),
    ]
    targets = {r["action"]: r["target"] for r in rows if r["actor"] != "system"}
    assert targets["user_created"] == targets["user_deleted"] == "ivy"
    assert targets["user_tokens_revoked"] == "demo" and targets["seat_revoked"] == str(seat["id"])
    assert [r for r in rows if r["action"] == "seat_revoked"][0]["detail"]["user"] == "victim"
    assert all(r["peer"] for r in rows if r["actor"] != "system")
    failed = await audit(api, admin, action="login_failed")
    assert failed[0]["detail"] == {"reason": "wrong_password"} and "hunter2" not in str(failed)
    assert [r["action"] for r in await audit(api, admin, actor="ivy")] == ["password_changed", "login_succeeded"]


async def test_audit_rows_vanish_when_their_transaction_rolls_back(api: Api) -> None:
    store = api.app[DOMAIN].store

    def fail_the_batch(conn: sqlite3.Connection) -> None:
        # A real storage fault in the same transaction: the database may not grow, and this write needs to.
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        conn.execute(f"PRAGMA max_page_count = {pages}")
        try:
            conn.execute("CREATE TABLE ballast (b BLOB)")
            conn.execute("INSERT INTO ballast VALUES (zeroblob(1000000))")
        finally:
            conn.execute("PRAGMA max_page_count = 1073741823")

    # Another process (here: another connection) holds the write lock, so the next batch waits for it and
    # collects both units below into one transaction.
    other = sqlite3.connect(api.config.db_path, isolation_level=None, check_same_thread=False)
    # In a thread: the server (on this event loop) may be holding the lock for a moment itself.
    await asyncio.to_thread(other.execute, "BEGIN IMMEDIATE")
    try:
        create = asyncio.ensure_future(
            accounts.create_user(store, api.clock, Actor("admin", "test"), "jane", Role.USER, "janes-password")
        )
        while store.pending_writes < 1:  # the user (with its audit row) is queued behind the lock
            await asyncio.sleep(0.01)
        failing = asyncio.ensure_future(store.write(fail_the_batch))
        while store.pending_writes < 2:
            await asyncio.sleep(0.001)
    finally:
        other.execute("COMMIT")
        other.close()
    with pytest.raises(StorageUnavailable):
        await create
    with pytest.raises(StorageUnavailable):
        await failing
    admin = await api.login("admin", "admin-password")
    assert [r for r in await audit(api, admin) if r["target"] == "jane"] == []
    assert (await api.get("/v1/users/jane", token=admin))[0] == 404
    # The next transaction works again and audits normally.
    await accounts.create_user(store, api.clock, Actor("admin", "test"), "jane", Role.USER, "janes-password")
    assert [r["action"] for r in await audit(api, admin, target="jane")] == ["user_created"]


async def test_the_audit_log_is_append_only(api: Api) -> None:
    store = api.app[DOMAIN].store
    for statement in ("UPDATE audit_log SET actor = 'nobody'", "DELETE FROM audit_log"):
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            await store.write(lambda conn, sql=statement: conn.execute(sql))


async def test_cli_audit(api: Api) -> None:
    created = await api.cli("user", "add", "kim", "--role", "viewer")
    assert created.returncode == 0, created.stderr
    assert "temporary password (shown once):" in created.stdout
    shown = await api.cli("audit", "--action", "user_created", "--json")
    assert shown.returncode == 0, shown.stderr

    [row] = [r for r in json.loads(shown.stdout) if r["target"] == "kim"]
    assert row["actor"].startswith("cli:") and row["detail"] == {"role": "viewer", "source": "local"}
    table = await api.cli("audit")
    assert table.stdout.splitlines()[0].split()[:3] == ["ID", "AT", "ACTION"]


async def test_sync_control_is_audited(api_factory: Any, floatsrv_upstream: Any) -> None:
    upstream, url = floatsrv_upstream
    upstream.faults.permanent_status = 400  # every batch is refused for good: it parks
    api: Api = await api_factory(_with_upstream(url))
    admin = await api.login("admin", "admin-password")

    async def first_pass_done() -> bool:  # the start-up pass (nothing to send) must not meet the run below
        return bool(api.app[SYNC].passes)

    await wait_until(first_pass_done)
    status, body = await api.post("/api/v4/add_consumption", {"product": "demo", "user": "u", "consumptions": 2})
    assert status == 200, body

    status, body = await api.post("/v1/sync/run", {}, token=admin)
    assert status == 200 and body["data"]["channels"][0]["parked_batches"] == 1, body
    [run] = await audit(api, admin, action="sync_run_requested")
    assert (run["actor"], run["detail"]) == ("admin", {"channels": ["vendor"]}) and run["peer"]

    upstream.faults.permanent_status = None
    status, body = await api.post("/v1/sync/retry", {}, token=admin)
    assert status == 200 and body["data"]["reopened_batches"] == 1, body
    [retried] = await audit(api, admin, action="sync_parked_retried")
    assert (retried["actor"], retried["target"], retried["detail"]) == ("admin", "vendor", {"batches": 1})
    assert retried["peer"]  # like every admin action, it says where the request came from
    # Only admins control sync, and a refused request leaves no row.
    assert (await api.post("/v1/sync/run", {}, token=await api.login()))[0] == 403
    assert len(await audit(api, admin, action="sync_run_requested")) == 1


def _with_upstream(url: str) -> Any:
    def mutate(data: dict[str, Any]) -> None:
        data["sync"] = {
            "interval_seconds": 3600,  # the periodic pass runs once at start, then keeps out of the way
            "upstreams": [{"name": "vendor", "format": "floatsrv", "url": url, "token": UPSTREAM_TOKEN}],
        }

    return mutate


async def test_addon_actions_are_audited(api_factory: Any) -> None:
    api: Api = await api_factory(metering_license)
    admin = await api.login("admin", "admin-password")
    addon = {"name": "More API", "base_price": "31", "feature": "api", "consumption_model": "metered"}
    status, body = await api.post("/v1/addons", addon, token=admin)
    assert status == 200, body
    addon_id = body["data"]["id"]
    headers = {"Authorization": f"Bearer {admin}"}
    async with api.client.put(f"/v1/addons/{addon_id}", json={**addon, "included_units": 9}, headers=headers) as resp:
        assert resp.status == 200
    assert (await api.post("/v1/licenses/1001/addons", {"addon_id": addon_id}, token=admin))[0] == 200
    async with api.client.delete(f"/v1/licenses/1001/addons/{addon_id}", headers=headers) as resp:
        assert resp.status == 200
    async with api.client.delete(f"/v1/addons/{addon_id}", headers=headers) as resp:
        assert resp.status == 200

    rows = [r for r in reversed(await audit(api, admin, target=addon_id))]
    assert [(r["action"], r["actor"]) for r in rows] == [
        ("addon_created", "admin"),
        ("addon_updated", "admin"),
        ("addon_activated", "admin"),
        ("addon_deactivated", "admin"),
        ("addon_deleted", "admin"),
    ]
    details = {r["action"]: r["detail"] for r in rows}
    assert details["addon_created"] == {"feature": "api", "model": "metered"}
    assert details["addon_activated"]["license_id"] == 1001 and details["addon_activated"]["prorated_charge"]
    assert details["addon_deactivated"] == {"license_id": 1001}
    assert all(r["peer"] for r in rows)


async def test_audit_filters_by_time_and_pages_by_id(api: Api) -> None:
    admin = await api.login("admin", "admin-password")  # 12:00
    api.clock.advance(timedelta(hours=1))
    await api.login()  # 13:00
    api.clock.advance(timedelta(hours=1))
    await api.login("admin", "admin-password")  # 14:00
    logins = await audit(api, admin, action="login_succeeded")
    by_hour = {(r["at"][11:13], r["actor"]) for r in logins}
    assert {("12", "admin"), ("13", "demo"), ("14", "admin")} <= by_hour

    def at(hour: int) -> str:
        return f"2026-01-15T{hour}:00:00Z"

    middle = await audit(api, admin, action="login_succeeded", since=at(13), until=at(14))
    assert [(r["at"], r["actor"]) for r in middle] == [("2026-01-15T13:00:00.000Z", "demo")]
    assert [r["actor"] for r in await audit(api, admin, action="login_succeeded", since=at(14))] == ["admin"]
    early = await audit(api, admin, action="login_succeeded", until=at(13))
    assert early and all(r["at"] < at(13) for r in early)

    newest, *older = await audit(api, admin)
    paged = await audit(api, admin, before=str(newest["id"]))
    assert paged == older
    assert await audit(api, admin, before=str(older[-1]["id"])) == []
    status, body = await api.get("/v1/audit", token=admin, params={"since": "yesterday"})
    assert (status, body["error"]["code"]) == (400, "validation_error")

    shown = await api.cli("audit", "--action", "login_succeeded", "--since", at(13), "--until", at(14), "--json")
    assert shown.returncode == 0, shown.stderr
    assert [(r["actor"], r["at"]) for r in json.loads(shown.stdout)] == [("demo", "2026-01-15T13:00:00.000Z")]
