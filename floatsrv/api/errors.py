"""Domain errors -> HTTP, one table per API surface, looked up by the error's class hierarchy (MRO).

/api/v4 (LicenseSpring-compatible): `{"status", "code", "message"}`, 400 for nearly every domain refusal
as LicenseSpring does (its SDK treats any 4xx as a ClientError and reads `code`).
/v1 (native): `{"success": false, "error": {"type", "code", "message", "param", "details", "doc_url"}}`
with statuses that mean something (404 not found, 409 seat limit, 422 limit reached, ...).
"""

from __future__ import annotations

from typing import Any, Literal

from floatsrv import errors as e

Surface = Literal["v4", "native"]

# Every code is explained in docs/errors.md of the floatsrv distribution.
DOC_URL = "docs/errors.md"

_V4_STATUS: dict[type[e.FloatsrvError], int] = {
    e.PayloadTooLarge: 413,
    e.RequestTimeout: 408,
    e.UnsupportedMediaType: 415,
    e.AuthError: 401,
    e.TooManyRequests: 429,
    e.LoginBusy: 503,
    e.Forbidden: 403,
    e.Conflict: 409,
    e.LicenseFileSuperseded: 409,
    e.LicenseFileLicenseConflict: 409,
    e.NotGrantedByVendor: 403,
    e.StorageUnavailable: 503,
    e.FloatsrvError: 400,
}

# LicenseSpring clients know only their own codes for feature consumption refusals.
_V4_CODE: dict[type[e.FloatsrvError], str] = {
    e.UsageLimitExceeded: "feature_not_enough_consumptions",
    e.InsufficientCredits: "feature_not_enough_consumptions",
}

_NATIVE: dict[type[e.FloatsrvError], tuple[int, str]] = {
    e.PayloadTooLarge: (413, "validation_error"),
    e.RequestTimeout: (408, "invalid_request_error"),
    e.UnsupportedMediaType: (415, "validation_error"),
    e.InvalidRequest: (400, "validation_error"),
    e.NotFound: (404, "not_found"),
    e.Conflict: (409, "conflict_error"),
    e.LicenseUnusable: (422, "license_error"),
    e.WrongKind: (422, "validation_error"),
    e.LicenseFileRefused: (422, "license_file_error"),
    e.LicenseFileMalformed: (400, "validation_error"),
    e.LicenseFileAlgUnsupported: (400, "validation_error"),
    e.LicenseFilePayloadInvalid: (400, "validation_error"),
    e.LicenseFileSuperseded: (409, "conflict_error"),
    e.LicenseFileLicenseConflict: (409, "conflict_error"),
    e.NotGrantedByVendor: (403, "permission_error"),
    e.SeatsExhausted: (409, "limit_error"),
    e.LimitReached: (422, "limit_error"),
    e.AuthError: (401, "authentication_error"),
    e.TooManyRequests: (429, "rate_limit_error"),
    e.LoginBusy: (503, "rate_limit_error"),
    e.Forbidden: (403, "permission_error"),
    e.StorageUnavailable: (503, "server_error"),
    e.FloatsrvError: (400, "invalid_request_error"),
}


def _lookup(table: dict[type[e.FloatsrvError], Any], error: e.FloatsrvError) -> Any:
    for cls in type(error).__mro__:
        if cls in table:
            return table[cls]
    raise LookupError(type(error))  # unreachable: FloatsrvError is in every table


def status_for(surface: Surface, error: e.FloatsrvError) -> int:
    if surface == "v4":
        return int(_lookup(_V4_STATUS, error))
    return int(_lookup(_NATIVE, error)[0])


def error_body(
    surface: Surface,
    status: int,
    code: str,
    message: str,
    *,
    kind: str | None = None,
    param: str | None = None,
    details: dict[str, Any] | None = None,
) -> dict[str, Any]:
    if surface == "v4":
        return {"status": status, "code": code, "message": message}
    return {
        "success": False,
        "error": {
            "type": kind or ("server_error" if status >= 500 else "invalid_request_error"),
            "code": code,
            "message": message,
            "param": param,
            "details": details or {},
            "doc_url": f"{DOC_URL}#{code}",
        },
    }


def render(surface: Surface, error: e.FloatsrvError) -> tuple[int, dict[str, Any]]:
    """Status and JSON body for a domain error on the given surface."""
    if surface == "v4":
        status = status_for("v4", error)
        return status, error_body("v4", status, _V4_CODE.get(type(error), error.code), error.message)
    status, kind = _lookup(_NATIVE, error)
    details = {k: v for k, v in error.detail.items() if k != "param"}
    param = error.detail.get("param")
    return status, error_body(
        "native",
        status,
        error.code,
        error.message,
        kind=kind,
        param=param if isinstance(param, str) else None,
        details=details,
    )
