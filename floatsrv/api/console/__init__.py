"""The admin console in the browser, under /ui/ (docs/console.md): server-rendered pages (Jinja2), one small
script and one stylesheet shipped in the package (no request ever leaves for another host), a session cookie
and CSRF-checked forms (`session`). Its routes are its own table below, not the API's: the API's role table
is for bearer credentials, and every console handler checks its session and role itself (`session.page`,
`session.action`).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from aiohttp import web

from floatsrv.api.console import admin, login, pages
from floatsrv.api.console.render import TEMPLATES, environment, error_page
from floatsrv.api.console.session import current, redirect

# (method, path, handler): the pages' paths are a contract (bookmarks and monitoring link to them).
CONSOLE_ROUTES = (
    ("GET", "/ui/login", login.login_form),
    ("POST", "/ui/login", login.login),
    ("POST", "/ui/logout", login.logout),
    ("GET", "/ui/password", login.password_form),
    ("POST", "/ui/password", login.change_password),
    ("GET", "/ui/", pages.overview),
    ("GET", "/ui/seats", pages.seats),
    ("GET", "/ui/seats/{seat_id}/end", pages.seat_end),
    ("POST", "/ui/seats/{seat_id}/end", admin.end_seat),
    ("GET", "/ui/history", pages.history),
    ("GET", "/ui/denials", pages.denial_log),
    ("GET", "/ui/usage", pages.usage),
    ("GET", "/ui/licenses", admin.licenses_page),
    ("POST", "/ui/licenses/upload", admin.upload_license),
    ("POST", "/ui/licenses/request", admin.activation_request),
    ("GET", "/ui/users", admin.users_page),
    ("POST", "/ui/users", admin.create_user),
    ("POST", "/ui/users/{what:password|disable|enable|revoke-tokens|delete}", admin.user_action),
    ("POST", "/ui/api-keys", admin.create_api_key),
    ("POST", "/ui/api-keys/{key_id}/revoke", admin.revoke_api_key),
    ("POST", "/ui/tokens/{token_id}/revoke", admin.revoke_token),
    ("GET", "/ui/audit", admin.audit_page),
    ("GET", "/ui/sync", admin.sync_page),
    ("POST", "/ui/sync/run", admin.sync_run),
    ("POST", "/ui/sync/retry", admin.sync_retry),
    ("POST", "/ui/sync/export", admin.sync_export),
    ("POST", "/ui/sync/receipt", admin.sync_receipt),
)

# The pages a signed-in user moves between (path, label, admin only).
NAVIGATION = (
    ("/ui/", "Overview", False),
    ("/ui/seats", "Seats", False),
    ("/ui/history", "History", False),
    ("/ui/denials", "Denials", False),
    ("/ui/usage", "Usage", False),
    ("/ui/licenses", "Licenses", False),
    ("/ui/users", "Users", True),
    ("/ui/audit", "Audit", True),
    ("/ui/sync", "Sync", False),
)


def static_dir() -> Path:
    return Path(str(resources.files("floatsrv.api.console").joinpath("static")))


# The console's only static files, and their types (nothing else under /ui/static/ is served).
STATIC = {"console.css": "text/css", "console.js": "text/javascript"}


async def _static(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    if name not in STATIC:
        return error_page(request, current(request), 404, "not_found", "no such page in the console")
    headers = {"X-Content-Type-Options": "nosniff", "Cache-Control": "max-age=3600", "Content-Type": STATIC[name]}
    return web.FileResponse(static_dir() / name, headers=headers)


async def _to_console(request: web.Request) -> web.StreamResponse:
    return redirect("/ui/")


async def _unknown(request: web.Request) -> web.StreamResponse:
    """Any other /ui/ address: a console page saying so (not the API's JSON 404)."""
    return error_page(request, current(request), 404, "not_found", "no such page in the console")


def setup_console(app: web.Application) -> None:
    """Add the console's routes, its static files and its template environment to the application."""
    env = environment()
    env.globals["NAVIGATION"] = NAVIGATION
    app[TEMPLATES] = env
    app.router.add_route("GET", "/ui", _to_console)
    for method, path, handler in CONSOLE_ROUTES:
        app.router.add_route(method, path, handler)
    app.router.add_route("GET", "/ui/static/{name}", _static)
    app.router.add_route("GET", "/ui/{tail:.+}", _unknown)  # last: only what no route above took
