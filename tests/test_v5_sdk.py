"""The official LicenseSpring Python SDK (licensespring==4.0.0, unmodified) in v5 mode against a real floatsrv
process with `api_v5` on: a certificate chain made by `floatsrv v5 make-chain`, signature checks on.

Every SDK step is followed by a check of the server's own state through its native API.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from licensespring.api.error import ClientError
from licensespring.floating_server import FloatingAPIClient
from licensespring.licensefile.config import Configuration
from licensespring.licensefile.floating_manager import FloatingManager

from tests.conftest import example_dict, floatsrv_cli
from tests.procs import ServerProcess
from tests.test_sdk import admin, held_seats

__all__ = ["admin"]  # the fixture, with this module's `server`

pytestmark = pytest.mark.slow

SDK_USER = str(uuid.getnode())  # FloatingAPIClient identifies the machine as str(uuid.getnode())


@pytest.fixture(scope="module")
def chains(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The site's chain, and another site's (a chain from another key), both made by the real command."""
    made = {}
    for name in ("site", "other"):
        out = tmp_path_factory.mktemp(f"chain-{name}")
        result = floatsrv_cli("v5", "make-chain", "--out", str(out))
        assert result.returncode == 0, result.stderr
        made[name] = out
    return made


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, chains: dict[str, Path]) -> Iterator[ServerProcess]:
    config = example_dict()
    site = chains["site"]
    config["api_v5"] = {
        "enabled": True,
        "signing_key": str(site / "signing-key.pem"),
        "certificate_chain": str(site / "chain.pem"),
    }
    proc = ServerProcess(tmp_path_factory.mktemp("sdk5"), config)
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


def manager(server: ServerProcess, tmp_path: Path, chain: Path | None) -> FloatingManager:
    conf = Configuration(
        product="demo",
        api_key="unused",
        shared_key="unused",
        api_domain=server.domain,
        api_protocol="http",
        file_path=str(tmp_path / "licensefile"),
        verify_license_signature=True,
        certificate_chain_path=str(chain) if chain else None,
    )
    return FloatingManager(conf)


def client(server: ServerProcess, chain: Path | None) -> FloatingAPIClient:
    return FloatingAPIClient(
        api_protocol="http", api_domain=server.domain, certificate_chain_path=str(chain) if chain else None
    )


def test_sdk_v5_full_scenario(server: ServerProcess, chains: dict[str, Path], admin: Any, tmp_path: Path) -> None:
    fm = manager(server, tmp_path, chains["site"] / "chain.pem")
    assert fm.is_online()
    login = fm.auth("demo", "demo-password")
    api = fm.api_client.floating_client
    assert api.api_version == "v5" and login["token"] and login["expires_in"] > 0  # the SDK switched to v5

    [listed] = fm.fetch_licenses("demo")
    assert (listed["id"], listed["product_details"]["short_code"]) == (1001, "demo")

    lic = fm.register(license_id=1001)  # signature checked by the SDK against chain.pem
    [seat] = held_seats(admin)
    assert (seat["user"], seat["principal"], seat["license_id"]) == (SDK_USER, "demo", 1001)
    assert lic.id() == 1001 and lic.max_floating_users() == 3 and lic.floating_in_use_devices() == 1
    lic.local_check()

    time.sleep(0.01)
    lic.check()  # the heartbeat: register again on the same seat
    [renewed] = held_seats(admin)
    assert renewed["id"] == seat["id"] and renewed["heartbeat_at"] > seat["heartbeat_at"]

    lic.check_feature("export")
    [feature_seat] = held_seats(admin, feature="export")
    assert feature_seat["user"] == SDK_USER
    lic.release_feature("export")
    assert held_seats(admin, feature="export") == []

    lic.add_local_consumption(5)
    assert lic.sync_consumption() is True
    assert lic.total_consumptions() == 5 and lic.local_consumptions() == 0
    assert admin("/v1/licenses/1001")["consumption"]["total"] == "5"

    lic.add_local_feature_consumption("render", 3)
    assert lic.sync_feature_consumption("render") is True
    render = next(f for f in admin("/v1/licenses/1001")["features"] if f["code"] == "render")
    assert render["consumption"]["total"] == "3"

    # Limits and overages: the refusals are the v1 codes, and nothing is counted.
    with pytest.raises(ClientError) as err:
        api.add_consumption(consumptions=5000, license_id=1001)
    assert (err.value.status, err.value.code) == (400, "license_not_enough_consumptions")
    with pytest.raises(ClientError) as err:
        api.add_feature_consumption(feature_code="render", consumptions=500, license_id=1001)
    assert err.value.code == "feature_not_enough_consumptions"
    assert admin("/v1/licenses/1001")["consumption"]["total"] == "5"

    until = (datetime.now(UTC) + timedelta(hours=24)).replace(microsecond=0)
    lic.floating_borrow(until.strftime("%Y-%m-%dT%H:%M:%SZ"))
    assert lic.is_borrowed() is True
    [borrowed] = held_seats(admin)
    assert borrowed["borrowed_until"] == until.strftime("%Y-%m-%dT%H:%M:%S.000Z")

    lic.floating_release(throw_e=True)
    assert held_seats(admin) == []
    assert held_seats(admin, state="ended")[0]["end_reason"] == "released"

    fm.register(license_id=1001)
    assert fm.unregister(license_id=1001) == "user_unregistered"
    assert held_seats(admin) == []

    fm.register(license_id=1001)
    fm.unregister_all()  # GET /api/v5/unregister/all
    assert held_seats(admin) == []


