"""Offline activation (issue 16) with the real CLIs in separate data directories, the vendor's and two
customers': a request, the vendor's file issued from it, its import; the same file on another server, a file for
a request this server never made, and a second file for a spent request are refused with their codes. And a
changed host fingerprint: the server goes on serving, warns, and a rebind request round-trips. And what the admin
API's request endpoints (`POST /v1/license-files/requests`, LicenseSpring's `POST /api/v4/license/generate`)
answer: a request signed with the server's identity key, recorded, and answered by the vendor tool with a file
that imports and serves."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import shutil
import sqlite3
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from floatsrv import __version__
from floatsrv.clock import ManualClock
from floatsrv.entitlements import issue as vendor
from floatsrv.entitlements.request import read_request
from floatsrv.times import iso
from tests.conftest import Api, example_dict, floatsrv_cli
from tests.licensing import DEMO_KEY_PATH, LONG_AGO, demo_key
from tests.polling import wait_for
from tests.procs import ServerProcess

CAD = [
    {
        "id": 2001,
        "product": "cad",
        "floating_users": 2,
        "floating_timeout": 30,
        "features": [],
    }
]


def vendor_issue(workdir: Path, request: Path, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """The vendor, on its own machine (its own working directory): a file for this request."""
    licenses = workdir / "cad.yaml"
    licenses.write_text(yaml.safe_dump({"licenses": CAD}))
    return floatsrv_cli(
        "vendor", "issue", "--key", str(DEMO_KEY_PATH), "--licenses", str(licenses), "--request", str(request),
        "--series", "cad", "--out", str(out), *extra, cwd=workdir,
    )  # fmt: skip


def customer(tmp_path: Path, name: str) -> ServerProcess:
    workdir = tmp_path / name
    workdir.mkdir()
    server = ServerProcess(workdir, example_dict())
    server.start()
    return server


def serves_cad(server: ServerProcess) -> bool:
    status, body = server.request("GET", "/api/v4/license?product=cad", token=server.token())
    return status == 200


def test_offline_round_trip_and_what_is_refused(tmp_path: Path) -> None:
    vendor_dir = tmp_path / "vendor"
    vendor_dir.mkdir()
    first, second = customer(tmp_path, "first"), customer(tmp_path, "second")
    try:
        request = tmp_path / "first.req"
        made = first.cli("license", "request", "--out", str(request))
        assert made.returncode == 0 and "activation request rq-" in made.stdout, (made.stdout, made.stderr)
        again = first.cli("license", "request", "--out", str(request))
        assert again.returncode != 0 and "--force" in again.stderr  # never overwritten silently
        asked = read_request(request.read_bytes())
        key = first.cli("server-key").stdout.strip()
        assert asked.server_key == key and asked.fingerprint == first.cli("fingerprint").stdout.strip()

        issued = vendor_issue(vendor_dir, request, vendor_dir / "cad.lic", "--sequence", "1")
        assert issued.returncode == 0, issued.stderr
        assert not serves_cad(first)
        imported = first.cli("license", "import", str(vendor_dir / "cad.lic"))
        assert imported.returncode == 0 and "licenses 2001" in imported.stdout, (imported.stdout, imported.stderr)
        wait_for(lambda: serves_cad(first))  # the running server applies the CLI's change within a second
        listed = json.loads(first.cli("license", "list", "--json").stdout)
        [cad] = [row for row in listed if row["series"] == "cad"]
        assert cad["request_id"] == asked.request_id and cad["fingerprint"] == asked.fingerprint, cad

        # The same file on another server: bound to the first one's key.
        elsewhere = second.cli("license", "import", str(vendor_dir / "cad.lic"))
        assert elsewhere.returncode == 1 and "license_file_wrong_server" in elsewhere.stderr, elsewhere.stderr
        # A second file for the spent request (the vendor issued twice): refused.
        issued = vendor_issue(vendor_dir, request, vendor_dir / "cad-2.lic", "--sequence", "2")
        assert issued.returncode == 0, issued.stderr
        spent = first.cli("license", "import", str(vendor_dir / "cad-2.lic"))
        assert spent.returncode == 1 and "license_request_spent" in spent.stderr, spent.stderr
        # A file bound to this server's key that answers a request it never made.
        payload = vendor.payload_bytes(
            vendor.validated(CAD),
            binding={"server_key": key},
            issued_at=LONG_AGO,
            series="cad",
            sequence=3,
            request_id="rq-0123456789abcdef0123456789abcdef",
        )
        forged = vendor_dir / "never-asked.lic"
        forged.write_text(vendor.issue(payload, demo_key()))
        unknown = first.cli("license", "import", str(forged))
        assert unknown.returncode == 1 and "license_request_unknown" in unknown.stderr, unknown.stderr
        assert serves_cad(first)  # refusals changed nothing
        audit = first.cli("audit", "--json").stdout
        assert "activation_request_created" in audit and "license_file_refused" in audit
    finally:
        assert first.stop() == 0
        assert second.stop() == 0


def test_a_changed_fingerprint_keeps_serving_and_asks_for_a_rebind(tmp_path: Path) -> None:
    vendor_dir = tmp_path / "vendor"
    vendor_dir.mkdir()
    server = customer(tmp_path, "site")
    request = tmp_path / "site.req"
    try:
        assert server.cli("license", "request", "--out", str(request)).returncode == 0
        assert vendor_issue(vendor_dir, request, vendor_dir / "cad.lic").returncode == 0
        assert server.cli("license", "import", str(vendor_dir / "cad.lic")).returncode == 0
    finally:
        assert server.stop() == 0
    old = read_request(request.read_bytes()).fingerprint
    # The data directory is copied elsewhere (a restore into a new directory, a rebuilt volume): another
    # fingerprint. (A rename keeps the directory's identity, and so the fingerprint.)
    moved = server.data_dir.with_name("data-moved")
    shutil.copytree(server.data_dir, moved)
    shutil.rmtree(server.data_dir)
    config: dict[str, Any] = yaml.safe_load(server.config_path.read_text())
    config["storage"]["data_dir"] = str(moved)
    config["server"]["port"] = server.port  # `floatsrv status` asks the port the config names
    server.config_path.write_text(yaml.safe_dump(config))
    server.data_dir = moved
    server.start()
    try:
        assert serves_cad(server)  # serving goes on
        status, ready = server.request("GET", "/readyz")
        files = ready["checks"]["license_files"]
        assert status == 200 and files["status"] == "warning" and files["fingerprint_changed"], ready
        assert "re-activate" in files["message"]
        # The line is in the server's log file once its writer flushed (under a loaded machine, a moment later).
        wait_for(lambda: any(line.get("event") == "fingerprint_changed" for line in server.log_lines()))
        shown = server.cli("status")
        assert "re-activate" in shown.stdout, shown.stdout
        rebind = tmp_path / "rebind.req"
        made = server.cli("license", "request", "--out", str(rebind))
        assert made.returncode == 0 and f"a rebind from fingerprint {old}" in made.stdout, made.stdout
        asked = read_request(rebind.read_bytes())
        assert asked.previous_fingerprint == old and asked.fingerprint != old
        issued = vendor_issue(vendor_dir, rebind, vendor_dir / "cad-rebound.lic", "--sequence", "2")
        assert issued.returncode == 0 and "a rebind" in issued.stdout, issued.stdout
        assert server.cli("license", "import", str(vendor_dir / "cad-rebound.lic")).returncode == 0
        wait_for(lambda: server.request("GET", "/readyz")[1]["checks"]["license_files"]["status"] == "ok")
    finally:
        assert server.stop() == 0


# --- the admin API's activation requests ---

V1_REQUESTS = "/v1/license-files/requests"
V4_GENERATE = "/api/v4/license/generate"
REQUEST_FIELDS = {
    "request_id", "server_key", "server_id", "fingerprint", "previous_fingerprint", "created_at", "floatsrv_version"
}  # fmt: skip


def signed_payload(document: bytes, key: Ed25519PublicKey) -> dict[str, Any]:
    """The request's payload, once its Ed25519 signature (over the header line and the payload line) verifies
    with `key`; checked here with the cryptography library, not with floatsrv's own reader."""
    header, body, signature, end = document.split(b"\n")
    assert (header, end) == (b"floatsrv-activation-request v1", b""), document
    key.verify(base64.b64decode(signature, validate=True), header + b"\n" + body)
    with pytest.raises(InvalidSignature):  # and a changed byte does not verify
        key.verify(base64.b64decode(signature), header + b"\n" + body.replace(b"rq-", b"rq_"))
    payload: dict[str, Any] = json.loads(body)
    return payload


