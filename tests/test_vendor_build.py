"""Vendor builds and the vendor's tools, as real processes: keys made by `floatsrv vendor keygen`, a build
that trusts them (`dev.py trust` on a copy of the package, as `dev.py build --vendor-key` and the Dockerfile
do; and once the single file itself), files from `floatsrv vendor issue`, imported with `floatsrv license
import` next to a running server, and the official LicenseSpring SDK using what the file grants."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from licensespring.licensefile.config import Configuration
from licensespring.licensefile.error import ConsumptionError
from licensespring.licensefile.floating_manager import FloatingManager

from tests.conftest import ROOT, example_dict, floatsrv_cli
from tests.polling import wait_for
from tests.procs import ServerProcess, free_port

pytestmark = pytest.mark.slow

VENDOR_LICENSES = {
    "licenses": [
        {
            "id": 3003,
            "product": "cad",
            "license_type": "consumption",
            "floating_users": 2,
            "max_consumptions": 50,
            "reset_consumption": True,
            "consumption_period": "monthly",
            "features": [
                {"code": "export", "floating_users": 1},
                {"code": "render", "feature_type": "consumption", "max_consumption": 10},
            ],
        }
    ]
}


def vendor_build(workdir: Path, *keys: Path, allow_inline: bool = False) -> dict[str, str]:
    """A vendor build of this checkout's package: the environment that runs it."""
    package = workdir / "build" / "floatsrv"
    shutil.copytree(ROOT / "floatsrv", package, ignore=shutil.ignore_patterns("__pycache__"))
    args = [a for key in keys for a in ("--vendor-key", str(key))] + (["--allow-inline-licenses"] * allow_inline)
    made = subprocess.run(
        [sys.executable, str(ROOT / "dev.py"), "trust", "--package", str(package), *args],
        capture_output=True,
        text=True,
        check=False,
    )
    assert made.returncode == 0, made.stderr
    return {**os.environ, "PYTHONPATH": str(package.parent)}


def vendor_keys(workdir: Path) -> Path:
    made = floatsrv_cli("vendor", "keygen", "--out", str(workdir / "vendor"))
    assert made.returncode == 0, made.stderr
    assert (workdir / "vendor" / "vendor.key").stat().st_mode & 0o777 == 0o600
    again = floatsrv_cli("vendor", "keygen", "--out", str(workdir / "vendor"))
    assert again.returncode != 0 and "refusing to overwrite" in again.stderr
    return workdir / "vendor"


def no_licenses() -> dict[str, Any]:
    config = example_dict()
    config["licenses"] = []
    return config


def sdk(server: ServerProcess, workdir: Path, product: str) -> FloatingManager:
    conf = Configuration(
        product=product,
        api_key="unused",
        shared_key="unused",
        api_domain=server.domain,
        api_protocol="http",
        file_path=str(workdir / f"licensefile-{uuid.uuid4().hex}"),
        verify_license_signature=False,
    )
    return FloatingManager(conf)


