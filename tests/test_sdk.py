"""The official LicenseSpring Python SDK (licensespring==4.0.0, unmodified) against a real floatsrv process.

Every SDK step is followed by a check of the server's own state through its API.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from licensespring.api.error import ClientError
from licensespring.floating_server import FloatingAPIClient
from licensespring.licensefile.config import Configuration
from licensespring.licensefile.floating_manager import FloatingManager

from tests.procs import ServerProcess

pytestmark = pytest.mark.slow

# FloatingAPIClient identifies the machine as str(uuid.getnode()).
SDK_USER = str(uuid.getnode())


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = ServerProcess(tmp_path_factory.mktemp("sdk"))
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture
def admin(server: ServerProcess) -> Iterator[Any]:
    token = server.token()
    server.request("GET", "/api/v4/unregister/all", token=token)  # each test starts with free seats

    def state(path: str) -> Any:
        status, body = server.request("GET", path, token=token)
        assert status == 200, body
        return body["data"]

    yield state


def manager(server: ServerProcess, tmp_path: Path) -> FloatingManager:
    conf = Configuration(
        product="demo",
        api_key="unused",
        shared_key="unused",
        api_domain=server.domain,
        api_protocol="http",
        file_path=str(tmp_path / "licensefile"),
        verify_license_signature=False,
    )
    return FloatingManager(conf)


def held_seats(admin: Any, **filters: str) -> list[dict[str, Any]]:
    query = "&".join(f"{k}={v}" for k, v in filters.items())
    seats: list[dict[str, Any]] = admin(f"/v1/seats?{query}")["data"]
    return seats


def test_sdk_full_flow(server: ServerProcess, admin: Any, tmp_path: Path) -> None:
    fm = manager(server, tmp_path)
    assert fm.is_online()
    assert fm.auth("demo", "demo-password")["token"]

    lic = fm.register()
    [seat] = held_seats(admin)
    assert (seat["user"], seat["principal"], seat["license_id"]) == (SDK_USER, "demo", 1001)
    assert lic.id() == 1001 and lic.max_floating_users() == 3 and lic.floating_in_use_devices() == 1
    lic.local_check()  # no FLOATING_TIMEOUT: the seat end is in the future, not Go's year 1

    time.sleep(0.01)
    lic.check()  # the heartbeat: same seat, renewed
    [renewed] = held_seats(admin)
    assert renewed["id"] == seat["id"] and renewed["heartbeat_at"] > seat["heartbeat_at"]

    lic.check_feature("export")
    [feature_seat] = held_seats(admin, feature="export")
    assert feature_seat["user"] == SDK_USER
    assert admin("/v1/licenses/1001")["features"][0]["seats_in_use"] == 1

    lic.release_feature("export")
    assert held_seats(admin, feature="export") == []
    [ended] = held_seats(admin, feature="export", state="ended")
    assert ended["end_reason"] == "released"

    lic.add_local_consumption(5)
    assert lic.sync_consumption() is True
    assert lic.total_consumptions() == 5 and lic.local_consumptions() == 0
    assert admin("/v1/licenses/1001")["consumption"]["total"] == "5"

    lic.add_local_feature_consumption("render", 3)
    assert lic.sync_feature_consumption("render") is True
    render = next(f for f in admin("/v1/licenses/1001")["features"] if f["code"] == "render")
    assert render["consumption"]["total"] == "3"

    until = (datetime.now(UTC) + timedelta(hours=24)).replace(microsecond=0)
    lic.floating_borrow(until.strftime("%Y-%m-%dT%H:%M:%SZ"))
    assert lic.is_borrowed() is True
    [borrowed] = held_seats(admin)
    assert borrowed["borrowed_until"] == until.strftime("%Y-%m-%dT%H:%M:%S.000Z")

    lic.floating_release(throw_e=True)
    assert held_seats(admin) == []
    assert held_seats(admin, state="ended")[0]["end_reason"] == "released"

    lic = fm.register()
    assert len(held_seats(admin)) == 1
    assert fm.unregister() == "user_unregistered"
    assert held_seats(admin) == []

    fm.register()
    fm.unregister_all()
    assert held_seats(admin) == []
    assert held_seats(admin, state="ended")[0]["end_reason"] == "unregister_all"


def client(server: ServerProcess, token: str | None) -> FloatingAPIClient:
    api = FloatingAPIClient(api_protocol="http", api_domain=server.domain)
    api.bearer_token = token
    return api


def test_sdk_fourth_user_gets_floating_not_available(server: ServerProcess, admin: Any) -> None:
    api = client(server, None)
    api.auth("demo", "demo-password")
    for user in ("u1", "u2", "u3"):
        assert api.register_user(product="demo", user=user)["floating_slots_in_use"] >= 1
    with pytest.raises(ClientError) as err:
        api.register_user(product="demo", user="u4")
    assert (err.value.status, err.value.code) == (400, "floating_not_available")
    assert sorted(s["user"] for s in held_seats(admin)) == ["u1", "u2", "u3"]


def test_sdk_consumption_past_the_limit(server: ServerProcess, admin: Any) -> None:
    api = client(server, None)
    api.auth("demo", "demo-password")
    before = admin("/v1/licenses/1001")["consumption"]["total"]
    with pytest.raises(ClientError) as err:
        api.add_consumption(product="demo", consumptions=5000, user="u1")
    assert err.value.code == "license_not_enough_consumptions"
    with pytest.raises(ClientError) as err:
        api.add_feature_consumption(product="demo", feature_code="render", consumptions=500, user="u1")
    assert err.value.code == "feature_not_enough_consumptions"
    assert admin("/v1/licenses/1001")["consumption"]["total"] == before


def test_sdk_bad_token_gets_401_with_code(server: ServerProcess, admin: Any) -> None:
    api = client(server, "not-a-real-token")
    with pytest.raises(ClientError) as err:
        api.register_user(product="demo", user="u1")
    assert (err.value.status, err.value.code) == (401, "invalid_token")
    with pytest.raises(ClientError) as err:
        client(server, None).register_user(product="demo", user="u1")
    assert (err.value.status, err.value.code) == (401, "unauthorized")
    with pytest.raises(ClientError) as err:
        client(server, None).auth("demo", "wrong-password")
    assert (err.value.status, err.value.code) == (401, "unauthorized")
    assert held_seats(admin) == []
