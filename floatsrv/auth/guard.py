"""Authenticating requests: bearer JWTs and API keys, checked against the current credential state.

The state (users, revoked tokens, API keys, signing-key generation) is held in memory and refreshed when
the database's auth version moves. Reading that version costs a read transaction, so it is read only when
something may have changed: this process's admin endpoints say so (`note_change`), another process (the
admin CLI) replaces the stamp file `auth.stamp` after committing (a `stat` notices it), and as a safety
net the version is read at least once a second anyway. Changes therefore apply on the very next request.
On PostgreSQL, where other nodes change credentials too, that once-a-second read is made off the event loop
by `follow` (workers.authfollow), which also loads a change; and a token's first lookup on this node is
awaited off the loop (`unseen`, `learn`): a database that stops answering then never stalls the loop.

The `stat` is made once per event-loop iteration, not once per request: every request authenticated in an
iteration had its headers read by that iteration's (or an earlier) `select`, so a stat made at the first
of them is already later than any of those requests was sent. A CLI change that finished before a client
sent its request is thus always seen, exactly as with a stat per request, at a fraction of the cost. The
time that token expiry is checked against is read once per iteration too, for the same reason: it is
never earlier than the arrival of the requests it judges.

Verified JWT signatures are cached (the HMAC and JSON work is the expensive part); time, revocation and
user checks run on every request regardless.
"""

from __future__ import annotations

import asyncio
import hmac
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from floatsrv.auth import apikeys
from floatsrv.auth.tokens import TokenClaims, TokenIssuer, read_key
from floatsrv.clock import Clock
from floatsrv.db import accounts as db
from floatsrv.db import shared_keys
from floatsrv.db.accounts import ApiKeyRow, UserRow
from floatsrv.db.store import Store
from floatsrv.errors import InvalidToken, Unauthenticated
from floatsrv.models import Principal, Role
from floatsrv.times import to_us

RECHECK_SECONDS = 1.0


def touch_stamp(path: Path) -> None:
    """Tell running servers that credentials changed: replace the stamp file (a new inode each time)."""
    temp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        temp.write_bytes(os.urandom(8))
        os.replace(temp, path)
    except OSError:
        temp.unlink(missing_ok=True)  # a full or read-only disk leaves no litter behind
        raise


def _stamp_of(path: str | Path) -> tuple[int, int]:
    try:
        status = os.stat(path)
    except FileNotFoundError:
        return (0, 0)
    return status.st_ino, status.st_mtime_ns


# With auth switched off, callers without credentials act as this principal (never as an admin).
ANONYMOUS = Principal("anonymous", Role.USER, credential="none")

_CACHE_LIMIT = 50_000


@dataclass(frozen=True, slots=True)
class Snapshot:
    version: int
    key_generation: int
    users: dict[str, UserRow]
    revoked: frozenset[str]
    api_keys: dict[str, ApiKeyRow]


def load_snapshot(conn: sqlite3.Connection, now: int) -> Snapshot:
    conn.execute("BEGIN")
    try:
        version, generation = db.auth_version(conn)
        users = {row.username: row for row in db.all_users(conn)}
        revoked = frozenset(db.revoked_token_ids(conn, now))
        keys = {row.id: row for row in db.all_api_keys(conn, include_revoked=False)}
    finally:
        conn.execute("COMMIT")
    return Snapshot(version, generation, users, revoked, keys)


