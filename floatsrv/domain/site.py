"""One site, several nodes (PostgreSQL): the settings every node must share, checked and propagated.

A node's decisions depend on parts of its YAML: the licenses (inline, and the files it loads), the policy,
the users and login limits, seat and usage rules, licensing, the v5 API, sync and report settings. Nodes
that differ in them would answer the same request differently, so a digest of each of those sections is
kept in the database (db.site):

- at start (`join`): the first node of a site (no other node is connected) records its settings; a node
  joining running nodes must have the same ones, or it refuses to start, naming the sections that differ;
- at a reload (`publish`): the node's new settings and policy become the site's;
- on every node (`follow`, polled): when the site's settings moved, the node serves the site's policy at
  once and says which of its own sections differ from the site's (their file must be brought in line
  before the node next restarts, or it will refuse to start).

The policy is stored in a versioned format (`POLICY_FORMAT`, `encode_policy`, `decode_policy`); the digests
are plain JSON (an object of hex strings).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from typing import Any

from pydantic import BaseModel, SecretStr

from floatsrv.config import Config
from floatsrv.db import site as db
from floatsrv.db.store import Store
from floatsrv.entitlements.verify import config_file_texts
from floatsrv.policyconfig import PolicyConfig

SHARED = ("licenses", "policy", "auth", "seats", "usage", "licensing", "api_v5", "sync", "reports", "console")


def _plain(value: Any) -> Any:
    if isinstance(value, SecretStr):
        return value.get_secret_value()  # only its digest is ever stored
    if isinstance(value, BaseModel):
        return {key: _plain(item) for key, item in value}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    return value if isinstance(value, (str, int, float, bool)) or value is None else str(value)


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(_plain(value), sort_keys=True).encode()).hexdigest()


def digests(config: Config) -> dict[str, str]:
    """A digest per shared section; the licenses by content (inline ones and the texts of the files loaded),
    never by path: nodes keep their files where they like."""
    texts, _ = config_file_texts(config.license_paths)
    found = {name: _digest(getattr(config, name)) for name in SHARED if name != "licenses"}
    found["licenses"] = _digest([_plain(config.licenses), sorted(text for _, text in texts)])
    return found


# How the site's policy is stored (floatsrv_meta.site_policy). Format 1: `{"format": 1, "policy": {...}}`, the
# policy under the names the config's `policy:` section gives it (aliases: `for`, not `for_`), read as that
# section is. Format 0 (floatsrv 0.7.0): `PolicyConfig.model_dump_json()` alone, without a version. A change that
# a node reading the current format could misread moves POLICY_FORMAT and adds a reader below; every format
# ever written stays readable (tests/test_stored_formats.py replays each).
POLICY_FORMAT = 1


def encode_policy(policy: PolicyConfig) -> str:
    """The stored form of the site's policy, format POLICY_FORMAT."""
    stored = {"format": POLICY_FORMAT, "policy": policy.model_dump(mode="json", by_alias=True)}
    return json.dumps(stored, sort_keys=True, separators=(",", ":"))


def decode_policy(text: str) -> PolicyConfig:
    """The site's policy from its stored form, of any format ever written. Raises ValueError for a format this
    floatsrv does not know (a node of a newer floatsrv published it)."""
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError("the site's stored policy is not a JSON object")
    version = data.get("format", 0)  # format 0 has no "format" key (a policy never has one: extra="forbid")
    if version == 0:
        return PolicyConfig.model_validate_json(text)
    if version == 1:
        return PolicyConfig.model_validate(data["policy"])
    raise ValueError(
        f"the site's policy is stored in format {version!r}, which this floatsrv (formats up to {POLICY_FORMAT}) "
        "cannot read: a node running a newer floatsrv published it; upgrade this node"
    )


def _policy_json(config: Config) -> str:
    return encode_policy(config.policy)


async def join(store: Store, config: Config) -> list[str]:
    """At a node's start (PostgreSQL): the sections in which this node differs from the running site's;
    none for the first node of a site, whose settings become the site's."""
    mine = digests(config)

    def unit(conn: sqlite3.Connection) -> tuple[list[str], int]:
        recorded = db.settings(conn)
        if recorded is None or store.alone(conn):
            if recorded != mine:
                return [], db.publish(conn, mine, _policy_json(config))
            return [], db.generation(conn)
        return sorted(name for name in SHARED if recorded.get(name) != mine.get(name)), db.generation(conn)

    differing, _ = await store.write(unit)
    return differing


async def publish(store: Store, config: Config) -> None:
    """After a reload: this node's settings and policy become the site's (the others follow)."""
    mine = digests(config)
    await store.write(lambda conn: db.publish(conn, mine, _policy_json(config)))


async def follow(store: Store, seen: int) -> tuple[int, PolicyConfig | None, dict[str, str] | None]:
    """(generation, the site's policy and settings if they moved since `seen`, else None, None)."""

    def unit(conn: sqlite3.Connection) -> tuple[int, str | None, dict[str, str] | None]:
        now = db.generation(conn)
        if now == seen:
            return now, None, None
        return now, db.policy(conn), db.settings(conn)

    now, policy, settings = await store.read(unit)
    return now, (decode_policy(policy) if policy else None), settings
