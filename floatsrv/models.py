"""Definitions that cross layers: what a license and its features allow, and who is calling.

`LicenseSpec`/`FeatureSpec` are validated pydantic models: the YAML config produces them today, signed
license files will tomorrow, and the database stores them as JSON. Field names follow LicenseSpring's
license object so admins and client developers see familiar names. Every integer of a license is bounded
(`MAX_COUNT`, and timeouts by what a clock can add), so a reply carrying it, signed for /api/v5, never fails.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import ROUND_DOWN, Decimal, InvalidOperation
from enum import StrEnum
from typing import Annotated, Any, Literal, NamedTuple, Self, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from floatsrv.jsjson import MAX_SAFE_INTEGER
from floatsrv.periods import CALENDAR_ANCHOR, PeriodKind
from floatsrv.quantity import MAX_UNITS
from floatsrv.times import parse_instant

ShortCode = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")]
# The most any count of a license may reach: seats, maxima, overages and running totals alike. It is the largest
# integer JavaScript holds exactly (2**53-1), so a signed /api/v5 reply can carry every one of them.
MAX_COUNT = MAX_SAFE_INTEGER
Count = Annotated[int, Field(ge=0, le=MAX_COUNT)]
Seats = Annotated[int, Field(gt=0, le=MAX_COUNT)]
# Minutes a registration lasts, hours a borrow may last: at most a year and ten years (as `policy` rules), so
# the time a seat ends is always a date the server can store.
TimeoutMinutes = Annotated[int, Field(gt=0, le=525_600)]
BorrowHours = Annotated[int, Field(gt=0, le=87_600)]


def _instant(value: Any) -> Any:
    # YAML hands us datetimes and dates already; strings come from JSON. Naive means UTC.
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    if isinstance(value, str):
        try:
            return parse_instant(value)
        except ValueError as exc:
            raise ValueError("must be an ISO 8601 date-time, e.g. 2027-01-31T00:00:00Z") from exc
    raise ValueError("must be an ISO 8601 date-time, e.g. 2027-01-31T00:00:00Z")


def _period(value: Any) -> Any:
    # LicenseSpring says "annually"; we say "yearly" and accept both.
    return "yearly" if value == "annually" else value


def _exact_decimal(places: int) -> Any:
    def check(value: Any) -> Any:
        # YAML turns 0.02 into a float; its shortest repr is what the admin typed, so go through str.
        if isinstance(value, float):
            value = str(value)
        if isinstance(value, bool) or not isinstance(value, (int, str, Decimal)):
            raise ValueError('must be a decimal number, e.g. "0.25"')
        try:
            number = Decimal(value.strip() if isinstance(value, str) else value)
        except InvalidOperation:
            raise ValueError('must be a decimal number, e.g. "0.25"') from None
        if not number.is_finite() or number < 0:
            raise ValueError("must be a finite number, zero or more")
        if number.adjusted() >= 18:  # quantize() would overflow the decimal context (28 digits) from here on
            raise ValueError("must be less than 10^18")
        if number != number.quantize(Decimal(1).scaleb(-places), rounding=ROUND_DOWN):
            raise ValueError(f"may have at most {places} decimal places")
        return number

    return check


Instant = Annotated[datetime, BeforeValidator(_instant)]
Period = Annotated[PeriodKind, BeforeValidator(_period)]
# Prices: up to 6 decimal places. Credit amounts: thousandths, like quantities.
Price = Annotated[Decimal, BeforeValidator(_exact_decimal(6))]
Credits = Annotated[Decimal, BeforeValidator(_exact_decimal(3))]
ConsumptionModel = Literal["boolean", "seats", "metered", "credits"]


class Role(StrEnum):
    VIEWER = "viewer"
    USER = "user"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return _ROLE_RANK[self]

    def allows(self, required: Role) -> bool:
        return self.rank >= required.rank


_ROLE_RANK = {Role.VIEWER: 0, Role.USER: 1, Role.ADMIN: 2}


class ClientInfo(NamedTuple):
    """What a client tells us about itself on register; kept on the seat for admins."""

    os_hostname: str | None = None
    ip_local: str | None = None
    user_info: str | None = None
    sdk_ver: str | None = None
    app_ver: str | None = None


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: a user (by token), an app (by API key), or `anonymous` when auth is switched off."""

    username: str
    role: Role
    must_change_password: bool = False
    # How they proved it: "token:<jti>", "api_key:<id>" or "none".
    credential: str = "none"

    @property
    def actor(self) -> str:
        """The name written to the audit log."""
        return self.username


def _numeric(annotation: Any) -> bool:
    """Whether a field's type admits numbers but not booleans (int, float, Decimal, possibly optional)."""
    if annotation is bool:
        return False
    if annotation in (int, float, Decimal):
        return True
    args = get_args(annotation)
    return bool(args) and bool not in args and any(_numeric(arg) for arg in args)