def test_a_chain_from_another_key_fails_verification(
    server: ServerProcess, chains: dict[str, Path], admin: Any
) -> None:
    api = client(server, chains["other"] / "chain.pem")
    api.auth("demo", "demo-password")
    with pytest.raises(ValueError):  # pycryptodome: "Invalid signature" or "Plaintext too large"
        api.register_user(user="u1", license_id=1001)
    # The same client with the site's chain accepts the same answer.
    good = client(server, chains["site"] / "chain.pem")
    good.auth("demo", "demo-password")
    assert good.register_user(user="u1", license_id=1001)["id"] == 1001


def test_seats_are_one_space_across_v4_and_v5(server: ServerProcess, chains: dict[str, Path], admin: Any) -> None:
    v5 = client(server, chains["site"] / "chain.pem")
    v5.auth("demo", "demo-password")
    token = server.token("demo", "demo-password")

    def v4_register(user: str) -> tuple[int, Any]:
        return server.request("POST", "/api/v4/register", {"product": "demo", "user": user}, token=token)

    for user in ("a1", "a2", "a3"):
        v5.register_user(user=user, license_id=1001)
    status, body = v4_register("a4")
    assert (status, body["code"]) == (400, "floating_not_available")  # v5 seats fill the license for v4

    server.request("GET", "/api/v4/unregister/all", token=server.token())
    for user in ("b1", "b2", "b3"):
        assert v4_register(user)[0] == 200
    with pytest.raises(ClientError) as err:
        v5.register_user(user="b4", license_id=1001)
    assert (err.value.status, err.value.code) == (400, "floating_not_available")  # and v4 seats for v5
    assert sorted(s["user"] for s in held_seats(admin)) == ["b1", "b2", "b3"]


def test_python_apps_without_a_chain_or_license_id_get_clear_errors(server: ServerProcess, admin: Any) -> None:
    """What turning v5 on does to a Python app written for v1: it switches to v5 by itself."""
    api = client(server, None)  # no certificate_chain_path, verification on (the SDK's default)
    api.auth("demo", "demo-password")
    assert api.api_version == "v5"
    # Without a license id the SDK asks for /license/None/...: a clear 400, not a server error.
    with pytest.raises(ClientError) as err:
        api.register_user(user="c1")
    assert (err.value.status, err.value.code) == (400, "invalid_license_id")
    # Without a chain the SDK cannot check the (valid, signed) answer: the failure is the client's own.
    with pytest.raises(AttributeError):
        api.register_user(user="c1", license_id=1001)
    assert [s["user"] for s in held_seats(admin)] == ["c1"]
    errors = [line for line in server.log_lines() if line.get("level") in ("error", "critical")]
    assert errors == []


def test_ping_answers_pong_signed(server: ServerProcess, chains: dict[str, Path]) -> None:
    from licensespring.api.signature import FSSignatureVerifier

    resp = requests.get(f"{server.url}/api/v5/ping", timeout=10)
    assert resp.status_code == 200 and resp.json() == {"message": "pong", "version": "v5"}
    assert resp.content == b'{"message":"pong","version":"v5"}'
    verifier = FSSignatureVerifier(str(chains["site"] / "chain.pem"))
    verifier.verify_license_signature_v2(resp.content, resp.headers["LicenseSignature"])
