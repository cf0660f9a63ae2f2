"""The request pipeline around every handler: request id, one canonical log line, auth, error rendering.

Errors become JSON here and only here: domain errors through the surface's table in `api.errors`,
routing errors (404/405) in the surface's shape, anything unexpected as a generic 500 that is logged once
with its traceback and never leaks internals to the client.
"""

from __future__ import annotations

import asyncio
import hmac
import itertools
import re
import secrets
import time
from typing import Any

import orjson
import structlog
from aiohttp import web
from aiohttp.typedefs import Handler

from floatsrv import errors
from floatsrv.api.errors import Surface, error_body, render
from floatsrv.api.forwarded import client_address
from floatsrv.api.metrics import METRICS
from floatsrv.appkeys import BODY, GUARD, HEARTBEAT, LIVE, PRINCIPAL, ROUTE_ROLES
from floatsrv.log import get_logger, request_completed
from floatsrv.models import Principal, Role

log = get_logger("floatsrv.http")

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._\-]{1,64}$")


def surface_of(request: web.Request) -> Surface:
    return "native" if request.path.startswith("/v1/") or request.path == "/v1" else "v4"


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """A JSON answer; `body` may be JSON already serialised (bytes)."""
    # orjson: several times faster than the stdlib on the hot path; non-str keys/Decimals never reach here.
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    return web.Response(body=data, status=status, headers=headers, content_type="application/json")


class RequestIds:
    """Cheap unique request ids: a random per-application prefix and a counter (no entropy read per request).
    Owner: the application (`REQUEST_IDS`)."""

    def __init__(self) -> None:
        self.prefix = secrets.token_hex(4)
        self.counter = itertools.count(1)

    def next(self) -> str:
        return f"{self.prefix}-{next(self.counter):x}"


REQUEST_IDS = web.AppKey("request_ids", RequestIds)


def _error_response(request: web.Request, error: errors.FloatsrvError) -> web.Response:
    status, body = render(surface_of(request), error)
    headers = {}
    if status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="floatsrv"'
    if isinstance(error, (errors.TooManyRequests, errors.LoginBusy)):
        headers["Retry-After"] = str(error.detail.get("retry_after", 60))
    if isinstance(error, errors.StorageUnavailable):
        headers["Retry-After"] = "5"  # storage faults clear by themselves or not at all: retry soon
    return json_response(body, status=status, headers=headers or None)


def _http_error_response(request: web.Request, exc: web.HTTPException) -> web.Response:
    code = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}.get(exc.status, "http_error")
    message = {
        404: f"no such endpoint: {request.method} {request.path}",
        405: f"{request.method} is not allowed on {request.path}",
    }.get(exc.status, exc.reason)
    kind = "not_found" if exc.status == 404 else "invalid_request_error"
    body = error_body(surface_of(request), exc.status, code, message, kind=kind)
    headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
    return json_response(body, status=exc.status, headers=headers)


def _is_metrics_token(request: web.Request, header: str) -> bool:
    token = request.app[LIVE].config.metrics.token
    if token is None or not header.startswith("Bearer "):
        return False
    return hmac.compare_digest(header[7:].strip().encode(), token.get_secret_value().encode())


# Routes a user with a temporary password may still call: to see who they are and to change it.
PASSWORD_CHANGE_ROUTES = frozenset(
    {
        ("GET", "/v1/me"),
        ("POST", "/v1/me/password"),
        ("GET", "/api/v5/auth/me"),
        ("POST", "/api/v5/auth/change-password"),
    }
)
_PASSWORD_CHANGES = frozenset({"/v1/me/password", "/api/v5/auth/change-password"})


METRICS_ROUTE = ("GET", "/metrics")
METRICS_PRINCIPAL = Principal("metrics", Role.VIEWER, credential="metrics_token")


def _authorize(request: web.Request, route: tuple[str, str], required: Role) -> Principal:
    """Authenticate the caller and check the route's role. Raises AuthError subclasses."""
    header = request.headers.get("Authorization", "")
    if route == METRICS_ROUTE and _is_metrics_token(request, header):
        return METRICS_PRINCIPAL
    principal = request.app[GUARD].authenticate(header)
    if principal.must_change_password and route not in PASSWORD_CHANGE_ROUTES:
        raise errors.PasswordChangeRequired()
    if not principal.role.allows(required):
        raise errors.Forbidden(f"this needs the {required.value} role; you are {principal.role.value}")
    return principal