def refuse_booleans(cls: type[BaseModel], value: Any, info: ValidationInfo) -> Any:
    """A `field_validator("*", mode="before")`: YAML's true/false given for a number is an error (pydantic
    would read `floating_users: true` as 1)."""
    if isinstance(value, bool) and info.field_name is not None:
        field = cls.model_fields.get(info.field_name)
        if field is not None and _numeric(field.annotation):
            raise ValueError("must be a number, not true or false")
    return value


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    _no_booleans_for_numbers = field_validator("*", mode="before")(classmethod(refuse_booleans))


class ConsumptionLimits(_Spec):
    """The LicenseSpring consumption rule shared by licenses and consumption features."""

    allow_unlimited_consumptions: bool = False
    allow_overages: bool = False
    # With allow_overages, 0 means unlimited overage (as LicenseSpring's SDK assumes).
    max_overages: Count = 0
    allow_negative_consumptions: bool = False
    reset_consumption: bool = False
    consumption_period: Period | None = None

    @model_validator(mode="after")
    def check_period_needed(self) -> Self:
        if self.reset_consumption and self.consumption_period is None:
            raise ValueError("consumption_period is required when reset_consumption is true")
        return self

    def _reject_consumption_fields(self, kind: str, maximum_field: str) -> None:
        consumption_fields = {maximum_field, *ConsumptionLimits.model_fields}
        stray = sorted(consumption_fields & self.model_fields_set)
        if stray:
            raise ValueError(f"{stray[0]} only applies to {kind}")

    def capacity(self, maximum: int) -> int | None:
        """Most that the period total may reach (never past MAX_COUNT), or None when unlimited."""
        if self.allow_unlimited_consumptions or (self.allow_overages and self.max_overages == 0):
            return None
        return min(maximum + (self.max_overages if self.allow_overages else 0), MAX_COUNT)


