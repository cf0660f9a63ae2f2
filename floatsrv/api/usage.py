"""Native metering endpoints: the usage pre-check, usage events (single or batches of up to 100), credits.

Quantities are exact decimals (at most three places) sent as JSON numbers or strings, and come back as
strings. A batch answers per event: one bad event does not sink the others.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from aiohttp import web
from pydantic import Field, StrictBool

from floatsrv.api.account import actor
from floatsrv.api.body import read_json_object
from floatsrv.api.errors import render
from floatsrv.api.native import ok
from floatsrv.api.validation import StrictBody, Text100, Text256, WireInstant, WireInt, parse
from floatsrv.appkeys import DOMAIN, PRINCIPAL
from floatsrv.domain import credits, usage
from floatsrv.domain.credits import CreditBalance, LedgerRow
from floatsrv.domain.metering import limits
from floatsrv.domain.seats import Target
from floatsrv.domain.usage import CheckResult, Outcome, UsageRequest
from floatsrv.errors import FloatsrvError, InvalidQuantity, InvalidRequest
from floatsrv.money import money_str
from floatsrv.quantity import QuantityError, decimal_str, milli_to_str, to_milli
from floatsrv.times import iso, iso_us

LicenseId = Annotated[WireInt, Field(gt=0, lt=2**53)]
EventId = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[\x21-\x7e]+$")]

REASONS = {
    "included_limit_reached": "the included units of this period are used up",
    "overage_limit_reached": "the overage allowed this period is used up",
    "insufficient_credits": "not enough plan or purchased credits",
    "seat_limit_reached": "every seat of this feature is held",
    "not_entitled": "the feature is not enabled on this license",
    "count_limit_reached": "the running total would pass the largest count this server keeps (2^53-1 units)",
}


class CheckBody(StrictBody):
    license_id: LicenseId | None = None
    product: Text100 | None = None
    feature: Text100
    quantity: Any = "1"


class EventBody(StrictBody):
    event_id: EventId
    license_id: LicenseId | None = None
    product: Text100 | None = None
    feature: Text100
    quantity: Any
    occurred_at: WireInstant = None
    accept_partial: StrictBool = False
    user: Text256 | None = None


class BatchBody(StrictBody):
    events: Annotated[list[Any], Field(min_length=1, max_length=100)]


class Grant(StrictBody):
    amount: Any = None
    grant_id: Annotated[str, Field(min_length=4, max_length=64)] | None = None
    note: Annotated[str, Field(max_length=500)] | None = None


def quantity(value: Any, *, positive: bool = False) -> int:
    try:
        milli = to_milli(value)
    except QuantityError as exc:
        raise InvalidQuantity(f"quantity {exc}", param="quantity") from None
    if positive and milli <= 0:
        raise InvalidQuantity("quantity must be at least 0.001", param="quantity")
    if milli == 0:
        raise InvalidQuantity("quantity must not be zero (the smallest unit is 0.001)", param="quantity")
    return milli


def _qty(milli: int | None) -> str | None:
    return None if milli is None else milli_to_str(milli)


def outcome_view(outcome: Outcome) -> dict[str, Any]:
    return {
        "object": "usage_event",
        "event_id": outcome.event_id,
        "license_id": outcome.license_id,
        "feature": outcome.feature,
        "consumption_model": outcome.model,
        "status": outcome.status,
        "replay": outcome.replay,
        "requested_quantity": milli_to_str(outcome.requested_milli),
        "accepted_quantity": milli_to_str(outcome.accepted_milli),
        "rejected_quantity": milli_to_str(outcome.requested_milli - outcome.accepted_milli),
        "occurred_at": iso_us(outcome.occurred_at),
        "received_at": iso_us(outcome.received_at),
        "period": None
        if outcome.period_start is None
        else {"start": iso_us(outcome.period_start), "end": iso_us(outcome.period_end)},
        "consumption": {
            "current": milli_to_str(outcome.current_milli),
            "remaining": _qty(outcome.remaining_milli),
            "included": milli_to_str(outcome.included_milli),
            "overage": milli_to_str(outcome.overage_milli),
            "credits_spent": milli_to_str(outcome.credits_spent_milli),
            "plan_credits_remaining": _qty(outcome.plan_credits_left_milli),
            "purchased_credits_remaining": _qty(outcome.purchased_credits_left_milli),
        },
    }


def check_view(result: CheckResult) -> dict[str, Any]:
    allowance, balances, decision = result.state.allowance, result.state.balances, result.decision
    model = allowance.model
    credits_model = model == "credits"
    policy = None
    if model == "metered":
        policy = (
            "unlimited"
            if allowance.unlimited
            else "soft"
            if allowance.soft
            else "overage"
            if allowance.overage_enabled
            else "hard"
        )
    plan_left = max(0, allowance.plan_credits_milli - balances.plan_used_milli)
    period = result.state.credits_period if credits_model else result.state.period
    return {
        "object": "usage_check",
        "license_id": result.license.id,
        "feature": result.state.spec.code,
        "quantity": milli_to_str(result.quantity_milli),
        "allowed": decision.allowed,
        "reason": decision.reason,
        "message": REASONS.get(decision.reason or "", decision.reason),
        "consumption_model": model,
        "current": milli_to_str(balances.current_milli),
        "remaining": _qty(decision.remaining_milli),
        "included": milli_to_str(limits(allowance, balances).included_milli) if model in ("metered", "seats") else None,
        "unlimited": decision.remaining_milli is None,
        "limit_policy": policy,
        "overage_enabled": allowance.overage_enabled,
        "overage_unit_price": None
        if allowance.overage_unit_price is None
        else decimal_str(allowance.overage_unit_price),
        "estimated_amount": None
        if decision.estimated_amount is None
        else money_str(decision.estimated_amount, allowance.currency),
        "currency": allowance.currency,
        "credits_per_unit": _qty(allowance.credits_per_unit_milli) if credits_model else None,
        "estimated_credits": milli_to_str(decision.credits_milli) if credits_model else None,
        "plan_credits": milli_to_str(plan_left) if credits_model else None,
        "purchased_credits": milli_to_str(balances.purchased_milli) if credits_model else None,
        "grantable": milli_to_str(decision.grantable_milli),
        "period": None if period is None else {"start": iso(period.start), "end": iso(period.end)},
    }


async def check_usage(request: web.Request) -> web.Response:
    body = parse(CheckBody, await read_json_object(request))
    result = await usage.check(
        request.app[DOMAIN], Target(body.product, body.license_id), body.feature, quantity(body.quantity, positive=True)
    )
    return ok(check_view(result))


async def _record(request: web.Request, data: Any) -> Outcome:
    if not isinstance(data, dict):
        raise InvalidRequest("each event must be a JSON object")
    body = parse(EventBody, data)
    principal = request.get(PRINCIPAL)
    return await usage.record(
        request.app[DOMAIN],
        UsageRequest(
            Target(body.product, body.license_id),
            body.feature,
            quantity(body.quantity),
            event_id=body.event_id,
            occurred_at=body.occurred_at,
            accept_partial=body.accept_partial,
            user=body.user,
            principal=principal.username if principal else None,
            source="api_v1",
            address=request.remote,
        ),
    )


async def record_events(request: web.Request) -> web.Response:
    data = await read_json_object(request)
    if "events" not in data:
        return ok(outcome_view(await _record(request, data)))
    batch = parse(BatchBody, data)

    async def one(event: Any) -> dict[str, Any]:
        # Every item: `status` accepted | partial | rejected, and the HTTP status the event alone would get.
        try:
            return {**outcome_view(await _record(request, event)), "http_status": 200}
        except FloatsrvError as exc:
            http_status, error = render("native", exc)
            event_id = event.get("event_id") if isinstance(event, dict) else None
            return {"object": "error", "event_id": event_id, "status": "rejected", "http_status": http_status, **error}

    # Submitted together, the events share group commits; each is still its own unit of work.
    results = await asyncio.gather(*(one(event) for event in batch.events))
    return ok({"object": "list", "data": list(results)})


def balance_view(balance: CreditBalance) -> dict[str, Any]:
    return {
        "object": "credit_balance",
        "license_id": balance.license_id,
        "period": {"start": iso(balance.period.start), "end": iso(balance.period.end)},
        "plan_credits": milli_to_str(balance.plan_milli),
        "plan_credits_used": milli_to_str(balance.plan_used_milli),
        "plan_credits_remaining": milli_to_str(balance.plan_left_milli),
        "purchased_credits": milli_to_str(balance.purchased_milli),
        "available": milli_to_str(balance.plan_left_milli + balance.purchased_milli),
    }


def ledger_view(row: LedgerRow) -> dict[str, Any]:
    return {
        "object": "credit_ledger_entry",
        "id": row.id,
        "at": iso_us(row.at),
        "kind": row.kind,
        "pool": row.pool,
        "amount": milli_to_str(row.amount_milli),
        "period_start": iso_us(row.period_start),
        "feature": row.feature,
        "usage_event_id": row.usage_event_id,
        "actor": row.actor,
        "note": row.note,
    }


def license_id_of(request: web.Request) -> int:
    try:
        return int(request.match_info["license_id"])
    except ValueError:
        return 0


async def get_credits(request: web.Request) -> web.Response:
    return ok(balance_view(await credits.balance(request.app[DOMAIN], license_id_of(request))))


async def grant_credits(request: web.Request) -> web.Response:
    body = parse(Grant, await read_json_object(request))
    amount = None
    if body.grant_id is not None and body.amount is not None:
        raise InvalidRequest("give amount or grant_id, not both", param="amount")
    if body.grant_id is None:
        try:
            amount = to_milli(body.amount)
        except QuantityError as exc:
            raise InvalidQuantity(f"amount {exc}", param="amount") from None
    domain, license_id = request.app[DOMAIN], license_id_of(request)
    balance = await credits.grant(domain, actor(request), license_id, amount, body.note, body.grant_id)
    return ok(balance_view(balance))


class LedgerQuery(StrictBody):
    before: Annotated[WireInt, Field(gt=0)] | None = None
    limit: Annotated[WireInt, Field(ge=1, le=1000)] = 100


async def credit_ledger(request: web.Request) -> web.Response:
    query = parse(LedgerQuery, dict(request.query))
    rows = await credits.ledger(request.app[DOMAIN], license_id_of(request), query.before, query.limit)
    return ok({"object": "list", "data": [ledger_view(row) for row in rows]})
