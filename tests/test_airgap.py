"""Air-gapped usage: a report signed with the server's Ed25519 key goes out on a file; the vendor's signed
receipt comes back and marks it delivered. Any changed byte in either is rejected."""

from __future__ import annotations

from pathlib import Path

import pytest

from floatsrv.signing import REPORT, SignatureError, public_key, public_key_text, sign, verify
from tests.conftest import Api
from tests.conftest import floatsrv_cli as floatsrv


def test_every_single_byte_change_is_rejected() -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    document = sign(REPORT, {"report_id": "b_1", "records": [{"quantity": "12.5", "revision": 3}]}, key)
    verifier = public_key(public_key_text(key))
    assert verify(REPORT, document, verifier)["records"][0]["quantity"] == "12.5"
    for position in range(len(document)):
        for replacement in (0x20, 0x41):
            changed = bytearray(document)
            if changed[position] == replacement:
                continue
            changed[position] = replacement
            with pytest.raises(SignatureError):
                verify(REPORT, bytes(changed), verifier)
    with pytest.raises(SignatureError):
        verify(REPORT, document + b"\n", verifier)  # nothing may be added either
    other = Ed25519PrivateKey.generate()
    with pytest.raises(SignatureError, match="does not match"):
        verify(REPORT, document, public_key(public_key_text(other)))


async def test_export_verify_receipt_ack(api: Api, tmp_path: Path) -> None:
    for n in range(3):
        await api.post("/api/v4/add_consumption", {"product": "demo", "user": "u", "consumptions": n + 1})
    await api.post(
        "/api/v4/add_feature_consumption", {"product": "demo", "user": "u", "feature": "render", "consumptions": 4}
    )
    data = ["--data-dir", str(api.config.storage.data_dir)]
    server_key = floatsrv("server-key", *data).stdout.strip()
    assert len(server_key) == 44 and server_key == floatsrv("server-key", *data).stdout.strip()  # stable
    assert (api.config.signing_key_path.stat().st_mode & 0o777) == 0o600

    report = tmp_path / "usage-report.fsr"
    exported = floatsrv("usage", "export", "--out", str(report), *data)
    assert exported.returncode == 0, exported.stderr
    assert "wrote 2 records" in exported.stdout
    checked = floatsrv("usage", "verify", str(report), "--public-key", server_key)
    assert checked.returncode == 0 and "2 records" in checked.stdout, checked.stderr

    tampered = tmp_path / "tampered.fsr"
    raw = report.read_bytes()
    tampered.write_bytes(raw.replace(b'"quantity":"6"', b'"quantity":"5"'))
    assert tampered.read_bytes() != raw
    rejected = floatsrv("usage", "verify", str(tampered), "--public-key", server_key)
    assert rejected.returncode == 1 and "report rejected" in rejected.stderr

    vendor_key = tmp_path / "vendor.pem"
    vendor_public = floatsrv("usage", "keygen", "--out", str(vendor_key)).stdout.strip()
    receipt = tmp_path / "receipt.fsr"
    made = floatsrv(
        "usage",
        "receipt",
        str(report),
        "--server-public-key",
        server_key,
        "--vendor-key",
        str(vendor_key),
        "--out",
        str(receipt),
    )
    assert made.returncode == 0, made.stderr
    refused = floatsrv(
        "usage",
        "receipt",
        str(tampered),
        "--server-public-key",
        server_key,
        "--vendor-key",
        str(vendor_key),
        "--out",
        str(tmp_path / "nope.fsr"),
    )
    assert refused.returncode == 1  # the vendor refuses a tampered report too

    bad_receipt = tmp_path / "bad-receipt.fsr"
    bad_receipt.write_bytes(receipt.read_bytes().replace(b'"records":2', b'"records":3'))
    assert floatsrv("usage", "ack", str(bad_receipt), "--vendor-public-key", vendor_public, *data).returncode == 1
    impostor = tmp_path / "impostor.pem"
    floatsrv("usage", "keygen", "--out", str(impostor))
    assert (
        floatsrv(
            "usage", "ack", str(receipt), "--vendor-public-key", floatsrv("server-key", *data).stdout.strip(), *data
        ).returncode
        == 1
    )  # wrong key

    status, body = await api.get("/v1/sync")
    assert body["data"]["airgap"]["pending_records"] == 2
    acked = floatsrv("usage", "ack", str(receipt), "--vendor-public-key", vendor_public, *data)
    assert acked.returncode == 0 and "acknowledged 2 records" in acked.stdout, acked.stderr
    status, body = await api.get("/v1/sync")
    assert body["data"]["airgap"]["pending_records"] == 0
    assert floatsrv("usage", "export", "--out", str(tmp_path / "again.fsr"), *data).stdout.startswith("nothing")

    await api.post("/api/v4/add_consumption", {"product": "demo", "user": "u", "consumptions": 1})
    assert "wrote 1 records" in floatsrv("usage", "export", "--out", str(tmp_path / "next.fsr"), *data).stdout
    status, body = await api.get(
        "/v1/audit", token=await api.login("admin", "admin-password"), params={"action": "usage_acknowledged"}
    )
    assert body["data"]["data"][0]["detail"] == {"records": 2}
