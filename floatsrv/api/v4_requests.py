"""Request bodies of the LicenseSpring-compatible /api/v4 endpoints (what real clients send).

Unknown keys are ignored (clients send `registered_at`, `sdk_ver`, ...). Required fields follow the SDK:
`product` and `user` everywhere, `consumptions` for consumption, `feature` for feature calls.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from floatsrv.api.validation import LenientBody, Text100, Text256, Text1024, WireBool, WireInstant, WireInt

Product = Text100
User = Text256
Feature = Text100
LicenseId = Annotated[WireInt, Field(gt=0, lt=2**53)]
# LicenseSpring's SDK caps a local batch at 2**31-1; nothing legitimate sends more in one request.
Consumptions = Annotated[WireInt, Field(ge=-(2**31 - 1), le=2**31 - 1)]


class ClientFields(LenientBody):
    os_hostname: Text256 | None = None
    ip_local: Text256 | None = None
    user_info: Text1024 | None = None
    sdk_ver: Text100 | None = None
    app_ver: Text100 | None = None


class RegisterBody(ClientFields):
    product: Product
    user: User
    license_id: LicenseId | None = None
    # Sent by some clients (the server's clock is what counts); accepted and ignored.
    registered_at: Any = None


class BorrowBody(RegisterBody):
    borrowed_until: WireInstant = None


class UnregisterBody(LenientBody):
    product: Product
    user: User
    license_id: LicenseId | None = None


class ConsumptionBody(LenientBody):
    product: Product
    consumptions: Consumptions
    user: User | None = None
    license_id: LicenseId | None = None
    max_overages: Annotated[WireInt, Field(ge=0, le=2**31 - 1)] | None = None
    allow_overages: WireBool | None = None


class FeatureConsumptionBody(LenientBody):
    product: Product
    feature: Feature
    consumptions: Consumptions
    user: User | None = None
    license_id: LicenseId | None = None


class FeatureRegisterBody(ClientFields):
    product: Product
    feature: Feature
    user: User
    license_id: LicenseId | None = None
    # The Python SDK sends `borrow_until`; the v1 docs say `borrowed_until`. Either pins the feature seat.
    borrow_until: WireInstant = None
    borrowed_until: WireInstant = None


class FeatureReleaseBody(LenientBody):
    product: Product
    feature: Feature
    user: User
    license_id: LicenseId | None = None
