"""Bearer tokens: HS256 JWTs signed with a per-server key that lives in the data directory.

The algorithm is pinned (a token claiming `none` or RS256 is rejected), and `iss`, `aud`, `sub`, `iat`,
`exp` and `jti` are required. Time claims are checked against our injectable clock, not the OS clock,
so tests can move time. The key is created on first start with mode 0600 and never appears in the YAML.
"""

from __future__ import annotations

import os
import secrets
import stat
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import jwt

from floatsrv.clock import Clock
from floatsrv.errors import InvalidToken
from floatsrv.models import Role

ALGORITHM = "HS256"
ISSUER = "floatsrv"
AUDIENCE = "floatsrv-api"
# Tolerated clock difference for iat/nbf between machines.
LEEWAY_SECONDS = 60


@dataclass(frozen=True, slots=True)
class TokenClaims:
    username: str
    role: Role
    token_id: str
    issued_at: int  # seconds since the epoch, as in the JWT
    not_before: int
    expires_at: int


def load_or_create_key(path: Path) -> bytes:
    """Read the signing key, creating it (32 random bytes, mode 0600) on first use."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, stat.S_IRUSR | stat.S_IWUSR)
    except FileExistsError:
        return read_key(path)
    with os.fdopen(fd, "wb") as handle:
        handle.write(secrets.token_bytes(32))
        handle.flush()
        os.fsync(handle.fileno())
    return read_key(path)


def read_key(path: Path) -> bytes:
    key = path.read_bytes()
    if len(key) < 32:
        raise ValueError(f"token key {path} is too short; delete it to generate a new one")
    return key


def write_new_key(path: Path) -> None:
    """Replace the signing key with a new random one, atomically, keeping mode 0600."""
    write_secret(path, secrets.token_bytes(32))


def write_secret(path: Path, value: bytes) -> None:
    """Replace a key file atomically (temp file, fsync, rename, directory fsync), mode 0600."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(path.name + ".new")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, stat.S_IRUSR | stat.S_IWUSR)
    with os.fdopen(fd, "wb") as handle:
        handle.write(value)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temp, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


class TokenIssuer:
    def __init__(self, key: bytes, clock: Clock, lifetime: timedelta) -> None:
        self.key = key
        self._clock = clock
        self._lifetime = lifetime

    def issue(self, username: str, role: Role, lifetime: timedelta | None = None) -> tuple[str, TokenClaims]:
        """A new token; `lifetime` shortens the configured one (console sessions expire within hours)."""
        now = int(self._clock.now().timestamp())
        seconds = int(min(lifetime or self._lifetime, self._lifetime).total_seconds())
        claims = TokenClaims(username, role, secrets.token_hex(16), now, now, now + seconds)
        payload = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": username,
            # LicenseSpring's own tokens carry these two; some clients read them.
            "username": username,
            "role": role.value,
            "iat": claims.issued_at,
            "nbf": claims.not_before,
            "exp": claims.expires_at,
            "jti": claims.token_id,
        }
        return jwt.encode(payload, self.key, algorithm=ALGORITHM), claims

    def decode(self, token: str) -> TokenClaims:
        """Check signature, algorithm, issuer, audience and required claims (not time). Raises InvalidToken."""
        try:
            header = jwt.get_unverified_header(token)
            if header.get("alg") != ALGORITHM:
                raise InvalidToken("token algorithm not accepted", reason="algorithm")
            claims: dict[str, Any] = jwt.decode(
                token,
                self.key,
                algorithms=[ALGORITHM],
                audience=AUDIENCE,
                issuer=ISSUER,
                options={
                    "require": ["iss", "aud", "sub", "iat", "exp", "jti"],
                    # Time claims are checked by check_time() against the injectable clock.
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                },
            )
        except jwt.InvalidSignatureError:
            raise InvalidToken("token signature does not match", reason="signature") from None
        except jwt.InvalidAudienceError:
            raise InvalidToken("token was not issued for this API", reason="audience") from None
        except jwt.InvalidIssuerError:
            raise InvalidToken("token was not issued by floatsrv", reason="issuer") from None
        except jwt.MissingRequiredClaimError as exc:
            raise InvalidToken(f"token lacks the {exc.claim} claim", reason="claims") from None
        except jwt.PyJWTError:
            raise InvalidToken("token is malformed", reason="malformed") from None
        try:
            issued = int(claims["iat"])
            return TokenClaims(
                username=str(claims["sub"]),
                role=Role(str(claims.get("role"))),
                token_id=str(claims["jti"]),
                issued_at=issued,
                not_before=int(claims.get("nbf", issued)),
                expires_at=int(claims["exp"]),
            )
        except (TypeError, ValueError):
            raise InvalidToken("token claims are malformed", reason="claims") from None

    def check_time(self, claims: TokenClaims, now: float | None = None) -> None:
        """Refuse expired and not-yet-valid tokens; `now` (a POSIX timestamp) defaults to the clock's."""
        if now is None:
            now = self._clock.now().timestamp()
        if claims.expires_at <= now:
            raise InvalidToken("token has expired; log in again at GET /auth", reason="expired")
        if claims.issued_at > now + LEEWAY_SECONDS or claims.not_before > now + LEEWAY_SECONDS:
            raise InvalidToken("token is not valid yet", reason="not_yet_valid")

    def verify(self, token: str) -> TokenClaims:
        claims = self.decode(token)
        self.check_time(claims)
        return claims
