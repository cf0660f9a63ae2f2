"""Native add-on endpoints: the catalog (admin) and activations on licenses."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any

from aiohttp import web
from pydantic import Field

from floatsrv.api.account import actor
from floatsrv.api.body import read_json_object
from floatsrv.api.native import ok
from floatsrv.api.usage import license_id_of
from floatsrv.api.validation import StrictBody, Text100, WireInt, parse
from floatsrv.appkeys import DOMAIN
from floatsrv.domain import addons
from floatsrv.domain.addons import ActivationRow, AddonInput, AddonRow
from floatsrv.models import ConsumptionModel, Credits, Price
from floatsrv.times import iso_us


class AddonBody(StrictBody):
    name: Annotated[str, Field(min_length=1, max_length=100)]
    description: Annotated[str, Field(max_length=255)] = ""
    base_price: Price = Decimal(0)
    feature: Text100
    consumption_model: ConsumptionModel
    included_units: Annotated[WireInt, Field(ge=0, le=10**9)] = 0
    overage_rate: Price | None = None
    credit_cost: Credits | None = None


class Activation(StrictBody):
    addon_id: Text100


def addon_view(row: AddonRow) -> dict[str, Any]:
    return {
        "object": "addon",
        "id": row.id,
        "name": row.name,
        "description": row.description,
        "base_price": row.base_price,
        "feature": row.feature,
        "consumption_model": row.consumption_model,
        "included_units": row.included_units,
        "overage_rate": row.overage_rate,
        "credit_cost": row.credit_cost,
        "created_at": iso_us(row.created_at),
        "updated_at": iso_us(row.updated_at),
        "granted": bool(row.granted),  # granted by a vendor's license file (it changes only with the files)
    }


def activation_view(row: ActivationRow, addon: AddonRow, currency: str | None) -> dict[str, Any]:
    return {
        "object": "addon_activation",
        "license_id": row.license_id,
        "addon_id": row.addon_id,
        "feature": addon.feature,
        "status": "active" if row.deactivated_at is None else "inactive",
        "activated_at": iso_us(row.activated_at),
        "deactivated_at": iso_us(row.deactivated_at),
        "period": {"start": iso_us(row.period_start), "end": iso_us(row.period_end)},
        "prorated_charge": row.prorated_charge,
        "currency": currency,
    }


def _input(body: AddonBody) -> AddonInput:
    return AddonInput(**body.model_dump())  # the body's fields are the input's, validated


async def create_addon(request: web.Request) -> web.Response:
    body = parse(AddonBody, await read_json_object(request))
    return ok(addon_view(await addons.create(request.app[DOMAIN], actor(request), _input(body))))


async def list_addons(request: web.Request) -> web.Response:
    rows = await addons.list_all(request.app[DOMAIN])
    return ok({"object": "list", "data": [addon_view(row) for row in rows]})


async def get_addon(request: web.Request) -> web.Response:
    return ok(addon_view(await addons.get(request.app[DOMAIN], request.match_info["addon_id"])))


async def replace_addon(request: web.Request) -> web.Response:
    body = parse(AddonBody, await read_json_object(request))
    row = await addons.replace(request.app[DOMAIN], actor(request), request.match_info["addon_id"], _input(body))
    return ok(addon_view(row))


async def delete_addon(request: web.Request) -> web.Response:
    addon_id = request.match_info["addon_id"]
    await addons.delete(request.app[DOMAIN], actor(request), addon_id)
    return ok({"object": "addon", "id": addon_id, "deleted": True})


def _currency(request: web.Request, license_id: int) -> str | None:
    license = request.app[DOMAIN].catalog.get(license_id)
    return license.spec.currency if license else None


async def activate(request: web.Request) -> web.Response:
    body = parse(Activation, await read_json_object(request))
    license_id = license_id_of(request)
    row, addon = await addons.activate(request.app[DOMAIN], actor(request), license_id, body.addon_id)
    return ok(activation_view(row, addon, _currency(request, license_id)))


async def deactivate(request: web.Request) -> web.Response:
    license_id = license_id_of(request)
    domain = request.app[DOMAIN]
    addon = await addons.get(domain, request.match_info["addon_id"])
    row = await addons.deactivate(domain, actor(request), license_id, addon.id)
    return ok(activation_view(row, addon, _currency(request, license_id)))


async def list_active(request: web.Request) -> web.Response:
    license_id = license_id_of(request)
    rows = await addons.active(request.app[DOMAIN], license_id)
    currency = _currency(request, license_id)
    return ok({"object": "list", "data": [activation_view(row, addon, currency) for row, addon in rows]})
