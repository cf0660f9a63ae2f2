"""API keys for apps: `fsk_<id>_<secret>`, shown once; only SHA-256 of the secret is stored.

The secret has 256 bits of entropy, so a fast hash is enough (unlike passwords); comparison is
constant-time. The id is public and lets us find the key without scanning.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass

PREFIX = "fsk_"
_SHAPE = re.compile(r"^fsk_([0-9a-f]{12})_([A-Za-z0-9_\-]{43})$")


@dataclass(frozen=True, slots=True)
class NewKey:
    key_id: str
    plaintext: str
    secret_sha256: bytes


def generate() -> NewKey:
    key_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    return NewKey(key_id, f"{PREFIX}{key_id}_{secret}", digest(secret))


def digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("ascii")).digest()


def split(token: str) -> tuple[str, str] | None:
    """(id, secret) when `token` has the shape of an API key, else None."""
    match = _SHAPE.match(token)
    return (match.group(1), match.group(2)) if match else None
