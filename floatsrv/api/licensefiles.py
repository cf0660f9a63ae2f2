"""License file endpoints (admin): `/v1/license-files` (import, list, remove), activation requests
(`POST /v1/license-files/requests`), and LicenseSpring's `POST /api/v4/license/upload` (multipart, one file,
any field name), which takes a floatsrv license file, and `POST /api/v4/license/generate` (the request).

A file is sent as the body's text (any text content type), as JSON `{"license_file": "..."}`, or, on the
upload route, as the one file of a multipart form. It is applied completely or not at all; every import,
refusal and removal is an audit row.
"""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from aiohttp import BodyPartReader, web

from floatsrv.api.account import actor
from floatsrv.api.body import decode_json_object, read_body, too_large
from floatsrv.api.middleware import json_response
from floatsrv.api.native import ok
from floatsrv.api.validation import StrictBody, parse
from floatsrv.appkeys import CONFIG, DOMAIN, IDENTITY, LIVE
from floatsrv.domain import activation, licensing
from floatsrv.domain.licensefiles import file_state
from floatsrv.domain.licensing import FileRow, ImportResult
from floatsrv.entitlements.request import ActivationRequest
from floatsrv.errors import InvalidRequest, LicenseFileMalformed, RequestTimeout
from floatsrv.times import iso_us


def file_view(row: FileRow, request: web.Request) -> dict[str, Any]:
    domain = request.app[DOMAIN]
    return {
        "object": "license_file",
        "file_id": row.file_id,
        "state": file_state(row, domain.licensing.time.later(domain.clock.now())),
        "kid": row.kid,
        "entitlements": row.entitlements,
        "series": row.series,
        "sequence": row.sequence,
        "binding": (
            {"server_key": row.bound_to, "fingerprint": row.fingerprint} if row.bound_to else {"unbound": True}
        ),
        "fingerprint_changed": row.file_id in domain.licensing.rebind,
        "issued_at": iso_us(row.issued_at),
        "not_before": iso_us(row.not_before),
        "expires_at": iso_us(row.expires_at),
        "refresh_by": iso_us(row.refresh_by),
        "request_id": row.request_id,
        "licenses": row.license_ids,
        "imported_at": iso_us(row.imported_at),
        "imported_by": row.imported_by,
        "ended_at": iso_us(row.ended_at),
        "end_reason": row.end_reason,
    }


def _text(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise LicenseFileMalformed("a license file is ASCII text") from None


async def _import(request: web.Request, text: str) -> ImportResult:
    return await licensing.import_text(request.app[DOMAIN], actor(request), text)


def _result_view(result: ImportResult, request: web.Request) -> dict[str, Any]:
    report = result.report
    return {
        **file_view(result.file, request),
        "outcome": result.outcome,
        "superseded": result.superseded,
        "licenses_added": report.added,
        "licenses_changed": report.changed,
        "licenses_removed": report.removed,
        "seats_ended": report.seats_ended,
    }


async def import_file(request: web.Request) -> web.Response:
    mime = (request.headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()
    raw = await read_body(request)
    if mime == "application/json" or mime.endswith("+json"):
        body = decode_json_object(raw)
        text = body.get("license_file")
        if not isinstance(text, str) or set(body) != {"license_file"}:
            raise InvalidRequest('send {"license_file": "<the file\'s text>"}', param="license_file")
    else:
        text = _text(raw)
    result = await _import(request, text)
    status = 201 if result.outcome == "imported" else 200
    return json_response({"success": True, "data": _result_view(result, request)}, status=status)


class FilesQuery(StrictBody):
    all: Literal["true", "false", "1", "0", "yes", "no"] = "false"


async def list_files(request: web.Request) -> web.Response:
    query = parse(FilesQuery, dict(request.query))
    rows = await licensing.files(request.app[DOMAIN].store, query.all in ("true", "1", "yes"))
    return ok({"object": "list", "data": [file_view(row, request) for row in rows]})


async def remove_file(request: web.Request) -> web.Response:
    row = await licensing.remove(request.app[DOMAIN], actor(request), request.match_info["file_id"])
    return ok(file_view(row, request))


async def _multipart_file(request: web.Request) -> bytes:
    """The one file of a multipart form (any field name), read within the body size limit and timeout."""
    limit = request.app[CONFIG].server.max_body_bytes
    try:
        reader = await request.multipart()
    except (ValueError, AssertionError, KeyError):
        raise InvalidRequest("send the license file as multipart/form-data with one file") from None
    found: bytes | None = None
    async with asyncio.timeout(request.app[LIVE].config.server.request_timeout_seconds):
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader) or found is not None:
                raise InvalidRequest("send exactly one file in the multipart form")
            data = bytearray()
            while chunk := await part.read_chunk():
                data += chunk
                if len(data) > limit:
                    too_large(request)
            found = bytes(data)
    if found is None:
        raise InvalidRequest("the multipart form holds no file")
    return found


async def v4_upload(request: web.Request) -> web.Response:
    try:
        raw = await _multipart_file(request)
    except TimeoutError:
        raise RequestTimeout("the upload did not arrive in time (server.request_timeout_seconds)") from None
    result = await _import(request, _text(raw))
    return json_response(
        {
            "status": "ok",
            "message": "license file imported" if result.outcome == "imported" else "license file already in force",
            "file_id": result.file.file_id,
            "licenses": result.file.license_ids,
        }
    )


async def create_request(request: web.Request) -> web.Response:
    """`POST /v1/license-files/requests` (admin): a new activation request for the vendor (offline activation,
    or a rebind after a fingerprint change). Answers the signed request as text and its fields."""
    made, document = await new_request(request)
    data = {
        "object": "activation_request",
        **made.payload(),
        "request": document.decode("ascii"),
        "file_name": f"{made.request_id}.req",
    }
    return json_response({"success": True, "data": data}, status=201)


async def v4_generate(request: web.Request) -> web.Response:
    """LicenseSpring's `POST /api/v4/license/generate` (admin): the offline activation request, as a file to
    download and hand to the vendor. `product` and `license_key` are accepted and not needed: the vendor
    decides what the file grants."""
    await read_body(request)  # any body (LicenseSpring's UI sends {"product", "license_key"}; {} is accepted)
    made, document = await new_request(request)
    return web.Response(
        body=document,
        content_type="application/octet-stream",
        headers={"Content-Disposition": f'attachment; filename="{made.request_id}.req"'},
    )


async def new_request(request: web.Request) -> tuple[ActivationRequest, bytes]:
    """A new activation request, recorded and audited: the v1 and v4 routes and the console's download."""
    domain = request.app[DOMAIN]
    return await activation.create_request(
        domain.store,
        domain.clock,
        domain.licensing,
        request.app[IDENTITY],
        actor(request),
        request.app[CONFIG].sync.server_id,
    )
