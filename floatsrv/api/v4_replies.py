"""Response bodies of /api/v4, shaped as LicenseSpring's SDK parses them (spec §5.3).

`/register` must carry `floating_slots_in_use` and `license_json` (a JSON *string* of the license object);
every other top-level key is overlaid on the SDK's cached license, so live values go there too. The SDK
crashes on a missing `is_floating`, `floating_timeout`, `validity_period`, `id` or
`product_details.short_code`, and does integer maths on the consumption fields, so they are always present.
We never send Go's zero time: an unborrowed seat has `borrowed_until: null`.

The parts of these objects that follow from the license definition alone are built once per license and
copied; only live values (seats, totals, borrow) are filled in per request (`api.v4_cache`).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

import orjson

from floatsrv.api.v4_cache import V4Cache
from floatsrv.domain.consumption import ConsumeResult
from floatsrv.domain.license import License
from floatsrv.domain.metering import limits
from floatsrv.domain.seats import SeatResult, SeatRow
from floatsrv.domain.state import FeatureState, LicenseState, Period
from floatsrv.models import ConsumptionLimits, FeatureSpec, LicenseSpec
from floatsrv.quantity import MILLI
from floatsrv.times import iso, iso_us


def _units(total_milli: int) -> int:
    # v4 counts whole units; fractional usage from the native API rounds down here.
    return total_milli // MILLI


def _terms(terms: ConsumptionLimits) -> dict[str, Any]:
    return {
        "allow_unlimited_consumptions": terms.allow_unlimited_consumptions,
        "allow_overages": terms.allow_overages,
        # The SDK adds max_overages to the maximum even when overages are off, so send 0 then.
        "max_overages": terms.max_overages if terms.allow_overages else 0,
        "allow_negative_consumptions": terms.allow_negative_consumptions,
        "reset_consumption": terms.reset_consumption,
        "consumption_period": "annually" if terms.consumption_period == "yearly" else terms.consumption_period,
    }


def _period(period: Period | None) -> dict[str, Any]:
    return {
        "consumption_period_start": iso(period.start) if period else None,
        "consumption_period_end": iso(period.end) if period else None,
    }


def _borrow(seat: SeatRow | None) -> tuple[bool, str | None]:
    if seat is None or seat.borrowed_until is None or seat.borrowed_until <= seat.heartbeat_at:
        return False, None
    return True, iso_us(seat.borrowed_until)


def _static_feature(spec: LicenseSpec, f: FeatureSpec, feature_id: int | None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": feature_id,
        "code": f.code,
        "name": f.display_name,
        "feature_type": f.feature_type,
        "expiry_date": iso(f.expiry_date) if f.expiry_date else None,
        "metadata": f.metadata,
        "is_floating": f.is_floating,
        "is_floating_cloud": False,
        "floating_users": None,
        "floating_timeout": spec.feature_timeout(f) if f.is_floating else None,
        "floating_in_use_devices": 0,
        "can_borrow": spec.can_borrow if f.is_floating else None,
        "max_borrow_time": spec.max_borrow_time if f.is_floating else None,
        "is_borrowed": False,
        "license_id": spec.id,
    }
    if f.is_consumption:
        out.update(_terms(f))
    return out


def feature_object(
    cache: V4Cache, license: License, feature: FeatureState, seat: SeatRow | None = None
) -> dict[str, Any]:
    f = feature.spec
    static = cache.static(license).features
    key = (f.code, feature.feature_id)
    base = static.get(key)
    if base is None:
        base = static[key] = _static_feature(license.spec, f, feature.feature_id)
    out = dict(base)
    out["floating_in_use_devices"] = feature.seats_in_use
    out["is_borrowed"] = _borrow(seat)[0]
    if f.is_floating:
        # Effective seats: the configured ones plus active seat add-ons.
        out["floating_users"] = limits(feature.allowance, feature.balances).included_milli // MILLI
    if f.is_consumption:
        maximum = _effective_maximum(feature, out)
        out["max_consumption"] = out["max_consumptions"] = maximum  # the SDK's feature schema uses the singular
        out["total_consumptions"] = _units(feature.total_milli)
        out.update(_period(feature.period))
    return out


def _effective_maximum(feature: FeatureState, out: dict[str, Any]) -> int:
    """What the SDK should take as this feature's maximum: `metering.limits`, as every view shows it.

    The SDK refuses locally beyond max_consumption + max_overages, so a soft limit reads as unlimited, and a
    credits feature reads as the units its credits pay for.
    """
    effective = limits(feature.allowance, feature.balances)
    if effective.unlimited:
        out["allow_unlimited_consumptions"] = True
    if feature.allowance.model == "credits":
        out.update(allow_overages=False, max_overages=0)
    return effective.included_milli // MILLI


def _static_license(spec: LicenseSpec) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": spec.id,
        "license_key": spec.license_key,
        "license_type": spec.license_type,
        "license_active": spec.active,
        "license_enabled": spec.enabled,
        "is_expired": False,
        "is_trial": False,
        "trial_days": 0,
        "is_air_gapped": False,
        "is_hardware_key_auth": False,
        "prevent_vm": spec.prevent_vm,
        "validity_period": iso(spec.validity_period) if spec.validity_period else None,
        "start_date": iso(spec.start_date) if spec.start_date else None,
        "maintenance_period": None,
        "enable_maintenance_period": False,
        "allow_grace_period": False,
        "grace_period": 0,
        "max_activations": spec.floating_users,
        "allow_unlimited_activations": False,
        "times_activated": 0,
        "transfer_count": 0,
        "max_transfers": 0,
        "is_floating": True,
        "is_floating_cloud": False,
        "floating_timeout": spec.floating_timeout,
        "floating_users": spec.floating_users,
        "floating_in_use_devices": 0,
        "can_borrow": spec.can_borrow,
        "max_borrow_time": spec.max_borrow_time,
        "is_borrowed": False,
        "borrowed_until": None,
        "order_store_id": "",
        "metadata": spec.metadata,
        "customer": spec.customer,
        "custom_fields": [],
        "product_details": {
            "product_id": None,
            "product_name": spec.product_name or spec.product,
            "short_code": spec.product,
            "authorization_method": "license-key",
            "metadata": {},
        },
        "product_features": [],
    }
    if spec.is_consumption:
        out.update(_terms(spec))
        out["max_consumptions"] = spec.max_consumptions
    return out


def license_object(cache: V4Cache, state: LicenseState, seat: SeatRow | None = None) -> dict[str, Any]:
    license = state.license
    spec = license.spec
    static = cache.static(license)
    base = static.license
    if base is None:
        base = static.license = _static_license(spec)
    out = dict(base)
    is_borrowed, borrowed_until = _borrow(seat)
    out["is_expired"] = spec.validity_period is not None and spec.validity_period <= state.now
    out["times_activated"] = out["floating_in_use_devices"] = state.seats_in_use
    out["is_borrowed"], out["borrowed_until"] = is_borrowed, borrowed_until
    out["product_features"] = [feature_object(cache, license, feature) for feature in state.features]
    if spec.is_consumption:
        out["total_consumptions"] = _units(state.total_milli)
        out.update(_period(state.period))
    return out


def _license_json(cache: V4Cache, state: LicenseState, seat: SeatRow) -> tuple[dict[str, Any], str]:
    """The license object and its JSON text; for unborrowed seats built once per shared state."""
    if _borrow(seat)[0]:
        license = license_object(cache, state, seat)
        return license, orjson.dumps(license).decode()
    shared = cache.shared(state)
    if shared.license_json is None:
        license = license_object(cache, state, None)
        shared.license_json = (license, orjson.dumps(license).decode())
    return shared.license_json


def _per_state(cache: V4Cache, state: LicenseState, key: Hashable, shape: Callable[[], Any]) -> bytes:
    """The JSON of an answer that is the same for every request sharing `state` (one group-commit batch),
    serialised once: the register answer carries the whole license as a 2 KB JSON string."""
    bodies = cache.shared(state).bodies
    body = bodies.get(key)
    if body is None:
        body = bodies[key] = orjson.dumps(shape())
    return body


def register_answer(cache: V4Cache, result: SeatResult) -> bytes:
    """The register answer as JSON (shared by the batch unless the seat is borrowed)."""
    if _borrow(result.seat)[0]:
        return orjson.dumps(register_response(cache, result))
    return _per_state(cache, result.state, "register", lambda: register_response(cache, result))


def register_response(cache: V4Cache, result: SeatResult) -> dict[str, Any]:
    state, spec = result.state, result.state.license.spec
    license, text = _license_json(cache, state, result.seat)
    out: dict[str, Any] = {
        "floating_slots_in_use": state.seats_in_use,
        "license_json": text,
        "license_id": spec.id,
        "floating_in_use_devices": state.seats_in_use,
        "floating_users": spec.floating_users,
        "floating_timeout": spec.floating_timeout,
        "is_borrowed": license["is_borrowed"],
        "borrowed_until": license["borrowed_until"],
    }
    if spec.is_consumption:
        out["total_consumptions"] = license["total_consumptions"]
    return out


def borrow_response(result: SeatResult) -> dict[str, Any]:
    state, spec = result.state, result.state.license.spec
    _, borrowed_until = _borrow(result.seat)
    return {
        "license_id": spec.id,
        "is_borrowed": borrowed_until is not None,
        "borrowed_until": borrowed_until,
        "max_borrow_time": spec.max_borrow_time,
        "floating_slots_in_use": state.seats_in_use,
        "floating_in_use_devices": state.seats_in_use,
        "floating_users": spec.floating_users,
        "floating_timeout": spec.floating_timeout,
    }


def feature_register_response(cache: V4Cache, result: SeatResult) -> dict[str, Any]:
    code = result.seat.feature
    return feature_object(cache, result.state.license, result.state.feature(code), result.seat)


def consumption_response(cache: V4Cache, result: ConsumeResult) -> dict[str, Any]:
    spec = result.state.license.spec
    if result.feature is None:
        return {
            "id": spec.id,
            "license_id": spec.id,
            "max_consumptions": spec.max_consumptions,
            "total_consumptions": _units(result.total_milli),
            **_terms(spec),
            **_period(result.state.period),
        }
    return feature_object(cache, result.state.license, result.state.feature(result.feature.code))


def consumption_answer(cache: V4Cache, result: ConsumeResult) -> bytes:
    """The consumption answer as JSON: every answer of a batch shows the same state, so it is shared."""
    key = ("consumption", result.feature.code if result.feature else None)
    return _per_state(cache, result.state, key, lambda: consumption_response(cache, result))
