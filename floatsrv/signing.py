"""Ed25519 signing of air-gapped usage reports (by this server) and of receipts (by the vendor).

A signed document is three lines: a header naming its kind and version, the payload as one line of canonical
JSON, and the base64 signature over the first two lines. Verification is strict about every byte: a changed
payload, header or signature, or anything extra, fails.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import stat
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

REPORT = "floatsrv-usage-report v1"
RECEIPT = "floatsrv-usage-receipt v1"


class SignatureError(ValueError):
    """The document is malformed, of the wrong kind, or not signed by the expected key."""


def load_or_create_private_key(path: Path) -> Ed25519PrivateKey:
    """The server's signing key (PEM, mode 0600), created on first use."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        pem = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, stat.S_IRUSR | stat.S_IWUSR)
        except FileExistsError:
            pass  # another process made it first; use theirs
        else:
            with os.fdopen(fd, "wb") as handle:
                handle.write(pem)
                handle.flush()
                os.fsync(handle.fileno())
    return read_private_key(path)


def read_private_key(path: Path) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise SignatureError(f"{path} is not an Ed25519 private key")
    return key


def new_private_key_pem() -> bytes:
    return Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def public_key_text(key: Ed25519PrivateKey) -> str:
    """The public key as base64 of its 32 raw bytes: one line, easy to paste into a config."""
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode("ascii")


def public_key(text: str) -> Ed25519PublicKey:
    try:
        raw = base64.b64decode(text.strip(), validate=True)
        return Ed25519PublicKey.from_public_bytes(raw)
    except (binascii.Error, ValueError):
        raise SignatureError("not an Ed25519 public key (base64 of 32 bytes)") from None


def canonical(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def sign(kind: str, payload: dict[str, Any], key: Ed25519PrivateKey) -> bytes:
    signed = kind.encode("ascii") + b"\n" + canonical(payload)
    return signed + b"\n" + base64.b64encode(key.sign(signed)) + b"\n"


def verify(kind: str, document: bytes, key: Ed25519PublicKey) -> dict[str, Any]:
    """The payload of a document of `kind` signed by `key`. Raises SignatureError."""
    lines = document.split(b"\n")
    if len(lines) != 4 or lines[3] != b"":
        raise SignatureError("not a floatsrv signed document (expected three lines)")
    header, body, signature = lines[0], lines[1], lines[2]
    if header != kind.encode("ascii"):
        raise SignatureError(f"expected a {kind!r} document")
    try:
        raw = base64.b64decode(signature, validate=True)
    except binascii.Error:
        raise SignatureError("the signature is not valid base64") from None
    if base64.b64encode(raw) != signature:
        raise SignatureError("the signature is not canonical base64")
    try:
        key.verify(raw, header + b"\n" + body)
    except InvalidSignature:
        raise SignatureError(
            "the signature does not match: the document was changed or signed by another key"
        ) from None
    try:
        payload: dict[str, Any] = json.loads(body)
    except ValueError:
        raise SignatureError("the payload is not JSON") from None
    if canonical(payload) != body:
        raise SignatureError("the payload is not in canonical form")
    return payload