def test_round_trip_with_the_vendor_tools_and_the_sdk(tmp_path: Path) -> None:
    keys = vendor_keys(tmp_path)
    env = vendor_build(tmp_path, keys / "vendor.pub")
    server = ServerProcess(tmp_path / "customer", no_licenses(), signed=True, env=env)
    server.start()
    try:
        key = server.cli("server-key")
        assert key.returncode == 0, key.stderr
        (tmp_path / "server.key.txt").write_text(key.stdout)
        (tmp_path / "licenses.yaml").write_text(yaml.safe_dump(VENDOR_LICENSES))
        issued = floatsrv_cli(
            "vendor", "issue", "--key", str(keys / "vendor.key"), "--licenses", str(tmp_path / "licenses.yaml"),
            "--server-key", str(tmp_path / "server.key.txt"), "--series", "cad", "--sequence", "3",
            "--expires", "2099-01-01T00:00:00Z", "--out", str(tmp_path / "cad.lic"),
        )  # fmt: skip
        assert issued.returncode == 0, issued.stderr
        inspected = floatsrv_cli(
            "vendor", "inspect", str(tmp_path / "cad.lic"), "--public-key", str(keys / "vendor.pub")
        )
        assert inspected.returncode == 0 and "signature verifies" in inspected.stderr, inspected.stderr
        assert json.loads(inspected.stdout)["binding"] == {"server_key": key.stdout.strip()}
        demo_key = ROOT / "demo" / "demo-vendor.pub"
        wrong = floatsrv_cli("vendor", "inspect", str(tmp_path / "cad.lic"), "--public-key", str(demo_key))
        assert wrong.returncode == 1 and "NOT VERIFIED: license_file_signature_invalid" in wrong.stderr

        imported = server.cli("license", "import", str(tmp_path / "cad.lic"))
        assert imported.returncode == 0 and "licenses 3003" in imported.stdout, imported.stderr
        admin = server.token()
        # The running server applies what the CLI wrote within a second or so.
        wait_for(lambda: server.request("GET", "/v1/licenses/3003", token=admin)[0] == 200)
        listed = server.cli("license", "list", "--json")
        [row] = [r for r in json.loads(listed.stdout) if r["licenses"] == "3003"]
        assert (row["series"], row["sequence"], row["state"], row["binding"][:7]) == ("cad", 3, "in_force", "server ")

        manager = sdk(server, tmp_path, "cad")
        assert manager.auth("demo", "demo-password")["token"]
        lic = manager.register()
        assert (lic.id(), lic.max_floating_users(), lic.floating_in_use_devices()) == (3003, 2, 1)
        lic.check_feature("export")
        lic.add_local_feature_consumption("render", 10)
        assert lic.sync_feature_consumption("render") is True
        with pytest.raises(ConsumptionError):  # the SDK knows the file's limit: 10 included, no overage
            lic.add_local_feature_consumption("render", 1)
        user = server.token("demo", "demo-password")
        over = {"product": "cad", "user": "x", "feature": "render", "consumptions": 1}
        status, body = server.request("POST", "/api/v4/add_feature_consumption", over, user)
        assert (status, body["code"]) == (400, "feature_not_enough_consumptions")  # and so does the server
        # Air-gapped usage: the vendor's receipt is verified with the build's vendor key, never a configured one.
        exported = server.cli("usage", "export", "--out", str(tmp_path / "usage.fsr"))
        assert exported.returncode == 0, exported.stderr
        receipt = floatsrv_cli(
            "usage", "receipt", str(tmp_path / "usage.fsr"), "--server-public-key", key.stdout.strip(),
            "--vendor-key", str(keys / "vendor.key"), "--out", str(tmp_path / "receipt.fsr"),
        )  # fmt: skip
        assert receipt.returncode == 0, receipt.stderr
        forced = server.cli("usage", "ack", str(tmp_path / "receipt.fsr"), "--vendor-public-key", key.stdout.strip())
        assert forced.returncode == 2 and "verifies receipts with its own vendor keys" in forced.stderr
        acked = server.cli("usage", "ack", str(tmp_path / "receipt.fsr"))
        assert acked.returncode == 0 and "acknowledged" in acked.stdout, acked.stderr
        view = server.request("GET", "/v1/licenses/3003", token=admin)[1]["data"]
        assert (view["entitlements"], view["seats_in_use"]) == ("signed", 1)
        status, ready = server.request("GET", "/readyz")
        assert status == 200 and ready["checks"]["entitlements"]["status"] == "ok"

        # This build does not trust the repository's demo key: the demo file is refused, nothing changes.
        refused = server.cli("license", "import", str(ROOT / "licenses" / "demo.lic"))
        assert refused.returncode == 1 and "license_file_key_untrusted" in refused.stderr
        removed = server.cli("license", "remove", row["file_id"])
        assert removed.returncode == 0, removed.stderr
        wait_for(lambda: server.request("GET", "/v1/licenses/3003", token=admin)[0] == 404)
        again = server.cli("license", "import", str(tmp_path / "cad.lic"))
        assert again.returncode == 1 and "license_file_superseded" in again.stderr
    finally:
        assert server.stop() == 0


