"""Logging in to the console, out of it, and changing one's own password there.

The login form posts `username` and `password` to `/ui/login`; the check is `api.meta.password_login`, so the
console shares `/auth`'s throttle, hashing gate, audit rows and log lines. The form itself carries a
double-submit token (a random value in a short-lived cookie and in the form), so another site cannot log a
browser in to an account of its choosing.
"""

from __future__ import annotations

import contextlib
import hmac
import secrets
from datetime import timedelta

from aiohttp import web

from floatsrv import errors
from floatsrv.api.account import actor, change_own_password
from floatsrv.api.console.render import html
from floatsrv.api.console.session import (
    LOGIN_PATH,
    PATH,
    Form,
    Session,
    action,
    clear_cookie,
    current,
    read_form,
    redirect,
    safe_next,
    secure,
    set_cookie,
)
from floatsrv.api.meta import password_login
from floatsrv.appkeys import DOMAIN, GUARD, LIVE
from floatsrv.domain import credentials
from floatsrv.domain.accounts import Actor
from floatsrv.models import Role

LOGIN_COOKIE = "floatsrv_login"  # the login form's double-submit token (not a session)


def _lifetime(request: web.Request) -> timedelta:
    return timedelta(hours=request.app[LIVE].config.console.session_hours)


def _form(request: web.Request, status: int = 200, error: str | None = None, username: str = "") -> web.Response:
    nonce = secrets.token_urlsafe(24)
    response = html(
        request,
        None,
        "login.html",
        status=status,
        error=error,
        username=username,
        nonce=nonce,
        next=safe_next(request.query.get("next")),
    )
    response.set_cookie(
        LOGIN_COOKIE, nonce, path=LOGIN_PATH, max_age=3600, httponly=True, samesite="Strict", secure=secure(request)
    )
    return response


async def login_form(request: web.Request) -> web.StreamResponse:
    """The login form (or straight on, with a valid session)."""
    if current(request) is not None:
        return redirect(safe_next(request.query.get("next")))
    return _form(request)


async def login(request: web.Request) -> web.StreamResponse:
    """Check the form's username and password; on success, a session cookie and on to the page asked for."""
    form = await read_form(request)
    if isinstance(form, web.Response):
        return form
    username, password, nonce = (form.get(k) for k in ("username", "password", "nonce"))
    if not isinstance(username, str) or not isinstance(password, str) or not username or not password:
        return _form(request, 400, "Enter a username and a password.")
    expected = request.cookies.get(LOGIN_COOKIE, "")
    if not isinstance(nonce, str) or not expected or not hmac.compare_digest(nonce.encode(), expected.encode()):
        return _form(request, 403, "This form has expired; please log in again.", username)
    username = username[:256]
    try:
        token, claims, must_change = await password_login(request, username, password[:1024], _lifetime(request))
    except (errors.TooManyRequests, errors.LoginBusy) as exc:
        response = _form(request, 429 if isinstance(exc, errors.TooManyRequests) else 503, exc.message, username)
        response.headers["Retry-After"] = str(exc.detail.get("retry_after", 60))
        return response
    except errors.AuthError:
        return _form(request, 401, "Invalid username or password.", username)
    previous = current(request)
    if previous is not None:  # another login in this browser: the session it replaces ends now, not in hours
        domain = request.app[DOMAIN]
        with contextlib.suppress(errors.TokenNotFound):  # ended meanwhile
            who = Actor(claims.username, request.remote)
            await credentials.revoke_token(domain.store, domain.clock, who, previous.token_id)
        request.app[GUARD].note_change()
    target = "/ui/password" if must_change else safe_next(str(form.get("next") or ""))
    response = redirect(target)
    set_cookie(response, request, token, claims.expires_at - claims.issued_at)
    response.del_cookie(LOGIN_COOKIE, path=LOGIN_PATH)
    return response


@action(Role.VIEWER)
async def logout(request: web.Request, session: Session, form: Form) -> web.StreamResponse:
    """End this session: its token is revoked server-side, so a copy of the cookie stops working too."""
    domain = request.app[DOMAIN]
    await credentials.revoke_token(domain.store, domain.clock, actor(request), session.token_id)
    response = redirect(LOGIN_PATH)
    clear_cookie(response, request)
    return response


async def password_form(request: web.Request) -> web.StreamResponse:
    """Change your own password (where users with a temporary password are sent)."""
    session = current(request)
    if session is None:
        return redirect(LOGIN_PATH)
    return html(request, session, "password.html", error=None)


@action(Role.VIEWER)
async def change_password(request: web.Request, session: Session, form: Form) -> web.StreamResponse:
    """Change your own password: every other token of yours is revoked, and this session goes on."""
    old, new, again = (form.get(k) for k in ("current_password", "new_password", "confirm_password"))
    if not all(isinstance(v, str) and v for v in (old, new, again)):
        return html(request, session, "password.html", status=400, error="Fill in all three fields.")
    if new != again:
        return html(request, session, "password.html", status=400, error="The new passwords differ.")
    try:
        token, _ = await change_own_password(request, str(old), str(new), _lifetime(request))
    except errors.FloatsrvError as exc:  # a wrong current password, a weak new one, a user declared in config
        return html(request, session, "password.html", status=400, error=exc.message)
    domain = request.app[DOMAIN]
    await credentials.revoke_token(domain.store, domain.clock, actor(request), session.token_id)
    response = redirect(f"{PATH}?done=password_changed")
    set_cookie(response, request, token, int(_lifetime(request).total_seconds()))
    return response