class Guard:
    def __init__(
        self, store: Store, clock: Clock, issuer: TokenIssuer, key_path: Path, enabled: bool, stamp_path: Path
    ) -> None:
        self._store = store
        self._clock = clock
        self.issuer = issuer
        self._key_path = key_path
        self.enabled = enabled
        self._stamp_path = str(stamp_path)  # a str: os.stat converts a Path on every call
        touch_stamp(stamp_path)
        self._stamp = _stamp_of(stamp_path)
        self._checked = time.monotonic()
        self._dirty = False
        self.followed = False  # `follow` runs (PostgreSQL): `current` no longer re-reads once a second itself
        self._stamp_fresh = False  # the stamp was stat'ed in the current event-loop iteration
        self._iteration_now: float | None = None  # the clock as a timestamp, read once per iteration
        self._snapshot = store.peek(lambda conn: load_snapshot(conn, to_us(clock.now())))
        self._verified: dict[str, TokenClaims] = {}
        # Principals of tokens already checked against the current snapshot (cleared when it changes).
        self._principals: dict[str, tuple[TokenClaims, Principal]] = {}

    def note_change(self) -> None:
        """This process changed credentials: re-read them before the next request is authenticated."""
        self._dirty = True

    def current(self) -> Snapshot:
        """The credential state, re-read when it may have changed (see the module docstring)."""
        stamp = self._stamp if self._stamp_fresh else self._read_stamp()
        now = time.monotonic()
        if stamp == self._stamp and not self._dirty and (self.followed or now - self._checked < RECHECK_SECONDS):
            return self._snapshot
        self._stamp, self._dirty, self._checked = stamp, False, now
        version, generation = self._store.peek(db.auth_version)
        if version != self._snapshot.version:
            snapshot = self._store.peek(lambda conn: load_snapshot(conn, to_us(self._clock.now())))
            if generation != self._snapshot.key_generation:
                if self._store.shared:  # another node may have rotated it (db.shared_keys)
                    self._store.peek(lambda conn: shared_keys.refresh(conn, shared_keys.TOKEN, self._key_path))
                self._install_key()
            self._install(snapshot)
        return self._snapshot

    async def follow(self) -> None:
        """One step of following other nodes' credential changes off the event loop (PostgreSQL): the
        once-a-second re-read of `current` then never makes a request wait on the database, nor does an
        unreachable database stall the loop. A change is loaded here too and takes effect at once."""
        self.followed = True
        version, generation = await self._store.read(db.auth_version)
        if version == self._snapshot.version:
            return
        snapshot = await self._store.read(lambda conn: load_snapshot(conn, to_us(self._clock.now())))
        if generation != self._snapshot.key_generation:
            await self._store.read(lambda conn: shared_keys.refresh(conn, shared_keys.TOKEN, self._key_path))
            self._install_key()
        self._install(snapshot)

    def unseen(self, header: str) -> str | None:
        """While `follow` runs (PostgreSQL): the bearer token of this header if this node has not looked it up
        yet (its first request here); the caller then awaits `learn` so that lookup is not made on the loop."""
        if not self.followed:
            return None
        scheme, _, credential = header.partition(" ")
        credential = credential.strip()
        if scheme.lower() != "bearer" or credential in self._principals or credential in self._verified:
            return None
        return credential if credential.isascii() and apikeys.split(credential) is None else None

    async def learn(self, token: str) -> None:
        """Look a token up off the event loop; `authenticate` then finds it verified. A token that does not
        verify or was not issued here is left for `authenticate` to refuse with its reason."""
        try:
            claims = self.issuer.decode(token)
        except InvalidToken:
            return
        if await self._store.read(lambda conn: db.get_token(conn, claims.token_id)) is not None:
            self._remember(token, claims)

    def _remember(self, token: str, claims: TokenClaims) -> None:
        if len(self._verified) >= _CACHE_LIMIT:
            self._verified.clear()
        self._verified[token] = claims

    def _install_key(self) -> None:
        self.issuer.key = read_key(self._key_path)
        self._verified.clear()

    def _install(self, snapshot: Snapshot) -> None:
        if snapshot.version >= self._snapshot.version:  # a slower read never takes back a newer state
            self._snapshot = snapshot
            self._principals.clear()

    def _read_stamp(self) -> tuple[int, int]:
        self._iteration_now = None
        try:
            asyncio.get_running_loop().call_soon(self._stamp_expired)
            self._stamp_fresh = True
        except RuntimeError:  # no event loop (tests, tools): stat (and read the clock) every time
            pass
        return _stamp_of(self._stamp_path)

    def _stamp_expired(self) -> None:
        # Runs at the start of the next iteration, before the callbacks that iteration's select queues.
        self._stamp_fresh = False
        self._iteration_now = None

    def _now(self) -> float:
        now = self._iteration_now
        if now is None:
            now = self._clock.now().timestamp()
            if self._stamp_fresh:
                self._iteration_now = now
        return now

    def user(self, username: str) -> UserRow | None:
        row = self.current().users.get(username)
        return row if row is not None and not row.disabled else None

    def authenticate(self, header: str) -> Principal:
        """The principal behind an Authorization header. Raises Unauthenticated or InvalidToken."""
        if not header:
            if not self.enabled:
                return ANONYMOUS
            raise Unauthenticated("authentication required: log in at GET /auth and send Authorization: Bearer <token>")
        scheme, _, credential = header.partition(" ")
        credential = credential.strip()
        if scheme.lower() != "bearer" or not credential:
            raise InvalidToken("the Authorization header must be 'Bearer <token>'", reason="scheme")
        if not credential.isascii():  # tokens and API keys are ASCII; raw bytes arrive as surrogates
            raise InvalidToken("token is malformed", reason="malformed")
        snapshot = self.current()
        key = apikeys.split(credential)
        if key is not None:
            return self._api_key(snapshot, *key)
        return self._token(snapshot, credential)

    def _api_key(self, snapshot: Snapshot, key_id: str, secret: str) -> Principal:
        row = snapshot.api_keys.get(key_id)
        if row is None or not hmac.compare_digest(apikeys.digest(secret), row.secret_sha256):
            raise InvalidToken("unknown or revoked API key", reason="api_key")
        return Principal(f"apikey:{row.name}", Role(row.role), credential=f"api_key:{row.id}")

    def _token(self, snapshot: Snapshot, token: str) -> Principal:
        known = self._principals.get(token)
        if known is not None:  # same token, same credential state: only time can have made it invalid
            self.issuer.check_time(known[0], self._now())
            return known[1]
        claims = self._verified.get(token)
        if claims is None:
            claims = self.issuer.decode(token)
            if self._store.peek(lambda conn: db.get_token(conn, claims.token_id)) is None:
                raise InvalidToken("this token was not issued by this server", reason="unknown")
            self._remember(token, claims)
        self.issuer.check_time(claims, self._now())
        if claims.token_id in snapshot.revoked:
            raise InvalidToken("this token has been revoked; log in again", reason="revoked")
        user = snapshot.users.get(claims.username)
        if user is None or user.disabled:
            raise InvalidToken("the token's user no longer exists or is disabled", reason="user")
        principal = Principal(user.username, Role(user.role), user.must_change_password, f"token:{claims.token_id}")
        if len(self._principals) >= _CACHE_LIMIT:
            self._principals.clear()
        self._principals[token] = (claims, principal)
        return principal
