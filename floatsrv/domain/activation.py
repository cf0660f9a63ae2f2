"""Activation requests, the server's side: make one (offline file, `POST /v1/license-files/requests`,
LicenseSpring's `POST /api/v4/license/generate`, or online activation), record it, list them.

A request made while the files in force are bound to another host fingerprint is a rebind: it carries that
previous fingerprint, so the vendor sees the same server (same identity key) moved to a new host.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from floatsrv.clock import Clock
from floatsrv.db import activation as db
from floatsrv.db import licensefiles as db_files
from floatsrv.db.activation import RequestRow as RequestRow  # re-exported for the API and CLI
from floatsrv.db.store import Store
from floatsrv.domain.accounts import Actor
from floatsrv.domain.licensefiles import Licensing
from floatsrv.domain.sync import server_id as stored_server_id
from floatsrv.entitlements.request import ActivationRequest, new_request
from floatsrv.errors import InvalidRequest
from floatsrv.times import to_us


def previous_fingerprint(conn: sqlite3.Connection, current: str) -> str | None:
    """The fingerprint the files in force are bound to, when it is not this host's (a rebind is needed)."""
    for row in db_files.in_force(conn):
        if row.fingerprint is not None and row.fingerprint != current:
            return row.fingerprint
    return None


async def create_request(
    store: Store,
    clock: Clock,
    licensing: Licensing,
    key: Ed25519PrivateKey,
    actor: Actor,
    configured_server_id: str | None,
) -> tuple[ActivationRequest, bytes]:
    """A new activation request, recorded (so the file answering it is accepted, once) and audited."""
    if licensing.fingerprint is None:
        raise InvalidRequest("this server's host fingerprint is not known here")
    fingerprint = licensing.fingerprint
    server = await stored_server_id(store, configured_server_id)
    now: datetime = clock.now()

    def unit(conn: sqlite3.Connection) -> tuple[ActivationRequest, bytes]:
        previous = previous_fingerprint(conn, fingerprint)
        request, document = new_request(
            key, server_id=server, fingerprint=fingerprint, previous_fingerprint=previous, now=now
        )
        t = to_us(now)
        db.insert(
            conn,
            RequestRow(request.request_id, t, actor.name, request.server_key, fingerprint, previous, None, None),
        )
        detail = {"fingerprint": fingerprint, "rebind_from": previous}
        actor.audit(conn, t, "activation_request_created", target=request.request_id, detail=detail)
        return request, document

    return await store.write(unit)
