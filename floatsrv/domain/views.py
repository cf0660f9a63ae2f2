"""The license and seat views the native API (/v1) and the admin commands (`--json`) show: plain data, one
definition for both. Quantities are decimal strings (exact, up to three decimals), instants ISO 8601 UTC."""

from __future__ import annotations

from typing import Any

from floatsrv.domain.metering import Limits, license_limits, limits
from floatsrv.domain.queries import SeatView
from floatsrv.domain.state import FeatureState, LicenseState, Period
from floatsrv.quantity import MILLI, milli_to_str
from floatsrv.times import iso, iso_us


def _consumption(limits: Limits, total_milli: int, period: Period | None, allow_negative: bool) -> dict[str, Any]:
    return {
        "total": milli_to_str(total_milli),
        "included": milli_to_str(limits.included_milli),
        "capacity": None if limits.capacity_milli is None else milli_to_str(limits.capacity_milli),
        "unlimited": limits.unlimited,
        "soft_limit": limits.soft,
        "allow_overages": limits.overage_milli != 0,
        "max_overages": None if limits.overage_milli is None else limits.overage_milli // MILLI,  # None: no bound
        "allow_negative": allow_negative,
        "period": None if period is None else {"start": iso(period.start), "end": iso(period.end)},
    }


def _feature(feature: FeatureState, timeout: int) -> dict[str, Any]:
    """A feature with its effective terms (add-ons, soft limits and credits applied: `metering.limits`, the
    function /api/v4 and the metrics use too)."""
    spec = feature.spec
    effective = limits(feature.allowance, feature.balances)
    return {
        "code": spec.code,
        "name": spec.display_name,
        "feature_type": spec.feature_type,
        "consumption_model": spec.model,
        "enabled": feature.allowance.enabled,
        "floating_users": effective.included_milli // MILLI if spec.is_floating else None,
        "floating_timeout": timeout if spec.is_floating else None,
        "seats_in_use": feature.seats_in_use if spec.is_floating else None,
        "expiry_date": iso(spec.expiry_date) if spec.expiry_date else None,
        "consumption": _consumption(effective, feature.total_milli, feature.period, spec.allow_negative_consumptions)
        if spec.counts_usage
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
        # Past its validity_period: still listed (and "enabled"), but clients get license_expired.
        "expired": spec.validity_period is not None and spec.validity_period <= state.now,
        "floating_users": spec.floating_users,
        "floating_timeout": spec.floating_timeout,
        "seats_in_use": state.seats_in_use,
        "can_borrow": spec.can_borrow,
        "max_borrow_time": spec.max_borrow_time,
        "consumption": _consumption(
            license_limits(spec, spec.max_consumptions),
            state.total_milli,
            state.period,
            spec.allow_negative_consumptions,
        )
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
