"""The license and seat views the native API (/v1) and the admin commands (`--json`) show: plain data, one
definition for both. Quantities are decimal strings (exact, up to three decimals), instants ISO 8601 UTC."""

from __future__ import annotations

from typing import Any

from floatsrv.domain.queries import SeatView
from floatsrv.domain.state import FeatureState, LicenseState, Period
from floatsrv.models import ConsumptionLimits
from floatsrv.quantity import milli_to_str
from floatsrv.times import iso, iso_us


def _consumption(limits: ConsumptionLimits, maximum: int, total_milli: int, period: Period | None) -> dict[str, Any]:
    capacity = limits.capacity(maximum)
    return {
        "total": milli_to_str(total_milli),
        "included": str(maximum),
        "capacity": None if capacity is None else str(capacity),
        "unlimited": capacity is None,
        "allow_overages": limits.allow_overages,
        "max_overages": limits.max_overages,
        "allow_negative": limits.allow_negative_consumptions,
        "period": None if period is None else {"start": iso(period.start), "end": iso(period.end)},
    }


def _feature(feature: FeatureState, timeout: int) -> dict[str, Any]:
    spec = feature.spec
    return {
        "code": spec.code,
        "name": spec.display_name,
        "feature_type": spec.feature_type,
        "floating_users": spec.floating_users,
        "floating_timeout": timeout if spec.is_floating else None,
        "seats_in_use": feature.seats_in_use if spec.is_floating else None,
        "expiry_date": iso(spec.expiry_date) if spec.expiry_date else None,
        "consumption": _consumption(spec, spec.max_consumption, feature.total_milli, feature.period)
        if spec.is_consumption
        else None,
    }


def license_view(state: LicenseState) -> dict[str, Any]:
    spec = state.license.spec
    return {
        "object": "license",
        "id": spec.id,
        "product": spec.product,
        "product_name": spec.product_name or spec.product,
        "license_type": spec.license_type,
        "enabled": spec.enabled,
        "active": spec.active,
        "validity_period": iso(spec.validity_period) if spec.validity_period else None,
        "floating_users": spec.floating_users,
        "floating_timeout": spec.floating_timeout,
        "seats_in_use": state.seats_in_use,
        "can_borrow": spec.can_borrow,
        "max_borrow_time": spec.max_borrow_time,
        "consumption": _consumption(spec, spec.max_consumptions, state.total_milli, state.period)
        if spec.is_consumption
        else None,
        "features": [_feature(f, spec.feature_timeout(f.spec)) for f in state.features],
        # Where the terms come from: signed / demo (a vendor-signed or demo-signed file) or unsigned (YAML).
        "entitlements": state.license.source.entitlements,
        "license_file": state.license.source.file_id,
    }


def seat_view(view: SeatView) -> dict[str, Any]:
    row = view.row
    return {
        "object": "seat",
        "id": row.id,
        "license_id": row.license_id,
        "product": view.license.product if view.license else None,
        "feature": row.feature or None,
        "user": row.user,
        "slot": row.slot,
        "principal": row.principal,
        "state": "held" if view.held else "ended",
        "registered_at": iso_us(row.registered_at),
        "heartbeat_at": iso_us(row.heartbeat_at),
        "expires_at": iso_us(row.expires_at),
        "borrowed_until": iso_us(row.borrowed_until),
        "ended_at": iso_us(view.ended_at),
        "end_reason": view.end_reason,
        "client": {
            "os_hostname": row.os_hostname,
            "ip_local": row.ip_local,
            "user_info": row.user_info,
            "sdk_ver": row.sdk_ver,
            "app_ver": row.app_ver,
        },
    }
