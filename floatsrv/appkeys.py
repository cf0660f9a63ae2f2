"""Typed keys for everything the aiohttp application and requests carry (no module-level singletons)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from floatsrv.auth.guard import Guard
from floatsrv.auth.login import LoginDefense
from floatsrv.config import Config, LiveConfig
from floatsrv.domain.context import Domain
from floatsrv.models import Principal, Role

CONFIG = web.AppKey("config", Config)  # as started
LIVE = web.AppKey("live", LiveConfig)  # as last reloaded (SIGHUP)
DOMAIN = web.AppKey("domain", Domain)
GUARD = web.AppKey("guard", Guard)
LOGIN = web.AppKey("login", LoginDefense)
# (method, canonical path) -> role required (None: public). Filled by setup_routes.
ROUTE_ROLES = web.AppKey("route_roles", dict[tuple[str, str], Role | None])

if TYPE_CHECKING:
    from floatsrv.api.metrics import Metrics
    from floatsrv.workers.sync import SyncWorker

# The sync worker's module imports this one, so its key is typed by name.
SYNC: web.AppKey[SyncWorker] = web.AppKey("sync")
METRICS: web.AppKey[Metrics] = web.AppKey("metrics")

PRINCIPAL = web.RequestKey("principal", Principal)
