"""Who is using the console: the session cookie, the CSRF token bound to it, and the two wrappers every console
handler goes through (`page` for what is read, `action` for what changes state).

A console session is a token this server issued at the login form (`api.meta.password_login`: the same
throttle and hashing gate as `/auth`), with the console's shorter lifetime. The token is kept server-side like
every other (the `tokens` table), so logging out, revoking the user's tokens, disabling or deleting the user,
or rotating the signing key ends the session on its next request. The browser holds it in an HttpOnly,
SameSite=Strict cookie scoped to /ui/ (Secure when the server speaks TLS, or a trusted proxy says the
browser's connection was HTTPS), so page scripts never see it and other sites' forms never send it.

Every state-changing form carries a CSRF token: an HMAC of the session's token id under a key derived from the
token-signing key. It is checked on every POST, whatever SameSite does: a browser that ignores SameSite, or a
page on a sibling host of the same site, gets 403 without it.
"""

from __future__ import annotations

import hashlib
import hmac
import urllib.parse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from multidict import MultiDictProxy

from floatsrv import errors
from floatsrv.api.console.render import error_page
from floatsrv.api.errors import status_for
from floatsrv.api.forwarded import forwarded_https
from floatsrv.appkeys import CONFIG, GUARD, LIVE, PRINCIPAL
from floatsrv.models import Principal, Role

COOKIE = "floatsrv_session"
PATH = "/ui/"
LOGIN_PATH = "/ui/login"
LOGOUT_PATH = "/ui/logout"
PASSWORD_PATH = "/ui/password"  # noqa: S105 (a path, not a password)
CSRF_FIELD = "csrf_token"

Form = MultiDictProxy[str | bytes | bytearray | web.FileField]


@dataclass(frozen=True, slots=True)
class Session:
    """The console's view of the logged-in user, for one request."""

    principal: Principal
    token_id: str
    csrf: str

    @property
    def admin(self) -> bool:
        return self.principal.role is Role.ADMIN


def _csrf_for(request: web.Request, token_id: str) -> str:
    key = hashlib.sha256(b"floatsrv-console-csrf/1\n" + request.app[GUARD].issuer.key).digest()
    return hmac.new(key, token_id.encode("ascii"), hashlib.sha256).hexdigest()


def current(request: web.Request) -> Session | None:
    """The session the request's cookie names, if it is still valid (never raises)."""
    cookie = request.cookies.get(COOKIE, "")
    if not cookie or not cookie.isascii() or len(cookie) > 4096:
        return None
    try:
        principal = request.app[GUARD].authenticate(f"Bearer {cookie}")
    except errors.AuthError:
        return None
    kind, _, token_id = principal.credential.partition(":")
    if kind != "token":  # an API key pasted into the cookie is not a console login
        return None
    return Session(principal, token_id, _csrf_for(request, token_id))


def secure(request: web.Request) -> bool:
    """Whether the browser reached us over HTTPS: our own TLS, or a trusted proxy's (X-Forwarded-Proto)."""
    if request.secure or request.app[CONFIG].server.tls_cert is not None:
        return True
    peer = request.transport.get_extra_info("peername") if request.transport else None
    address = peer[0] if isinstance(peer, tuple) else None
    trusted = request.app[LIVE].config.server.trusted_proxies
    return forwarded_https(address, request.headers.get("X-Forwarded-Proto"), trusted)


def set_cookie(response: web.StreamResponse, request: web.Request, token: str, max_age: int) -> None:
    response.set_cookie(
        COOKIE, token, path=PATH, max_age=max_age, httponly=True, samesite="Strict", secure=secure(request)
    )


def clear_cookie(response: web.StreamResponse, request: web.Request) -> None:
    response.del_cookie(COOKIE, path=PATH, httponly=True, samesite="Strict", secure=secure(request))


def redirect(location: str) -> web.Response:
    """303 See Other (returned, not raised: the pipeline renders raised HTTP errors as JSON)."""
    return web.Response(status=303, headers={"Location": location})


