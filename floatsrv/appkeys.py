"""Typed keys for everything the aiohttp application and requests carry (no module-level singletons)."""

from __future__ import annotations

from aiohttp import web

from floatsrv.auth.directory import UserDirectory
from floatsrv.auth.tokens import TokenIssuer
from floatsrv.config import Config
from floatsrv.domain.context import Domain
from floatsrv.models import Principal, Role

CONFIG = web.AppKey("config", Config)
DOMAIN = web.AppKey("domain", Domain)
USERS = web.AppKey("users", UserDirectory)
TOKENS = web.AppKey("tokens", TokenIssuer)
# (method, canonical path) -> role required (None: public). Filled by setup_routes.
ROUTE_ROLES = web.AppKey("route_roles", dict[tuple[str, str], Role | None])

PRINCIPAL = web.RequestKey("principal", Principal)