def test_a_vendor_build_refuses_inline_licenses_and_configured_receipt_keys(tmp_path: Path) -> None:
    keys = vendor_keys(tmp_path)
    env = vendor_build(tmp_path, keys / "vendor.pub")
    config = example_dict()  # the demo's license, inline in the YAML
    config["storage"]["data_dir"] = str(tmp_path / "data")
    path = tmp_path / "inline.yaml"
    path.write_text(yaml.safe_dump(config))
    served = floatsrv_cli("serve", "--config", str(path), "--port", str(free_port()), env=env, cwd=tmp_path)
    assert served.returncode == 2
    assert served.stderr.strip().splitlines() == [
        "floatsrv: config error: licenses: inline licenses are not allowed in this vendor build; import the "
        "vendor's signed license file instead (floatsrv license import FILE, or license_files)"
    ]
    checked = floatsrv_cli("check-config", "--config", str(path), env=env, cwd=tmp_path)
    assert checked.returncode == 1 and "licenses: inline licenses are not allowed" in checked.stderr
    config["licenses"] = []
    config["sync"]["vendor_public_key"] = (keys / "vendor.pub").read_text().strip()
    path.write_text(yaml.safe_dump(config))
    served = floatsrv_cli("serve", "--config", str(path), "--port", str(free_port()), env=env, cwd=tmp_path)
    assert served.returncode == 2 and "sync.vendor_public_key: this vendor build verifies receipts" in served.stderr

    # The vendor may allow inline licenses at build time; they are then served, flagged unsigned.
    allowing = vendor_build(tmp_path / "allowing", keys / "vendor.pub", allow_inline=True)
    config["sync"].pop("vendor_public_key")
    config["licenses"] = example_dict()["licenses"]
    path.write_text(yaml.safe_dump(config))
    assert floatsrv_cli("check-config", "--config", str(path), env=allowing, cwd=tmp_path).returncode == 0


def test_the_single_file_vendor_build_trusts_its_key_and_not_the_demo_key(tmp_path: Path) -> None:
    keys = vendor_keys(tmp_path)
    pyz = tmp_path / "vendor.pyz"
    build = subprocess.run(
        [sys.executable, "dev.py", "build", "-o", str(pyz), "--vendor-key", str(keys / "vendor.pub")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert build.returncode == 0, build.stderr[-3000:]
    assert "a vendor build trusting 1 key(s)" in build.stderr
    (tmp_path / "licenses.yaml").write_text(yaml.safe_dump(VENDOR_LICENSES))
    files = tmp_path / "licenses"
    files.mkdir()
    shutil.copy(ROOT / "licenses" / "demo.lic", files / "demo.lic")
    issued = floatsrv_cli(
        "vendor", "issue", "--key", str(keys / "vendor.key"), "--licenses", str(tmp_path / "licenses.yaml"),
        "--unbound", "--out", str(files / "cad.lic"),
    )  # fmt: skip
    assert issued.returncode == 0, issued.stderr
    config = no_licenses()
    config.pop("licenses")
    config["license_files"] = [str(files)]
    config["storage"]["data_dir"] = str(tmp_path / "data")
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(config))
    python = [getattr(sys, "_base_executable", sys.executable), "-I", str(pyz)]
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "SHIV_ROOT": str(tmp_path / "shiv"), "HOME": str(tmp_path)}
    checked = subprocess.run([*python, "check-config", "--config", str(config_path)], capture_output=True, text=True,
                             env=env, timeout=120)  # fmt: skip
    assert checked.returncode == 1 and "demo.lic: license_file_key_untrusted" in checked.stderr, checked.stderr
    port = free_port()
    log = tmp_path / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([*python, "serve", "--config", str(config_path), "--port", str(port)], stdout=out,
                                stderr=subprocess.STDOUT, env=env)  # fmt: skip
    try:
        server = ServerProcess.__new__(ServerProcess)
        server.port, server.ssl_context = port, None
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                if server.request("GET", "/healthz")[0] == 200:
                    break
            except OSError:
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
        admin = server.token()
        served = [lic["id"] for lic in server.request("GET", "/v1/licenses", token=admin)[1]["data"]["data"]]
        assert served == [3003]

        def refusals() -> list[dict[str, Any]]:  # the log is written in chunks: wait for the line
            lines = [json.loads(line) for line in log.read_text().splitlines()]
            return [e for e in lines if e["event"] == "license_file_refused"]

        wait_for(lambda: bool(refusals()))
        [refusal] = refusals()
        assert refusal["code"] == "license_file_key_untrusted" and refusal["path"].endswith("demo.lic")
    finally:
        proc.terminate()
        assert proc.wait(timeout=60) == 0, log.read_text()
