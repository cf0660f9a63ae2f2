"""The vendor keys this build trusts: package data (`trust.json`) fixed when the build is made.

The repository build trusts only the repository's demo vendor key (its private half is public, so licenses
it signs are flagged `entitlements: "demo"`) and allows inline YAML licenses. A vendor build
(`python3 dev.py build --vendor-key vendor.pub`, or the Docker build argument `VENDOR_KEYS`) trusts only the
vendor's keys, several at once so keys can be rotated, verifies usage receipts with them, and refuses inline
licenses unless the vendor allowed them at build time. No config key, environment variable or API can add a
trusted key: the customer controls all of those.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from importlib import resources
from typing import Any, Literal

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from floatsrv.entitlements.fileformat import kid_of, raw_public_key

FORMAT = "floatsrv-trust/1"
Build = Literal["repository", "vendor"]


class TrustAnchorError(Exception):
    """The build's trust anchor is damaged: the build must be made again."""


@dataclass(frozen=True, slots=True)
class TrustedKey:
    kid: str
    key: Ed25519PublicKey
    name: str
    demo: bool  # the repository's demo key: whatever it signs is flagged "demo"

    @property
    def text(self) -> str:
        return base64.b64encode(raw_public_key(self.key)).decode("ascii")


@dataclass(frozen=True, slots=True)
class TrustAnchor:
    build: Build
    keys: tuple[TrustedKey, ...]
    allow_inline_licenses: bool

    @property
    def vendor_build(self) -> bool:
        return self.build == "vendor"

    def key(self, kid: str) -> TrustedKey | None:
        for key in self.keys:
            if key.kid == kid:
                return key
        return None

    def receipt_keys(self) -> list[Ed25519PublicKey]:
        """In a vendor build, receipts are verified with the build's keys (never with a configured one)."""
        return [key.key for key in self.keys if not key.demo] if self.vendor_build else []


def public_key_from_text(text: str) -> Ed25519PublicKey:
    """An Ed25519 public key from base64 of its 32 raw bytes (as floatsrv prints keys) or a PEM block.
    Raises ValueError."""
    text = text.strip()
    if text.startswith("-----BEGIN"):
        key = serialization.load_pem_public_key(text.encode("ascii"))
        if not isinstance(key, Ed25519PublicKey):
            raise ValueError("not an Ed25519 public key")
        return key
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("not an Ed25519 public key (base64 of 32 bytes, or PEM)") from None
    if len(raw) != 32:
        raise ValueError("not an Ed25519 public key (base64 of 32 bytes, or PEM)")
    return Ed25519PublicKey.from_public_bytes(raw)


def parse_anchor(data: Any) -> TrustAnchor:
    """Check and load a trust document. Raises TrustAnchorError."""
    try:
        if data.get("format") != FORMAT or data.get("build") not in ("repository", "vendor"):
            raise TrustAnchorError(f"not a {FORMAT} document")
        keys = []
        for entry in data["keys"]:
            key = public_key_from_text(entry["public_key"])
            if kid_of(key) != entry["kid"]:
                raise TrustAnchorError(f"key {entry['kid']}: its kid does not match the key")
            keys.append(TrustedKey(entry["kid"], key, str(entry.get("name", "")), bool(entry.get("demo", False))))
        if not keys:
            raise TrustAnchorError("the build trusts no key")
        return TrustAnchor(data["build"], tuple(keys), bool(data["allow_inline_licenses"]))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise TrustAnchorError(f"damaged trust anchor: {exc}") from None


def load_trust_anchor() -> TrustAnchor:
    """This build's trust anchor (package data). Raises TrustAnchorError."""
    try:
        text = resources.files("floatsrv.entitlements").joinpath("trust.json").read_text(encoding="utf-8")
        return parse_anchor(json.loads(text))
    except (OSError, ValueError) as exc:
        raise TrustAnchorError(f"cannot read this build's trust anchor: {exc}") from None


def config_problems(anchor: TrustAnchor, *, inline_licenses: bool, vendor_public_key: bool) -> list[str]:
    """What a vendor build refuses in the customer's config (one line each, naming the key)."""
    problems = []
    if inline_licenses and not anchor.allow_inline_licenses:
        problems.append(
            "licenses: inline licenses are not allowed in this vendor build; import the vendor's signed license "
            "file instead (floatsrv license import FILE, or license_files)"
        )
    if vendor_public_key and anchor.vendor_build:
        problems.append(
            "sync.vendor_public_key: this vendor build verifies receipts with the vendor keys it was built with; "
            "remove the key from the config"
        )
    return problems
