"""The license file format: ASCII armour around a JSON envelope around the exact payload bytes.

    -----BEGIN FLOATSRV LICENSE FILE-----
    <base64 of the envelope JSON, 64 characters per line>
    -----END FLOATSRV LICENSE FILE-----

    envelope = {"alg": "ed25519", "kid": <16 hex digits>, "payload": <base64 of the payload JSON bytes>,
                "sig": <base64 of the 64-byte Ed25519 signature>}

The signature covers `DOMAIN` followed by the payload bytes. No other floatsrv signature (usage reports,
receipts) starts with that prefix, so none can be passed off as a license file. Every base64 text is
decoded strictly (no skipped characters, canonical padding): a changed byte anywhere is either refused as
malformed or breaks the signature. Reading stops at the first problem, in this order: armour, envelope,
`alg`, key, signature; the payload is parsed only after its signature verified (`verify.open_file`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from floatsrv.errors import LicenseFileAlgUnsupported, LicenseFileMalformed, LicenseFileSignatureInvalid

DOMAIN = b"floatsrv-license-file/1\n"
BEGIN = "-----BEGIN FLOATSRV LICENSE FILE-----"
END = "-----END FLOATSRV LICENSE FILE-----"
ALG = "ed25519"
_LINE = 64
_ENVELOPE_KEYS = ("alg", "kid", "payload", "sig")
# A license file is small text; anything much larger is not one (and is refused before any work).
MAX_FILE_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Envelope:
    alg: str
    kid: str
    payload: bytes  # the exact payload JSON bytes the signature covers
    sig: bytes


def raw_public_key(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def kid_of(key: Ed25519PublicKey) -> str:
    """A key's id: the first 16 hex digits of SHA-256 over its 32 raw bytes."""
    return hashlib.sha256(raw_public_key(key)).hexdigest()[:16]


def strict_b64(text: str, what: str) -> bytes:
    """Decode standard base64 with padding, refusing any character outside the alphabet and any
    non-canonical encoding (a lenient decoder would let a changed byte through)."""
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise LicenseFileMalformed(f"{what} is not valid base64") from None
    if base64.b64encode(raw).decode("ascii") != text:
        raise LicenseFileMalformed(f"{what} is not canonical base64")
    return raw


def dearmour(text: str) -> bytes:
    """The envelope bytes inside the armour. Raises LicenseFileMalformed."""
    lines = text.strip().splitlines()
    if len(lines) < 3 or lines[0].strip() != BEGIN or lines[-1].strip() != END:
        raise LicenseFileMalformed(f"not a floatsrv license file (expected {BEGIN!r} ... {END!r})")
    # Line breaks may differ (a mail client re-wrapped it, CRLF on Windows); every other character counts.
    return strict_b64("".join(lines[1:-1]), "the armour")


def parse_envelope(raw: bytes) -> Envelope:
    """The envelope's four fields, `alg` checked before anything else. Raises LicenseFileMalformed or
    LicenseFileAlgUnsupported."""
    try:
        value = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except (UnicodeDecodeError, ValueError):
        raise LicenseFileMalformed("the envelope inside the armour is not JSON") from None
    if not isinstance(value, dict):
        raise LicenseFileMalformed("the envelope is not a JSON object")
    alg = value.get("alg")
    if alg != ALG:
        raise LicenseFileAlgUnsupported(f"alg {alg!r} is not supported (only {ALG!r})", alg=str(alg)[:40])
    if sorted(value) != sorted(_ENVELOPE_KEYS) or not all(isinstance(value[k], str) for k in _ENVELOPE_KEYS):
        raise LicenseFileMalformed(f"the envelope must hold exactly the strings {', '.join(_ENVELOPE_KEYS)}")
    kid = value["kid"]
    if len(kid) != 16 or any(c not in "0123456789abcdef" for c in kid):
        raise LicenseFileMalformed("kid must be 16 lowercase hex digits")
    sig = strict_b64(value["sig"], "sig")
    if len(sig) != 64:
        raise LicenseFileMalformed("sig must be a 64-byte Ed25519 signature")
    return Envelope(alg, kid, strict_b64(value["payload"], "payload"), sig)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        raise LicenseFileMalformed("the envelope has a duplicate key")
    return out


def check_signature(envelope: Envelope, key: Ed25519PublicKey) -> None:
    """Raises LicenseFileSignatureInvalid unless `key` signed DOMAIN + payload."""
    try:
        key.verify(envelope.sig, DOMAIN + envelope.payload)
    except InvalidSignature:
        raise LicenseFileSignatureInvalid(
            "the signature does not match: the file was changed, or signed by another key with the same id"
        ) from None


def encode_envelope(envelope: Envelope) -> bytes:
    doc = {
        "alg": envelope.alg,
        "kid": envelope.kid,
        "payload": base64.b64encode(envelope.payload).decode("ascii"),
        "sig": base64.b64encode(envelope.sig).decode("ascii"),
    }
    return json.dumps(doc, separators=(",", ":")).encode("ascii")


def armour(envelope_bytes: bytes) -> str:
    text = base64.b64encode(envelope_bytes).decode("ascii")
    lines = [text[i : i + _LINE] for i in range(0, len(text), _LINE)]
    return "\n".join([BEGIN, *lines, END]) + "\n"


def sign(payload: bytes, key: Ed25519PrivateKey) -> str:
    """A whole license file for the exact `payload` bytes, signed with `key`."""
    envelope = Envelope(ALG, kid_of(key.public_key()), payload, key.sign(DOMAIN + payload))
    return armour(encode_envelope(envelope))
