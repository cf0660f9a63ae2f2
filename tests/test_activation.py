"""Offline activation (issue 16) with the real CLIs in separate data directories, the vendor's and two
customers': a request, the vendor's file issued from it, its import; the same file on another server, a file for
a request this server never made, and a second file for a spent request are refused with their codes. And a
changed host fingerprint: the server goes on serving, warns, and a rebind request round-trips."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from floatsrv.entitlements import issue as vendor
from floatsrv.entitlements.request import read_request
from tests.conftest import example_dict, floatsrv_cli
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
