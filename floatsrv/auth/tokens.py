"""Bearer tokens: HS256 JWTs signed with a per-server key that lives in the data directory.

The algorithm is pinned (a token claiming `none` or RS256 is rejected), and `iss`, `aud`, `sub`, `iat`,
`exp` and `jti` are required. Time claims are checked against our injectable clock, not the OS clock,
so tests can move time. The key is created on first start with mode 0600 and never appears in the YAML.
"""

from __future__ import annotations

import os
import secrets
import stat
import uuid
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
    expires_at: int


def load_or_create_key(path: Path) -> bytes:
    """Read the signing key, creating it (32 random bytes, mode 0600) on first use."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, stat.S_IRUSR | stat.S_IWUSR)
    except FileExistsError:
        key = path.read_bytes()
        if len(key) < 32:
            raise ValueError(f"token key {path} is too short; delete it to generate a new one") from None
        return key
    key = secrets.token_bytes(32)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key)
        handle.flush()
        os.fsync(handle.fileno())
    return key


class TokenIssuer:
    def __init__(self, key: bytes, clock: Clock, lifetime: timedelta) -> None:
        self._key = key
        self._clock = clock
        self._lifetime = lifetime

    def issue(self, username: str, role: Role) -> str:
        now = int(self._clock.now().timestamp())
        payload = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": username,
            # LicenseSpring's own tokens carry these two; some clients read them.
            "username": username,
            "role": role.value,
            "iat": now,
            "nbf": now,
            "exp": now + int(self._lifetime.total_seconds()),
            "jti": uuid.uuid4().hex,
        }
        return jwt.encode(payload, self._key, algorithm=ALGORITHM)

    def verify(self, token: str) -> TokenClaims:
        """Return the claims of a valid token. Raises InvalidToken (with a reason) for anything else."""
        try:
            header = jwt.get_unverified_header(token)
            if header.get("alg") != ALGORITHM:
                raise InvalidToken("token algorithm not accepted", reason="algorithm")
            claims: dict[str, Any] = jwt.decode(
                token,
                self._key,
                algorithms=[ALGORITHM],
                audience=AUDIENCE,
                issuer=ISSUER,
                options={
                    "require": ["iss", "aud", "sub", "iat", "exp", "jti"],
                    # Time claims are checked below against the injectable clock.
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
        now = self._clock.now().timestamp()
        try:
            issued, expires = int(claims["iat"]), int(claims["exp"])
            not_before = int(claims.get("nbf", issued))
            role = Role(str(claims.get("role")))
            username = str(claims["sub"])
        except (TypeError, ValueError):
            raise InvalidToken("token claims are malformed", reason="claims") from None
        if expires <= now:
            raise InvalidToken("token has expired; log in again at GET /auth", reason="expired")
        if issued > now + LEEWAY_SECONDS or not_before > now + LEEWAY_SECONDS:
            raise InvalidToken("token is not valid yet", reason="not_yet_valid")
        return TokenClaims(username, role, str(claims["jti"]), expires)