class FeatureSpec(ConsumptionLimits):
    code: ShortCode
    name: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    feature_type: Literal["activation", "consumption"] = "activation"
    # How the native API meters it. Default: metered for consumption features, seats for floating ones,
    # boolean otherwise. metered/credits imply feature_type consumption.
    consumption_model: ConsumptionModel | None = None
    # Entitlement switch: a disabled feature is refused until an add-on enables it.
    enabled: bool = True
    # metered: past the included units, accept everything but flag it (instead of refusing).
    soft_limit: bool = False
    overage_unit_price: Price | None = None
    # credits: what one unit costs, drawn from the license's credit pools.
    credits_per_unit: Credits | None = None
    # Setting floating_users makes the feature floating: each user holds one of these seats.
    floating_users: Seats | None = None
    floating_timeout: TimeoutMinutes | None = None
    max_consumption: Count = 0
    expiry_date: Instant | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def imply_type(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("consumption_model") in ("metered", "credits"):
            data = {"feature_type": "consumption", **data}
        return data

    @model_validator(mode="after")
    def check_consumption_fields_need_type(self) -> Self:
        if not self.is_consumption:
            self._reject_consumption_fields("consumption features (feature_type: consumption)", "max_consumption")
            for key in ("soft_limit", "overage_unit_price", "credits_per_unit"):
                if key in self.model_fields_set:
                    raise ValueError(f"{key} only applies to consumption features")
        model = self.model
        if model in ("metered", "credits") and not self.is_consumption:
            raise ValueError(f"consumption_model {model} needs feature_type consumption")
        if model in ("boolean", "seats") and self.is_consumption:
            raise ValueError(f"consumption_model {model} does not fit feature_type consumption")
        if model == "seats" and self.floating_users is None:
            raise ValueError("consumption_model seats needs floating_users")
        if model == "credits":
            if self.credits_per_unit is None:
                raise ValueError("consumption_model credits needs credits_per_unit")
            if self.allow_negative_consumptions:
                raise ValueError("credits features cannot allow negative consumptions")
        elif self.credits_per_unit is not None:
            raise ValueError("credits_per_unit only applies to consumption_model credits")
        return self

    @property
    def model(self) -> ConsumptionModel:
        if self.consumption_model is not None:
            return self.consumption_model
        if self.is_consumption:
            return "metered"
        return "seats" if self.floating_users is not None else "boolean"

    @property
    def display_name(self) -> str:
        return self.name or self.code

    @property
    def is_floating(self) -> bool:
        return self.floating_users is not None

    @property
    def is_consumption(self) -> bool:
        return self.feature_type == "consumption"

    @property
    def counts_usage(self) -> bool:
        """Usage of it is counted (metered and credits per period, boolean for good); seats are held, not counted."""
        return self.model != "seats"


def _unique_codes(features: list[FeatureSpec]) -> list[FeatureSpec]:
    seen: set[str] = set()
    for feature in features:
        if feature.code in seen:
            raise ValueError(f"feature code {feature.code!r} appears twice")
        seen.add(feature.code)
    return features


GrantId = Annotated[str, Field(min_length=4, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")]


class AddonGrant(_Spec):
    """An add-on the vendor grants on a license: the admin may then activate it there (`/v1/addons`).
    The fields are those of an add-on in the catalog; `id` is the vendor's, stable across files."""

    id: GrantId
    name: Annotated[str, Field(min_length=1, max_length=100)]
    description: Annotated[str, Field(max_length=255)] = ""
    base_price: Price = Decimal(0)
    feature: ShortCode
    consumption_model: ConsumptionModel
    included_units: Annotated[int, Field(ge=0, le=10**9)] = 0
    overage_rate: Price | None = None
    credit_cost: Credits | None = None


class CreditGrant(_Spec):
    """Purchased credits the vendor grants on a license, applied once by the admin (by `id`)."""

    id: GrantId
    amount: Credits
    note: Annotated[str, Field(max_length=500)] | None = None

    @model_validator(mode="after")
    def check_positive(self) -> Self:
        if self.amount <= 0:
            raise ValueError("amount must be more than zero")
        if self.amount > MAX_UNITS:  # as any quantity the API takes (the ledger keeps thousandths in 64 bits)
            raise ValueError(f"amount must be at most {MAX_UNITS}")
        return self


def _unique_ids(kind: str) -> AfterValidator:
    def check(items: list[Any]) -> list[Any]:
        seen: set[str] = set()
        for item in items:
            if item.id in seen:
                raise ValueError(f"{kind} id {item.id!r} appears twice")
            seen.add(item.id)
        return items

    return AfterValidator(check)


class LicenseSpec(ConsumptionLimits):
    id: Annotated[int, Field(gt=0, lt=2**53)]
    product: ShortCode
    product_name: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    license_key: Annotated[str, Field(max_length=200)] | None = None
    license_type: Literal["perpetual", "time-limited", "subscription", "consumption"] = "perpetual"
    enabled: bool = True
    active: bool = True
    # Anchor for consumption periods; without it periods follow the calendar (UTC).
    start_date: Instant | None = None
    # Expiry; None means the license never expires.
    validity_period: Instant | None = None
    floating_users: Seats
    floating_timeout: TimeoutMinutes = 30
    can_borrow: bool = False
    max_borrow_time: BorrowHours = 24
    prevent_vm: bool = False
    max_consumptions: Count = 0
    # Native metering: the currency of prices, and the license's plan credits, which reset every
    # credits_period and are spent before purchased credits (purchased ones never expire).
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")] = "USD"
    plan_credits: Credits = Decimal(0)
    credits_period: Period = "monthly"
    # Period used to prorate add-ons on features that have no consumption period of their own.
    billing_period: Period = "monthly"
    metadata: dict[str, Any] = Field(default_factory=dict)
    customer: dict[str, Any] = Field(default_factory=dict)
    features: Annotated[list[FeatureSpec], AfterValidator(_unique_codes)] = Field(default_factory=list)
    # What the vendor grants on top (signed license files; inline licenses may carry them too).
    addons: Annotated[list[AddonGrant], _unique_ids("add-on")] = Field(default_factory=list)
    credit_grants: Annotated[list[CreditGrant], _unique_ids("credit grant")] = Field(default_factory=list)

    @model_validator(mode="after")
    def check_consumption_fields_need_type(self) -> Self:
        if not self.is_consumption:
            self._reject_consumption_fields("consumption licenses (license_type: consumption)", "max_consumptions")
        for grant in self.addons:
            feature = self.feature(grant.feature)
            if feature is None:
                raise ValueError(f"add-on {grant.id!r} is for feature {grant.feature!r}, which the license lacks")
            if feature.model != grant.consumption_model:
                raise ValueError(f"add-on {grant.id!r} is {grant.consumption_model}; feature is {feature.model}")
        return self

    @property
    def is_consumption(self) -> bool:
        return self.license_type == "consumption"

    @property
    def period_anchor(self) -> datetime:
        return self.start_date or CALENDAR_ANCHOR

    def feature(self, code: str) -> FeatureSpec | None:
        for feature in self.features:
            if feature.code == code:
                return feature
        return None

    def feature_timeout(self, feature: FeatureSpec) -> int:
        return feature.floating_timeout or self.floating_timeout


# Where a license's terms come from: a file signed by a vendor key, by the repository's demo key (whose
# private half is public), or the customer's own YAML (unsigned).
Entitlements = Literal["signed", "demo", "unsigned"]


class LicenseSource(NamedTuple):
    entitlements: Entitlements = "unsigned"
    file_id: str | None = None  # the license file it comes from (None: inline in the YAML config)
