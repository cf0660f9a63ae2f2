"""Turning untrusted input into typed values: lenient-but-exact scalar types and one error translation.

LicenseSpring clients send numbers and booleans as JSON values *or* as strings (the docs' curl examples
do), so `WireInt` and `WireBool` accept both, but nothing looser: no floats with fractions, no `yes`,
no `True` as 1. Strings must be real strings without control characters.
"""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, TypeVar

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Strict,
    StringConstraints,
    ValidationError,
    model_validator,
)

from floatsrv.config import format_path
from floatsrv.errors import InvalidRequest, MissingParameters
from floatsrv.times import is_zero_time, parse_instant

M = TypeVar("M", bound=BaseModel)


class StrictBody(BaseModel):
    """A /v1 request body or query: unknown keys are refused (a typo must not pass silently)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class LenientBody(BaseModel):
    """An /api/v4 request body, read as liberally as LicenseSpring's own server reads it (docs/compatibility.md):
    unknown keys are ignored (clients send more); a key in another letter case or camelCase is the same field
    (Go's decoder matches `User` to `user`, and an SDK's `allowOverages` means `allow_overages`); an empty
    string in an optional field means "absent" (the v1 docs send `"user_info": ""`). What is actually wrong
    is still refused: an empty or missing `product` or `user`, control characters, over-long values."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _as_clients_send(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        fields = cls.model_fields
        for key, value in data.items():  # the common case (the SDK's own keys, no ""): untouched, and fast
            if value == "" or key not in fields:
                return _normalised(data, fields)
        return data


_CAMEL = re.compile(r"([a-z0-9])([A-Z])")


def field_name(key: str) -> str:
    """The field a client's spelling of a key means: `allowOverages` -> `allow_overages`, `User` -> `user`,
    `licenseID` -> `license_id` (bodies here, query parameters in `api.v4`)."""
    return _CAMEL.sub(r"\1_\2", key).lower()


def _normalised(data: dict[str, Any], fields: dict[str, Any]) -> dict[str, Any]:
    exact = {key: value for key, value in data.items() if key in fields}
    for key, value in data.items():
        if key not in fields and isinstance(key, str):
            name = field_name(key)
            if name in fields and name not in exact:  # the field's own name wins over a variant of it
                exact[name] = value
    # An empty string in an optional field is no value; in a required one (`product`, `user`) it stays, and is
    # refused as empty.
    return {key: value for key, value in exact.items() if not (value == "" and not fields[key].is_required())}


# ASCII only: int() would also read other scripts' digits ("١٠٠١" as 1001).
_INT = re.compile(r"^\s*[+-]?\d{1,19}\s*$", re.ASCII)
_DIGITS = re.compile(r"^\s*[+-]?\d{20,}\s*$", re.ASCII)


def wire_int(value: Any) -> int:
    """An integer from a JSON number or a numeric string. Raises ValueError."""
    checked: int = _wire_int(value)
    return checked


# SQLite stores 64-bit integers: anything outside would overflow there, so it is refused here, for every field.
_INT_RANGE = range(-(2**63), 2**63)


def _wire_int(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("must be an integer")
    number: int | None = None
    if isinstance(value, int):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    elif isinstance(value, Decimal) and value.is_finite() and (value.is_zero() or value.adjusted() < 19):
        # adjusted() first: comparing or rounding 1e999999999 would overflow the decimal context.
        if value == value.to_integral_value():
            number = int(value)
    elif isinstance(value, str) and _INT.match(value):
        number = int(value)
    elif isinstance(value, str) and _DIGITS.match(value):
        number = 2**63  # more digits than any 64-bit integer has: out of range, said so below
    if number is None:
        raise ValueError("must be an integer")
    if number not in _INT_RANGE:
        raise ValueError("must be an integer between -2^63 and 2^63-1")
    return number


def _wire_bool(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise ValueError("must be true or false")


def _wire_instant(value: Any) -> Any:
    """ISO 8601 instant; Go's zero time ("0001-01-01T00:00:00Z") and empty mean "none"."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError("must be an ISO 8601 date-time string")
    if not value.strip() or is_zero_time(value):
        return None
    try:
        return parse_instant(value)
    except ValueError:
        raise ValueError("must be an ISO 8601 date-time, e.g. 2029-05-06T00:00:00Z") from None


WireInt = Annotated[int, BeforeValidator(_wire_int)]
WireBool = Annotated[bool, BeforeValidator(_wire_bool)]
WireInstant = Annotated[datetime | None, BeforeValidator(_wire_instant)]


# Non-empty strings of bounded length (10k-character "names" are refused, not stored), without control
# characters. Checked by pydantic-core itself (no Python call per field): these are on every request.
_NO_CONTROL = r"^[^\x00-\x1f\x7f]*$"
Text100 = Annotated[str, Strict(), StringConstraints(min_length=1, max_length=100, pattern=_NO_CONTROL)]
Text256 = Annotated[str, Strict(), StringConstraints(min_length=1, max_length=256, pattern=_NO_CONTROL)]
Text1024 = Annotated[str, Strict(), StringConstraints(min_length=1, max_length=1024, pattern=_NO_CONTROL)]


def _message(error: Any) -> str:
    kind = error["type"]
    ctx = error.get("ctx") or {}
    if kind == "value_error":
        detail = str(ctx.get("error") or error["msg"])
    elif kind == "string_type":
        detail = "must be a string"
    elif kind == "string_pattern_mismatch":
        detail = "must not contain control characters"
    elif kind == "string_too_long":
        detail = f"must be at most {ctx.get('max_length')} characters"
    elif kind == "string_too_short":
        detail = "must not be empty"
    elif kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        bound = next(iter(ctx.values()), "")
        detail = {
            "greater_than": "must be greater than",
            "greater_than_equal": "must be at least",
            "less_than": "must be less than",
            "less_than_equal": "must be at most",
        }[kind] + f" {bound}"
    elif kind == "literal_error":
        detail = f"must be one of {ctx.get('expected')}"
    else:
        detail = str(error["msg"]).lower()
    return f"{format_path(tuple(error['loc']))}: {detail}"


def parse(model: type[M], data: dict[str, Any]) -> M:
    """Validate `data` into `model`. Raises MissingParameters or InvalidRequest naming the field."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        missing = [format_path(tuple(e["loc"])) for e in errors if e["type"] == "missing"]
        if missing:
            raise MissingParameters(f"missing parameters: {', '.join(missing)}", param=missing[0]) from None
        first = errors[0]
        raise InvalidRequest(_message(first), param=format_path(tuple(first["loc"]))) from None
