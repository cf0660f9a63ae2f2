"""Typed keys for what the aiohttp application and requests carry (no module-level singletons). Keys whose
values belong to one module live beside their class (`api.metrics.METRICS`)."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from floatsrv.auth.guard import Guard
from floatsrv.auth.login import LoginDefense
from floatsrv.config import Config, LiveConfig
from floatsrv.domain.context import Domain
from floatsrv.domain.sync import SyncControl
from floatsrv.models import Principal, Role

CONFIG = web.AppKey("config", Config)  # as started
LIVE = web.AppKey("live", LiveConfig)  # as last reloaded (SIGHUP)
DOMAIN = web.AppKey("domain", Domain)
# Whether this start took the rollback baseline (domain.rollback.take_baseline): then, and only then, the
# sync worker compares the vendor's holdings with this database before its first send.
SITE_START = web.AppKey("site_start", bool)
GUARD = web.AppKey("guard", Guard)
LOGIN = web.AppKey("login", LoginDefense)
# The server's Ed25519 identity key (license files are bound to it; it signs activation requests and reports).
IDENTITY = web.AppKey("identity", Ed25519PrivateKey)
# (method, canonical path) -> role required (None: public). Filled by setup_routes.
ROUTE_ROLES = web.AppKey("route_roles", dict[tuple[str, str], Role | None])

# The upstream sync sender, as the API and admin commands see it (workers.sync.SyncWorker implements it).
SYNC = web.AppKey("sync", SyncControl)

PRINCIPAL = web.RequestKey("principal", Principal)
# The request's JSON object, as read (`api.body.read_json_object`): a refusal's log line names its license,
# feature and client user from it.
BODY = web.RequestKey("body", dict[str, Any])
# Set by the seat handlers when the request only renewed a seat it held (`log.requests: changes` skips it).
HEARTBEAT = web.RequestKey("heartbeat", bool)
