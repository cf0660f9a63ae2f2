"""Password hashing with scrypt (memory-hard, OpenSSL's through `hashlib`), in a self-describing format.

    scrypt$<n>$<r>$<p>$<salt, base64>$<hash, base64>

Verification is constant-time and costs the same whether or not the user exists (see `dummy_hash`).
`hashlib.scrypt` releases the GIL while it works (the `cryptography` package's Scrypt holds it), so a check
on a worker thread never stalls the event loop: see `auth.hashing`.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import os

# The shortest password anyone may set: declared in the config, `floatsrv user add`, or a password change.
MIN_PASSWORD_LENGTH = 10

# n=2**14, r=8: about 16 MiB and a few tens of milliseconds per check on a small server.
N, R, P = 2**14, 8, 1
_LENGTH = 32
# OpenSSL refuses scrypt parameters needing more memory than this (128 * n * r * p plus a little).
_MAX_MEMORY = 256 * 1024 * 1024


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int, length: int) -> bytes:
    return hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p, dklen=length, maxmem=_MAX_MEMORY)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def hash_password(password: str, *, n: int = N, r: int = R, p: int = P) -> str:
    salt = os.urandom(16)
    digest = _scrypt(password, salt, n, r, p, _LENGTH)
    return f"scrypt${n}${r}${p}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, encoded: str) -> bool:
    """True when `password` matches `encoded`; False for a mismatch or a malformed hash."""
    try:
        scheme, n, r, p, salt, digest = encoded.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest, validate=True)
        actual = _scrypt(password, base64.b64decode(salt, validate=True), int(n), int(r), int(p), len(expected))
    except (ValueError, TypeError, MemoryError):
        return False
    return hmac.compare_digest(actual, expected)


def is_valid_hash(encoded: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = encoded.split("$")
        base64.b64decode(salt, validate=True)
        base64.b64decode(digest, validate=True)
        return scheme == "scrypt" and int(n) > 1 and (int(n) & (int(n) - 1)) == 0 and int(r) > 0 and int(p) > 0
    except (ValueError, TypeError):
        return False


@functools.cache
def dummy_hash() -> str:
    """Checked against when the user does not exist, so a miss takes as long as a wrong password."""
    return hash_password(base64.b64encode(os.urandom(12)).decode())
