"""Request bodies of /api/v5 (LicenseSpring Floating Server v2), as its SDKs send them.

The license is in the path (`/license/{id}/...`), not the body; the seat holder is `username` (often a
hardware id, not a login). Read as liberally as /api/v4 (`LenientBody`): unknown keys ignored, `null` and ""
in optional fields mean absent (the Python SDK sends `"ip_local": null`), keys in any letter case.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from floatsrv.api.admin import Username
from floatsrv.api.v4_requests import ClientFields, Consumptions, Feature, User
from floatsrv.api.validation import LenientBody, Text256, WireBool, WireInstant, WireInt

Password = Annotated[str, Field(min_length=1, max_length=256)]


class Login(LenientBody):
    username: Annotated[str, Field(min_length=1, max_length=100)]
    password: Password


class PasswordChange(LenientBody):
    # LicenseSpring's clients send the user, the old and the new password; any name for the old one is taken.
    username: Annotated[str, Field(min_length=1, max_length=100)] | None = None
    old_password: Password | None = None
    current_password: Password | None = None
    password: Password | None = None
    new_password: Password


class NewUser(LenientBody):
    username: Username
    password: Password | None = None
    role: Annotated[str, Field(min_length=1, max_length=20)] = "user"


class Register(ClientFields):
    username: User
    email: Text256 | None = None


class Borrow(Register):
    borrowed_until: WireInstant = None


class Unregister(LenientBody):
    username: User


class Consumption(LenientBody):
    username: User | None = None
    consumptions: Consumptions
    max_overages: Annotated[WireInt, Field(ge=0, le=2**31 - 1)] | None = None
    allow_overages: WireBool | None = None


class FeatureConsumption(LenientBody):
    username: User | None = None
    feature: Feature
    consumptions: Consumptions


class FeatureRegister(ClientFields):
    username: User
    feature: Feature
    # The Python SDK sends `borrow_until` (null unless borrowing); `borrowed_until` is taken too.
    borrow_until: WireInstant = None
    borrowed_until: WireInstant = None


class FeatureRelease(LenientBody):
    username: User
    feature: Feature
