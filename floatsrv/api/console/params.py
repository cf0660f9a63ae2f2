"""Reading a console page's query string: filters and page cursors, checked like the API's parameters (a bad
value is a 400 page naming the parameter, never a 500), and the links that carry them to the next page."""

from __future__ import annotations

import re
import urllib.parse
from typing import TypeVar

from aiohttp import web

from floatsrv.errors import InvalidRequest

PAGE_SIZE = 50  # rows per page on every console list
T = TypeVar("T")
_TEXT = re.compile(r"^[^\x00-\x1f\x7f]{1,256}$")


def text(request: web.Request, name: str) -> str | None:
    """An optional text filter: absent or empty is no filter; control characters or over 256 are refused."""
    value = request.query.get(name, "").strip()
    if not value:
        return None
    if not _TEXT.match(value):
        raise InvalidRequest(f"{name}: at most 256 characters, no control characters", param=name)
    return value


def number(request: web.Request, name: str, default: int | None = None, most: int = 2**53) -> int | None:
    """An optional positive integer (an id, a cursor, an offset); absent or empty gives `default`."""
    value = request.query.get(name, "").strip()
    if not value:
        return default
    if not re.fullmatch(r"[0-9]{1,16}", value) or not 0 <= int(value) <= most:
        raise InvalidRequest(f"{name}: give a whole number from 0 to {most}", param=name)
    return int(value)


def choice(request: web.Request, name: str, options: tuple[str, ...]) -> str:
    """One of `options` (the first when absent)."""
    value = request.query.get(name, "") or options[0]
    if value not in options:
        raise InvalidRequest(f"{name}: one of {', '.join(options)}", param=name)
    return value


def window(
    request: web.Request, rows: list[T], name: str, total: int | None = None
) -> tuple[list[T], dict[str, str | None]]:
    """A page of `rows` from the offset in parameter `name`, and the links to the pages before and after it
    (`total`: how many there are, when `rows` holds only what was read up to one past this page)."""
    offset = number(request, name, 0) or 0
    count = len(rows) if total is None else total
    page = rows[offset : offset + PAGE_SIZE]
    links = {
        "previous": link(request, **{name: max(0, offset - PAGE_SIZE)}) if offset else None,
        "next": link(request, **{name: offset + PAGE_SIZE}) if offset + PAGE_SIZE < count else None,
    }
    return page, links


def link(request: web.Request, **changes: object) -> str:
    """This page's address with some parameters changed (None removes one): pagination and CSV links."""
    query = {k: v for k, v in request.query.items() if k != "done"}
    for key, value in changes.items():
        if value is None:
            query.pop(key, None)
        else:
            query[key] = str(value)
    encoded = urllib.parse.urlencode(query)
    return f"{request.path}?{encoded}" if encoded else request.path
