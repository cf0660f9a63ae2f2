"""Who may log in: the users declared in the config, with hashed passwords held in memory.

Plain-text passwords from the config are hashed once at start-up, so every check goes through the same
constant-time scrypt path, and an unknown user costs as much as a wrong password.
"""

from __future__ import annotations

from dataclasses import dataclass

from floatsrv.auth.passwords import dummy_hash, hash_password, verify_password
from floatsrv.config import UserConfig
from floatsrv.models import Principal, Role


@dataclass(frozen=True, slots=True)
class _Entry:
    username: str
    role: Role
    password_hash: str


class UserDirectory:
    def __init__(self, users: list[UserConfig]) -> None:
        entries = {}
        for user in users:
            if user.password_hash is not None:
                encoded = user.password_hash
            else:
                assert user.password is not None  # config validation guarantees one of the two
                encoded = hash_password(user.password.get_secret_value())
            entries[user.username] = _Entry(user.username, user.role, encoded)
        self._entries = entries

    def authenticate(self, username: str, password: str) -> Principal | None:
        """Slow on purpose (scrypt); call it from a worker thread."""
        entry = self._entries.get(username)
        ok = verify_password(password, entry.password_hash if entry else dummy_hash())
        return Principal(entry.username, entry.role) if ok and entry else None

    def lookup(self, username: str) -> Principal | None:
        entry = self._entries.get(username)
        return Principal(entry.username, entry.role) if entry else None