@web.middleware
async def pipeline(request: web.Request, handler: Handler) -> web.StreamResponse:
    started = time.perf_counter()
    app = request.app
    incoming = request.headers.get("X-Request-Id", "")
    request_id = incoming if incoming and _REQUEST_ID.match(incoming) else app[REQUEST_IDS].next()
    # request_id is the only key ever bound, so binding it replaces the previous request's on this
    # connection (no clear_contextvars, which walks every context variable, needed).
    structlog.contextvars.bind_contextvars(request_id=request_id)
    trusted = app[LIVE].config.server.trusted_proxies
    if trusted and (hops := request.headers.getall("X-Forwarded-For", None)):
        client = client_address(request.remote, hops, trusted)
        if client is not None and client != request.remote:
            request = request.clone(remote=client)
    match_info = request.match_info
    route = match_info.route
    resource = route.resource
    route_name = resource.canonical if resource is not None else "-"
    user = "-"
    error_code = ""
    refusal: dict[str, Any] | None = None  # the refusal's detail (license_id, feature, ...)
    required = None
    response: web.StreamResponse
    try:
        if match_info.http_exception is None:
            key = (route.method, route_name)
            required = app[ROUTE_ROLES].get(key)
            if required is not None:
                guard = app[GUARD]
                if (unseen := guard.unseen(request.headers.get("Authorization", ""))) is not None:
                    await guard.learn(unseen)  # PostgreSQL: a token's first lookup here, off the event loop
                principal = _authorize(request, key, required)
                request[PRINCIPAL] = principal
                user = principal.username
        response = await handler(request)
        if required is Role.ADMIN or route_name in _PASSWORD_CHANGES:
            # Admin writes and password changes may change credentials: re-read them for the next request.
            app[GUARD].note_change()
    except errors.FloatsrvError as exc:
        response = _error_response(request, exc)
        error_code, refusal = exc.code, exc.detail
        if isinstance(exc, errors.AuthError):
            app[METRICS].auth_failure(exc.code)
        elif isinstance(exc, errors.SeatsExhausted):
            app[METRICS].seat_denial(exc.detail.get("license_id"), exc.detail.get("feature"))
    except web.HTTPException as exc:
        response = _http_error_response(request, exc)
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("request_failed", method=request.method, path=request.path)
        body = error_body(
            surface_of(request),
            500,
            "internal_error",
            f"internal error; the server log has the details (request id {request_id})",
            kind="server_error",
        )
        response = json_response(body, status=500)
    response.headers["X-Request-Id"] = request_id
    if user == "-" and (signed_in := request.get(PRINCIPAL)) is not None:
        user = signed_in.username  # the console's handlers find who is signed in from the session cookie
    elapsed = time.perf_counter() - started
    method, status = request.method, response.status
    app[METRICS].request(route_name, method, status, elapsed)
    if status >= 400:
        request_completed(
            method, route_name, status, elapsed, user, request.remote, request_id, error_code, _about(request, refusal)
        )
    elif _logged(app[LIVE].config.log.requests, method, request):
        request_completed(method, route_name, status, elapsed, user, request.remote, request_id, error_code)
    return response


def _logged(mode: str, method: str, request: web.Request) -> bool:
    """Whether a successful request gets its line under `log.requests` (refusals and failures always do)."""
    if mode == "all":
        return True
    return mode == "changes" and method not in ("GET", "HEAD") and not request.get(HEARTBEAT, False)


def _clip(value: object) -> str | int | None:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return None
    return value[:_LOGGED_TEXT] if isinstance(value, str) else value


def _about(request: web.Request, detail: dict[str, Any] | None) -> dict[str, Any]:
    """What a refused request was about, for its log line: the path of a request no route took (404/405), and
    the license, product, feature and client user it named (from the error, else from its body; never any
    other field of the body, which may hold a password)."""
    about: dict[str, Any] = {}
    if request.match_info.http_exception is not None:
        about["path"] = request.path[:_LOGGED_PATH]
    body = request.get(BODY) or {}
    for key, name in _SUBJECT:
        value = _clip((detail or {}).get(key, body.get(key)))
        if value is not None:
            about[name] = value
    return about


# Fields of a refused request's body (or its error's detail) its log line repeats, and under which name.
_SUBJECT = (("license_id", "license_id"), ("product", "product"), ("feature", "feature"), ("user", "client_user"))
_LOGGED_TEXT = 100  # characters of a client-chosen value kept in a log line
_LOGGED_PATH = 200
