"""What a license file grants: the payload the vendor signs (schema: docs/license-file-payload.schema.json).

`licenses` uses exactly the license schema of the YAML config (`models.LicenseSpec`): one validator for
both. Parsed only after the signature over these bytes verified.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from floatsrv.config import describe  # the config's wording, for the same license schema
from floatsrv.errors import LicenseFilePayloadInvalid
from floatsrv.models import Instant, LicenseSpec

FORMAT = "floatsrv-license-file/1"

Name = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")]
PublicKeyText = Annotated[str, Field(pattern=r"^[A-Za-z0-9+/]{43}=$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerBinding(_Strict):
    """Bound to one server: its Ed25519 identity key (`floatsrv server-key`), optionally its fingerprint."""

    server_key: PublicKeyText
    fingerprint: Annotated[str, Field(min_length=1, max_length=200)] | None = None


class Unbound(_Strict):
    """Valid on any server; a vendor issues one only on purpose (the demo)."""

    unbound: Literal[True]


def _unique_license_ids(licenses: list[LicenseSpec]) -> list[LicenseSpec]:
    seen: set[int] = set()
    for spec in licenses:
        if spec.id in seen:
            raise ValueError(f"license id {spec.id} appears twice")
        seen.add(spec.id)
    return licenses


class LicenseFilePayload(_Strict):
    format: Literal["floatsrv-license-file/1"]
    file_id: Name
    issued_at: Instant
    not_before: Instant
    expires_at: Instant | None = None
    # Past it without a newer file (online refresh, or a new file imported by hand), the licenses stop being
    # served; warnings come from 7 days before.
    refresh_by: Instant | None = None
    # Within a series only the highest sequence is in force; files in different series are independent.
    series: Name = "default"
    sequence: Annotated[int, Field(ge=1, lt=2**53)] = 1
    binding: ServerBinding | Unbound
    request_id: Annotated[str, Field(min_length=1, max_length=100)] | None = None
    licenses: Annotated[list[LicenseSpec], Field(min_length=1), AfterValidator(_unique_license_ids)]

    @model_validator(mode="after")
    def check_dates(self) -> Self:
        if self.expires_at is not None and self.expires_at <= self.not_before:
            raise ValueError("expires_at must be later than not_before")
        if self.refresh_by is not None and self.refresh_by <= self.not_before:
            raise ValueError("refresh_by must be later than not_before")
        return self


def parse_payload(raw: bytes) -> LicenseFilePayload:
    """The payload from its (already verified) bytes. Raises LicenseFilePayloadInvalid naming the field."""
    try:
        return LicenseFilePayload.model_validate_json(raw)
    except ValidationError as exc:
        problems = [describe(error) for error in exc.errors()]
        raise LicenseFilePayloadInvalid("; ".join(problems[:5]), problems=problems[:20]) from None


def json_schema() -> dict[str, Any]:
    """The payload's JSON Schema, as docs/license-file-payload.schema.json publishes it (a test keeps the
    two equal; regenerate with `python -m floatsrv.entitlements.payload > docs/license-file-payload.schema.json`)."""
    return {
        **LicenseFilePayload.model_json_schema(),
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://floatsrv.invalid/schemas/license-file-payload.json",
        "title": "floatsrv license file payload (floatsrv-license-file/1)",
        "description": "What a vendor signs: the payload bytes inside a license file's envelope "
        "(docs/license-files.md). `licenses` has exactly the schema of inline licenses in the YAML config.",
    }


if __name__ == "__main__":
    print(json.dumps(json_schema(), indent=2))
