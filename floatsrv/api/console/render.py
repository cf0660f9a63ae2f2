"""Turning console pages into HTML responses: the Jinja2 environment (one per application, built at start-up,
templates cached by Jinja for the process's life), the filters the templates share (instants, quantities,
bars), and the headers every console response carries.

The Content-Security-Policy allows nothing from any other origin and no inline script or style: the one
script and the one stylesheet are files under /ui/static/, and charts are SVG drawn with presentation
attributes (which CSP does not treat as inline style).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import jinja2
from aiohttp import web
from markupsafe import Markup

from floatsrv import __version__

if TYPE_CHECKING:  # only for annotations: session imports this module
    from floatsrv.api.console.session import Session

TEMPLATES = web.AppKey("console_templates", jinja2.Environment)

HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def _instant(value: object) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value.astimezone(UTC)
    if isinstance(value, int):  # microseconds since the epoch, as stored
        return datetime.fromtimestamp(value / 1_000_000, UTC)
    return datetime.fromisoformat(str(value)).astimezone(UTC)


def when(value: object) -> Markup:
    """An instant as <time>: UTC in the text and on hover; the console script shows it in the browser's zone."""
    at = _instant(value)
    if at is None:
        return Markup("<span class=none>never</span>")
    stamp = at.strftime("%Y-%m-%dT%H:%M:%SZ")
    utc = at.strftime("%Y-%m-%d %H:%M:%S UTC")
    return Markup('<time datetime="{}" title="{}">{}</time>').format(stamp, utc, utc)


def percent(part: object, whole: object) -> int:
    """How much of a bar `part` fills, 0-100 (a bar with no limit is empty)."""
    try:
        total = float(str(whole))
        return 0 if total <= 0 else max(0, min(100, round(100 * float(str(part)) / total)))
    except ValueError:
        return 0


def usage_split(total: object, included: object, capacity: object) -> dict[str, int]:
    """A consumption bar's parts, in percent of the whole allowance (included plus overage): what was used of
    the included amount, what went into overage, and where the included amount ends (the marker)."""
    try:
        used, inside = Decimal(str(total)), Decimal(str(included))
        whole = max(Decimal(str(capacity)) if capacity is not None else inside, inside)
    except ArithmeticError:
        return {"used": 0, "over": 0, "mark": 100}
    if whole <= 0:
        return {"used": 0, "over": 0, "mark": 100}
    first = percent(min(max(used, Decimal(0)), inside), whole)
    return {
        "used": first,
        "over": min(percent(max(used - inside, Decimal(0)), whole), 100 - first),
        "mark": percent(inside, whole),
    }


def units(value: object, word: str) -> str:
    """A quantity with its unit: "1 seat", "3 seats", "2.5 units"."""
    text = str(value)
    return f"{text} {word if text == '1' else word + 's'}"


def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("floatsrv.api.console", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = when
    env.filters["units"] = units
    env.globals["percent"] = percent
    env.globals["usage_split"] = usage_split
    env.globals["version"] = __version__
    return env


def html(
    request: web.Request, session: Session | None, template: str, status: int = 200, **context: Any
) -> web.Response:
    text = (
        request.app[TEMPLATES]
        .get_template(template)
        .render(
            session=session,
            path=request.path,
            notice=NOTICES.get(request.query.get("done", "")),
            **context,
        )
    )
    return web.Response(text=text, status=status, content_type="text/html", charset="utf-8", headers=HEADERS)


def error_page(request: web.Request, session: Session | None, status: int, code: str, message: str) -> web.Response:
    return html(request, session, "error.html", status=status, code=code, message=message)


def download(body: bytes | str, name: str, content_type: str) -> web.Response:
    """A file to save (CSV as UTF-8 text; signed documents as bytes)."""
    plain = re.sub(r"[^A-Za-z0-9._-]", "_", name)  # a header value: nothing a quote or CR/LF could break
    headers = {**HEADERS, "Content-Disposition": f'attachment; filename="{plain}"'}
    if isinstance(body, str):
        return web.Response(text=body, content_type=content_type, charset="utf-8", headers=headers)
    return web.Response(body=body, content_type=content_type, headers=headers)


# What a finished action says on the page it returns to (`?done=<key>`): fixed texts, so a link cannot make the
# console display words of an attacker's choosing.
NOTICES = {
    "seat_ended": "The seat was ended. Its app gets a new seat when it next checks in.",
    "user_changed": "The user was changed.",
    "user_deleted": "The user was deleted.",
    "tokens_revoked": "The user's tokens and console sessions were revoked.",
    "token_revoked": "The token was revoked.",
    "key_revoked": "The API key was revoked.",
    "sync_retried": "Parked batches were reopened; the sync worker sends them now.",
    "password_changed": "Your password was changed.",
}
