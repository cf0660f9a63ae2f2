"""Activation requests: what a server hands its vendor to get a license file bound to it (offline as a file,
`floatsrv license request --out FILE.req`; online as the body of `POST <upstream>/activate`).

A floatsrv signed document (`signing.sign`, kind `floatsrv-activation-request v1`) signed with the server's own
Ed25519 identity key, which it carries, as a certificate request does: the vendor learns which server made it
and that the server holds that key. `request_id` is fresh and random; the file that answers it is accepted
once, on that server only.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from floatsrv import __version__
from floatsrv.signing import SignatureError, public_key, public_key_text, sign, verify
from floatsrv.times import iso, parse_instant

KIND = "floatsrv-activation-request v1"
MAX_REQUEST_BYTES = 4096


@dataclass(frozen=True, slots=True)
class ActivationRequest:
    request_id: str
    server_key: str  # base64 of the server's raw Ed25519 public key (`floatsrv server-key`)
    server_id: str
    fingerprint: str
    previous_fingerprint: str | None  # set in a rebind: the fingerprint the server's files are bound to
    created_at: datetime
    version: str

    def payload(self) -> dict[str, Any]:
        return {
            "request_id": self.request_id,
            "server_key": self.server_key,
            "server_id": self.server_id,
            "fingerprint": self.fingerprint,
            "previous_fingerprint": self.previous_fingerprint,
            "created_at": iso(self.created_at),
            "floatsrv_version": self.version,
        }


def new_request(
    key: Ed25519PrivateKey, *, server_id: str, fingerprint: str, previous_fingerprint: str | None, now: datetime
) -> tuple[ActivationRequest, bytes]:
    """A new request and its signed document."""
    request = ActivationRequest(
        request_id=f"rq-{secrets.token_hex(16)}",
        server_key=public_key_text(key),
        server_id=server_id,
        fingerprint=fingerprint,
        previous_fingerprint=previous_fingerprint,
        created_at=now,
        version=__version__,
    )
    return request, sign(KIND, request.payload(), key)


def read_request(document: bytes) -> ActivationRequest:
    """Verify a request's signature with the key it carries, then read it. Raises SignatureError."""
    if len(document) > MAX_REQUEST_BYTES:
        raise SignatureError(f"an activation request is at most {MAX_REQUEST_BYTES} bytes")
    lines = document.split(b"\n")
    if len(lines) != 4:
        raise SignatureError("not a floatsrv activation request (expected three lines)")
    # The key that signed it is inside what it signs (proof of possession): only that one field is read
    # before the signature is checked, and everything is read again from the verified payload.
    try:
        claimed = json.loads(lines[1]).get("server_key")
    except (ValueError, AttributeError):
        raise SignatureError("not a floatsrv activation request (the payload is not a JSON object)") from None
    if not isinstance(claimed, str):
        raise SignatureError("the activation request names no server_key")
    payload = verify(KIND, document, public_key(claimed))
    try:
        previous = payload.get("previous_fingerprint")
        request = ActivationRequest(
            request_id=str(payload["request_id"]),
            server_key=str(payload["server_key"]),
            server_id=str(payload["server_id"]),
            fingerprint=str(payload["fingerprint"]),
            previous_fingerprint=str(previous) if previous is not None else None,
            created_at=parse_instant(str(payload["created_at"])),
            version=str(payload.get("floatsrv_version", "")),
        )
    except (KeyError, ValueError) as exc:
        raise SignatureError(f"the activation request is incomplete: {exc}") from None
    if not (16 <= len(request.request_id) <= 100):
        raise SignatureError("the activation request's request_id is not valid")
    return request
