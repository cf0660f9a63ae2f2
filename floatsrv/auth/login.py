"""What stands between a password guess and a password check: the throttle (attempts counted first), the
hashing gate (bounded CPU, priority for clean addresses), and the keyed labels that name unknown usernames in
logs and the audit trail without keeping what was typed (a password typed into the username field, say)."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Protocol

from floatsrv.auth.hashing import HashGate
from floatsrv.auth.throttle import Attempt, LoginThrottle


class Shared(Protocol):
    """A throttle the nodes of a site share (domain.login_attempts.SharedThrottle)."""

    async def admit(self, address: str, username: str) -> Attempt | int: ...
    async def succeeded(self, attempt: Attempt) -> None: ...
    async def not_checked(self, attempt: Attempt) -> None: ...


@dataclass(slots=True)
class LoginDefense:
    throttle: LoginThrottle
    gate: HashGate
    label_key: bytes  # HMAC key for unknown usernames (derived from the server's identity key)
    shared: Shared | None = None  # on PostgreSQL: the site's throttle, used instead of `throttle`

    async def admit(self, address: str, username: str) -> Attempt | int:
        """Count an attempt before its check (auth.throttle): the Attempt, or whole seconds to wait.

        The site's shared throttle writes attempts to the database (and so to its WAL and backups): there the
        username is a keyed digest, never what was typed (a password typed into the username field, say)."""
        if self.shared:
            return await self.shared.admit(address, self._digest(username))
        return self.throttle.admit(address, username)

    async def succeeded(self, attempt: Attempt) -> None:
        if self.shared:
            await self.shared.succeeded(attempt)
        else:
            self.throttle.succeeded(attempt)

    async def not_checked(self, attempt: Attempt) -> None:
        if self.shared:
            await self.shared.not_checked(attempt)
        else:
            self.throttle.not_checked(attempt)

    def unknown_label(self, username: str) -> str:
        """A stable, unreadable name for a username that does not exist: repeated attempts correlate."""
        return f"unknown:{self._digest(username)[:16]}"

    def _digest(self, username: str) -> str:
        return hmac.new(self.label_key, username.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()


def label_key(identity_secret: bytes) -> bytes:
    """The HMAC key for username labels, derived from a server secret (never the secret itself)."""
    return hashlib.sha256(b"floatsrv-username-label/1\n" + identity_secret).digest()