async def test_the_request_endpoints_answer_a_signed_recorded_request_the_vendor_answers(
    api_factory: Any, tmp_path: Path
) -> None:
    # (The server's clock is the vendor machine's, the real one: the vendor tool dates its files now.)
    clock = ManualClock(datetime.now(UTC))
    api: Api = await api_factory(lambda data: data["sync"].update(server_id="plant-7"), clock=clock)  # as a user
    key_text = (await api.cli("server-key")).stdout.strip()
    server_key = Ed25519PublicKey.from_public_bytes(base64.b64decode(key_text))
    fingerprint = (await api.cli("fingerprint")).stdout.strip()
    assert key_text and fingerprint

    for path in (V1_REQUESTS, V4_GENERATE):  # a user is no admin
        status, body = await api.post(path, {})
        assert status == 403, (path, body)
    admin = await api.login("admin", "admin-password")
    for path in (V1_REQUESTS, V4_GENERATE):  # making a request changes state: never on a GET
        async with api.client.get(path, headers=api.headers(admin)) as resp:
            assert resp.status == 405, (path, resp.status, await resp.text())

    # /v1: the request's fields and its signed text, as JSON.
    status, body = await api.post(V1_REQUESTS, {})
    assert status == 201 and body["success"] is True, body
    made = body["data"]
    assert set(made) == REQUEST_FIELDS | {"object", "request", "file_name"}, made
    assert re.fullmatch(r"rq-[0-9a-f]{32}", made["request_id"]), made
    assert (made["object"], made["file_name"]) == ("activation_request", f"{made['request_id']}.req")
    assert (made["server_key"], made["fingerprint"], made["server_id"]) == (key_text, fingerprint, "plant-7")
    assert (made["previous_fingerprint"], made["floatsrv_version"]) == (None, __version__)
    assert made["created_at"] == iso(api.clock.now())
    v1_document = made["request"].encode("ascii")
    assert signed_payload(v1_document, server_key) == {name: made[name] for name in REQUEST_FIELDS}

    # LicenseSpring's generate: the same kind of request, as a file to download; a fresh request id.
    async with api.client.post(V4_GENERATE, json={"product": "cad"}, headers=api.headers(admin)) as resp:
        assert resp.status == 200, await resp.text()
        assert resp.content_type == "application/octet-stream"
        v4_document = await resp.read()
        disposition = resp.headers["Content-Disposition"]
    generated = signed_payload(v4_document, server_key)
    assert set(generated) == REQUEST_FIELDS and generated["request_id"] != made["request_id"], generated
    assert disposition == f'attachment; filename="{generated["request_id"]}.req"'
    assert (generated["server_key"], generated["fingerprint"]) == (key_text, fingerprint)

    # Both are recorded (unspent) and audited as the admin's; the refused and GET attempts made none.
    with sqlite3.connect(f"file:{api.config.db_path}?mode=ro", uri=True) as conn:
        rows = conn.execute("SELECT request_id, created_by, spent_at FROM activation_requests").fetchall()
    conn.close()
    assert sorted(rows) == sorted([(made["request_id"], "admin", None), (generated["request_id"], "admin", None)])
    status, audit = await api.get("/v1/audit", params={"action": "activation_request_created"})
    assert status == 200, audit
    audited = {(row["target"], row["actor"]) for row in audit["data"]["data"]}
    assert audited == {(made["request_id"], "admin"), (generated["request_id"], "admin")}, audited

    # The vendor answers each with its tool; the files import here and serve.
    vendor_dir = tmp_path / "vendor"
    vendor_dir.mkdir()
    for number, document in enumerate((v4_document, v1_document), start=1):
        request = tmp_path / f"request-{number}.req"
        request.write_bytes(document)
        issued_file = vendor_dir / f"cad-{number}.lic"
        issued = await asyncio.to_thread(vendor_issue, vendor_dir, request, issued_file, "--sequence", str(number))
        assert issued.returncode == 0, issued.stderr
        clock.set(datetime.now(UTC))  # the file was carried back in: it is valid from when it was issued
        status, body = await api.post(
            "/v1/license-files", None, raw=issued_file.read_bytes(), headers={"Content-Type": "text/plain"}
        )
        assert status == 201, body
        asked = json.loads(document.split(b"\n")[1])
        assert (body["data"]["request_id"], body["data"]["binding"]) == (
            asked["request_id"], {"server_key": key_text, "fingerprint": fingerprint}
        ), body  # fmt: skip
        status, body = await api.post("/api/v4/register", {"product": "cad", "user": f"user-{number}"})
        assert status == 200, body
    with sqlite3.connect(f"file:{api.config.db_path}?mode=ro", uri=True) as conn:
        spent = dict(conn.execute("SELECT request_id, spent_by FROM activation_requests").fetchall())
    conn.close()
    assert all(spent.values()), spent  # each request is spent by the file that answered it