def _login_redirect(request: web.Request) -> web.Response:
    target = request.path_qs if request.method == "GET" else PATH
    return redirect(f"{LOGIN_PATH}?{urllib.parse.urlencode({'next': target})}")


def safe_next(value: str | None) -> str:
    """Where to go after logging in: a console path only (never another host: no open redirect)."""
    if not value or "//" in value or "\\" in value or not value.isprintable():
        return PATH
    path = value.partition("?")[0]
    if not path.startswith(PATH) or any(part in (".", "..") for part in path.split("/")) or "%" in path:
        return PATH  # a dot segment (even percent-encoded) could climb out of /ui/
    return value


async def read_form(request: web.Request, session: Session | None = None) -> Form | web.Response:
    """The posted form, or the error page for a body that is not one (bad encoding, a broken multipart body,
    more than server.max_body_bytes)."""
    try:
        return await request.post()
    except web.HTTPRequestEntityTooLarge:
        return error_page(request, session, 413, "payload_too_large", "the upload is larger than this server takes")
    except (ValueError, UnicodeDecodeError, AssertionError):
        return error_page(request, session, 400, "validation_error", "the form could not be read")


Page = Callable[[web.Request, Session], Awaitable[web.StreamResponse]]
Action = Callable[[web.Request, Session, Form], Awaitable[web.StreamResponse]]


async def _guarded(request: web.Request, work: Callable[[Session], Awaitable[web.StreamResponse]], role: Role) -> Any:
    session = current(request)
    if session is None:
        return _login_redirect(request)
    request[PRINCIPAL] = session.principal  # the request log line and `actor()` name who acted
    if session.principal.must_change_password and request.path not in (PASSWORD_PATH, LOGOUT_PATH):
        return redirect(PASSWORD_PATH)
    if not session.principal.role.allows(role):
        return error_page(
            request, session, 403, "forbidden", f"this needs the {role.value} role; you are {session.principal.role}"
        )
    try:
        return await work(session)
    except errors.FloatsrvError as exc:
        return error_page(request, session, *_status(exc))


def _status(exc: errors.FloatsrvError) -> tuple[int, str, str]:
    return status_for("native", exc), exc.code, exc.message  # the native API's one table of statuses


def page(role: Role = Role.VIEWER) -> Callable[[Page], Callable[[web.Request], Awaitable[web.StreamResponse]]]:
    """A console page (GET): needs a session with `role`, else the login form (or 403)."""

    def wrap(handler: Page) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def run(request: web.Request) -> web.StreamResponse:
            result: web.StreamResponse = await _guarded(request, lambda s: handler(request, s), role)
            return result

        run.__doc__ = handler.__doc__
        run.console_role = role  # type: ignore[attr-defined]  # read by tests/test_rbac.py
        return run

    return wrap


def action(role: Role = Role.ADMIN) -> Callable[[Action], Callable[[web.Request], Awaitable[web.StreamResponse]]]:
    """A console form post: needs a session with `role` (checked before the body is read) and the session's
    CSRF token in the form; then the guard re-reads credentials for the next request (the action may change
    them)."""

    def wrap(handler: Action) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def run(request: web.Request) -> web.StreamResponse:
            async def work(session: Session) -> web.StreamResponse:
                form = await read_form(request, session)
                if isinstance(form, web.Response):
                    return form
                given = form.get(CSRF_FIELD)
                if not isinstance(given, str) or not hmac.compare_digest(given.encode(), session.csrf.encode()):
                    return error_page(
                        request, session, 403, "csrf_failed", "this form has expired or did not come from this console"
                    )
                try:
                    return await handler(request, session, form)
                finally:
                    request.app[GUARD].note_change()

            result: web.StreamResponse = await _guarded(request, work, role)
            return result

        run.__doc__ = handler.__doc__
        run.console_role = role  # type: ignore[attr-defined]  # read by tests/test_rbac.py
        return run

    return wrap
