"""The build's trust anchor (floatsrv/entitlements/trust.py): a damaged or edited trust document is refused as a
whole, keys are read from the two forms floatsrv prints, and a vendor build names what it refuses in a config.
The end-to-end vendor build is in test_vendor_build.py; these are the cases a build script could get wrong."""

from __future__ import annotations

import base64
import copy
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.rsa import generate_private_key

from floatsrv.entitlements.fileformat import kid_of, raw_public_key
from floatsrv.entitlements.trust import (
    TrustAnchorError,
    config_problems,
    load_trust_anchor,
    parse_anchor,
    public_key_from_text,
)


def vendor_document(*, keys: int = 2, inline: bool = False) -> dict[str, Any]:
    entries = []
    for n in range(keys):
        key = Ed25519PrivateKey.generate().public_key()
        if n % 2:  # both forms floatsrv prints: PEM and base64 of the raw 32 bytes
            pem = key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
            text = pem.decode()
        else:
            text = base64.b64encode(raw_public_key(key)).decode()
        entries.append({"kid": kid_of(key), "public_key": text, "name": f"vendor key {n}"})
    return {"format": "floatsrv-trust/1", "build": "vendor", "allow_inline_licenses": inline, "keys": entries}


def test_the_repository_build_trusts_only_the_demo_key() -> None:
    anchor = load_trust_anchor()
    assert anchor.build == "repository" and not anchor.vendor_build
    assert [(key.kid, key.demo) for key in anchor.keys] == [("ea6769ee835bccee", True)]
    assert anchor.receipt_keys() == []  # receipts are verified with a configured key in this build
    assert anchor.key("ea6769ee835bccee") is not None and anchor.key("0" * 16) is None
    assert public_key_from_text(anchor.keys[0].text) is not None


def test_a_vendor_document_with_rotated_keys_loads() -> None:
    document = vendor_document(keys=3)
    anchor = parse_anchor(document)
    assert anchor.vendor_build and not anchor.allow_inline_licenses
    assert [key.kid for key in anchor.keys] == [entry["kid"] for entry in document["keys"]]
    assert len(anchor.receipt_keys()) == 3  # PEM and raw base64 forms both read


def _damage(change: str) -> dict[str, Any]:
    document = vendor_document()
    broken: dict[str, Any] = copy.deepcopy(document)
    if change == "format":
        broken["format"] = "floatsrv-trust/2"
    elif change == "build":
        broken["build"] = "customer"
    elif change == "no keys":
        broken["keys"] = []
    elif change == "kid of another key":
        broken["keys"][0]["kid"] = broken["keys"][1]["kid"]
    elif change == "short key":
        broken["keys"][0]["public_key"] = "AAAA"
    elif change == "not base64":
        broken["keys"][0]["public_key"] = "not base64!"
    elif change == "missing inline flag":
        del broken["allow_inline_licenses"]
    elif change == "keys not a list":
        broken["keys"] = 7
    return broken


@pytest.mark.parametrize(
    "change",
    ["format", "build", "no keys", "kid of another key", "short key", "not base64", "missing inline flag",
     "keys not a list"],
)  # fmt: skip
def test_a_damaged_document_is_refused_whole(change: str) -> None:
    with pytest.raises(TrustAnchorError):
        parse_anchor(_damage(change))


def test_a_document_that_is_not_an_object_is_refused() -> None:
    data: Any
    for data in ([], "floatsrv-trust/1", None):
        with pytest.raises(TrustAnchorError):
            parse_anchor(data)


def test_keys_of_other_kinds_are_refused() -> None:
    rsa = generate_private_key(public_exponent=65537, key_size=2048).public_key()
    pem = rsa.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    with pytest.raises(ValueError, match="not an Ed25519 public key"):
        public_key_from_text(pem)
    with pytest.raises(ValueError, match="base64 of 32 bytes"):
        public_key_from_text("QUJD")


def test_config_problems_name_the_key() -> None:
    repository = load_trust_anchor()
    assert config_problems(repository, inline_licenses=True, vendor_public_key=True) == []
    vendor = parse_anchor(vendor_document())
    problems = config_problems(vendor, inline_licenses=True, vendor_public_key=True)
    assert [problem.split(":")[0] for problem in problems] == ["licenses", "sync.vendor_public_key"]
    assert config_problems(vendor, inline_licenses=False, vendor_public_key=False) == []
    allowing = parse_anchor(vendor_document(inline=True))
    assert config_problems(allowing, inline_licenses=True, vendor_public_key=False) == []
