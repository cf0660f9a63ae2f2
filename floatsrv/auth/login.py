"""What stands between a password guess and a password check: the throttle (attempts counted first), the
hashing gate (bounded CPU, priority for clean addresses), and the keyed labels that name unknown usernames in
logs and the audit trail without keeping what was typed (a password typed into the username field, say)."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from floatsrv.auth.hashing import HashGate
from floatsrv.auth.throttle import LoginThrottle


@dataclass(slots=True)
class LoginDefense:
    throttle: LoginThrottle
    gate: HashGate
    label_key: bytes  # HMAC key for unknown usernames (derived from the server's identity key)

    def unknown_label(self, username: str) -> str:
        """A stable, unreadable name for a username that does not exist: repeated attempts correlate."""
        digest = hmac.new(self.label_key, username.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()
        return f"unknown:{digest[:16]}"


def label_key(identity_secret: bytes) -> bytes:
    """The HMAC key for username labels, derived from a server secret (never the secret itself)."""
    return hashlib.sha256(b"floatsrv-username-label/1\n" + identity_secret).digest()
