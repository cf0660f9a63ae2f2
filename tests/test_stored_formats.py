"""Stored formats carry their version, and every version ever written is still read.

A usage event's outcome is replayed for as long as its id is kept (months): a row written by floatsrv 0.1
(format 1: a dump of that version's Outcome dataclass) must replay exactly, whatever the Outcome class looks
like now. License definitions name their format as well: a row as format 1 stores it must still decode to
the same license (renaming a field of LicenseSpec breaks this test, not the rows in databases). A PostgreSQL
site's shared policy (`floatsrv_meta.site_policy`) carries its format; the unversioned form floatsrv 0.7.0
wrote (format 0) is still read, and a newer format is refused by name.

The literals below are frozen: never edit them to follow a class. When a format changes, add a reader for
the old one and a literal for the new one."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime
from decimal import Decimal
from ipaddress import ip_network
from pathlib import Path
from typing import Any

import pytest

from floatsrv.appkeys import DOMAIN
from floatsrv.db import site as db_site
from floatsrv.domain import site
from floatsrv.domain.catalog import DEFINITION_FORMAT, decode_definition, encode_definition
from floatsrv.domain.outcomes import OUTCOME_FORMAT, decode_outcome
from floatsrv.policyconfig import PolicyConfig
from tests.conftest import Api, make_config, start_api
from tests.licensing import demo_file_licenses

# Exactly what floatsrv 0.1 stored for an accepted event of 2 units on `render` (json.dumps(asdict(outcome))).
V1_ROW = (
    '{"license_id": 1001, "feature": "render", "model": "metered", "event_id": "old-1", "status": "accepted", '
    '"requested_milli": 2000, "accepted_milli": 2000, "occurred_at": 1768478400000000, "received_at": '
    '1768478400000000, "period_start": null, "period_end": null, "current_milli": 2000, "remaining_milli": 98000, '
    '"included_milli": 100000, "overage_milli": 0, "credits_spent_milli": 0, "plan_credits_left_milli": null, '
    '"purchased_credits_left_milli": null, "replay": false}'
)


async def test_an_outcome_stored_by_the_previous_version_replays(api: Api) -> None:
    event = {"event_id": "old-1", "product": "demo", "feature": "render", "quantity": 2}
    status, body = await api.post("/v1/usage/events", event)
    assert status == 200 and body["data"]["replay"] is False, body
    # Make the stored row what floatsrv 0.1 wrote for it (an older database, migrated forward).
    with sqlite3.connect(api.config.db_path) as conn:
        changed = conn.execute(
            "UPDATE usage_event_ids SET outcome = ?, outcome_format = 1 WHERE event_id = 'old-1'", (V1_ROW,)
        ).rowcount
    assert changed == 1
    status, body = await api.post("/v1/usage/events", event)
    assert status == 200, body
    replayed = body["data"]
    assert replayed["replay"] is True and replayed["accepted_quantity"] == "2", replayed
    assert replayed["consumption"]["remaining"] == "98" and replayed["occurred_at"] == "2026-01-15T12:00:00.000Z"


def test_every_known_outcome_version_decodes_and_a_newer_one_is_refused() -> None:
    old = decode_outcome(V1_ROW, 1, replay=True)
    assert (old.feature, old.accepted_milli, old.remaining_milli, old.replay) == ("render", 2000, 98000, True)
    assert OUTCOME_FORMAT == 2
    with pytest.raises(ValueError, match="newer than this floatsrv"):
        decode_outcome(V1_ROW, OUTCOME_FORMAT + 1, replay=False)


def test_license_definitions_round_trip_in_their_format() -> None:
    [spec] = demo_file_licenses()
    assert decode_definition(encode_definition(spec), DEFINITION_FORMAT) == spec
    with pytest.raises(ValueError, match="newer than this floatsrv"):
        decode_definition(encode_definition(spec), DEFINITION_FORMAT + 1)


# A license definition exactly as format 1 stores it (LicenseSpec's JSON without defaults), with every field
# of LicenseSpec, FeatureSpec, AddonGrant and CreditGrant that existed when format 1 was frozen.
DEFINITION_V1 = (
    '{"allow_unlimited_consumptions":true,"allow_overages":true,"max_overages":200,"allow_negative_consumptions":'
    'true,"reset_consumption":true,"consumption_period":"daily","id":4242,"product":"studio","product_name":'
    '"Studio Pro","license_key":"STUDIO-4242","license_type":"consumption","enabled":false,"active":false,'
    '"start_date":"2026-01-01T00:00:00Z","validity_period":"2027-01-01T00:00:00Z","floating_users":5,'
    '"floating_timeout":45,"can_borrow":true,"max_borrow_time":72,"prevent_vm":true,"max_consumptions":1000,'
    '"currency":"EUR","plan_credits":"250.5","credits_period":"yearly","billing_period":"weekly","metadata":'
    '{"tier":"gold","seats":[1,2]},"customer":{"email":"ops@example.com"},"features":[{"allow_overages":true,'
    '"max_overages":10,"allow_negative_consumptions":true,"reset_consumption":true,"consumption_period":'
    '"monthly","code":"render","name":"Render","feature_type":"consumption","consumption_model":"metered",'
    '"soft_limit":true,"overage_unit_price":"0.25","max_consumption":100,"expiry_date":"2026-12-31T00:00:00Z",'
    '"metadata":{"gpu":true}},{"code":"tokens","feature_type":"consumption","consumption_model":"credits",'
    '"credits_per_unit":"1.5","max_consumption":50},{"code":"export","floating_users":2,"floating_timeout":10},'
    '{"code":"watermark","enabled":false}],"addons":[{"id":"render-pack","name":"Render pack","description":'
    '"100 more renders","base_price":"49.99","feature":"render","consumption_model":"metered","included_units":'
    '100,"overage_rate":"0.2"},{"id":"token-pack","name":"Tokens","feature":"tokens","consumption_model":'
    '"credits","credit_cost":"2"}],"credit_grants":[{"id":"grant-0001","amount":"100","note":"welcome credits"}]}'
)


def _day(year: int, month: int, day: int) -> datetime:
    return datetime(year, month, day, tzinfo=UTC)


def test_a_license_definition_stored_in_format_1_still_decodes() -> None:
    spec = decode_definition(DEFINITION_V1, 1)
    license_terms = (
        spec.id, spec.product, spec.product_name, spec.license_key, spec.license_type, spec.enabled, spec.active,
        spec.start_date, spec.validity_period, spec.floating_users, spec.floating_timeout, spec.can_borrow,
        spec.max_borrow_time, spec.prevent_vm, spec.max_consumptions, spec.currency, spec.plan_credits,
        spec.credits_period, spec.billing_period, spec.metadata, spec.customer,
    )  # fmt: skip
    assert license_terms == (
        4242, "studio", "Studio Pro", "STUDIO-4242", "consumption", False, False, _day(2026, 1, 1),
        _day(2027, 1, 1), 5, 45, True, 72, True, 1000, "EUR", Decimal("250.5"), "yearly", "weekly",
        {"tier": "gold", "seats": [1, 2]}, {"email": "ops@example.com"},
    )  # fmt: skip
    limits = ("allow_unlimited_consumptions", "allow_overages", "max_overages", "allow_negative_consumptions",
              "reset_consumption", "consumption_period")  # fmt: skip
    assert [getattr(spec, name) for name in limits] == [True, True, 200, True, True, "daily"]
    render, tokens, export, watermark = spec.features
    assert [getattr(render, name) for name in limits] == [False, True, 10, True, True, "monthly"]
    render_terms = (render.code, render.name, render.feature_type, render.model, render.soft_limit)
    assert render_terms == ("render", "Render", "consumption", "metered", True)
    render_units = (render.overage_unit_price, render.max_consumption, render.expiry_date, render.metadata)
    assert render_units == (Decimal("0.25"), 100, _day(2026, 12, 31), {"gpu": True})
    assert (tokens.model, tokens.credits_per_unit, tokens.max_consumption) == ("credits", Decimal("1.5"), 50)
    assert (export.model, export.floating_users, export.floating_timeout) == ("seats", 2, 10)
    assert (watermark.model, watermark.enabled) == ("boolean", False)
    pack, credits = spec.addons
    pack_terms = (pack.id, pack.name, pack.description, pack.base_price, pack.feature, pack.consumption_model)
    assert pack_terms == ("render-pack", "Render pack", "100 more renders", Decimal("49.99"), "render", "metered")
    assert (pack.included_units, pack.overage_rate, credits.credit_cost) == (100, Decimal("0.2"), Decimal(2))
    [grant] = spec.credit_grants
    assert (grant.id, grant.amount, grant.note) == ("grant-0001", Decimal(100), "welcome credits")
    # Today's encoder still writes format 1 exactly so: the literal is a real row of the current format.
    assert DEFINITION_FORMAT == 1 and encode_definition(spec) == DEFINITION_V1


# The site's policy as floatsrv 0.7.0 stored it (format 0: PolicyConfig.model_dump_json(), no version) ...
POLICY_V0 = (
    '{"groups":{"design":{"users":["alice","b*"],"hosts":["ws-*"],"addresses":["10.1.0.0/16"],"logins":'
    '["svc-render"]}},"rules":[{"license":1001,"feature":null,"reserve":[{"count":1,"for_":"design"}],"max":'
    '[{"count":2,"for_":"user:mallory"}],"include":["design","address:10.0.0.0/8"],"exclude":["host:kiosk-*"],'
    '"timeout_minutes":15,"max_borrow_hours":48},{"license":1001,"feature":"export","reserve":[],"max":[],'
    '"include":null,"exclude":["login:guest"],"timeout_minutes":null,"max_borrow_hours":null}]}'
)
# ... and the same policy in format 1 (the config's names, under a version).
POLICY_V1 = (
    '{"format":1,"policy":{"groups":{"design":{"addresses":["10.1.0.0/16"],"hosts":["ws-*"],"logins":'
    '["svc-render"],"users":["alice","b*"]}},"rules":[{"exclude":["host:kiosk-*"],"feature":null,"include":'
    '["design","address:10.0.0.0/8"],"license":1001,"max":[{"count":2,"for":"user:mallory"}],'
    '"max_borrow_hours":48,"reserve":[{"count":1,"for":"design"}],"timeout_minutes":15},{"exclude":'
    '["login:guest"],"feature":"export","include":null,"license":1001,"max":[],"max_borrow_hours":null,'
    '"reserve":[],"timeout_minutes":null}]}}'
)
POLICY: dict[str, Any] = {
    "groups": {
        "design": {"users": ["alice", "b*"], "hosts": ["ws-*"], "addresses": ["10.1.0.0/16"], "logins": ["svc-render"]}
    },
    "rules": [
        {"license": 1001, "reserve": [{"count": 1, "for": "design"}], "max": [{"count": 2, "for": "user:mallory"}],
         "include": ["design", "address:10.0.0.0/8"], "exclude": ["host:kiosk-*"], "timeout_minutes": 15,
         "max_borrow_hours": 48},
        {"license": 1001, "feature": "export", "exclude": ["login:guest"]},
    ],
}  # fmt: skip


def _check_policy(policy: PolicyConfig) -> None:
    design = policy.groups["design"]
    assert (design.users, design.hosts, design.logins) == (["alice", "b*"], ["ws-*"], ["svc-render"])
    assert design.addresses == [ip_network("10.1.0.0/16")]
    first, second = policy.rules
    assert (first.license, first.feature, first.timeout_minutes, first.max_borrow_hours) == (1001, None, 15, 48)
    assert [(q.count, q.for_) for q in first.reserve] == [(1, "design")]
    assert [(q.count, q.for_) for q in first.max] == [(2, "user:mallory")]
    assert (first.include, first.exclude) == (["design", "address:10.0.0.0/8"], ["host:kiosk-*"])
    assert (second.feature, second.include, second.exclude, second.reserve) == ("export", None, ["login:guest"], [])


def test_every_site_policy_format_decodes_and_a_newer_one_is_refused() -> None:
    _check_policy(site.decode_policy(POLICY_V0))
    _check_policy(site.decode_policy(POLICY_V1))
    assert site.POLICY_FORMAT == 1 and site.encode_policy(PolicyConfig.model_validate(POLICY)) == POLICY_V1
    with pytest.raises(ValueError, match=r"format 2, which this floatsrv \(formats up to 1\) cannot read"):
        site.decode_policy('{"format": 2, "policy": {}}')


async def test_a_postgresql_site_stores_its_policy_versioned_and_reads_the_old_form(
    tmp_path: Path, pg_dsn: str
) -> None:
    def on_postgresql(data: dict[str, Any]) -> None:
        data["storage"]["backend"] = "postgresql"
        data["storage"]["postgresql"] = {"dsn": pg_dsn}
        data["policy"] = POLICY

    api, client = await start_api(make_config(tmp_path, on_postgresql))
    try:
        store = api.app[DOMAIN].store
        stored = await store.read(db_site.policy)  # what the first node of the site published
        assert stored is not None and json.loads(stored) == json.loads(POLICY_V1)
        # A site started by floatsrv 0.7.0 holds the unversioned form: still served after the upgrade.
        generation = await store.write(lambda conn: db_site.publish(conn, db_site.settings(conn) or {}, POLICY_V0))
        seen, policy, _ = await site.follow(store, generation - 1)
        assert seen == generation and policy is not None
        _check_policy(policy)
        # A node of a newer floatsrv published a format this one cannot read: refused by name, not misread.
        newer = '{"format": 2, "policy": {"groups": {}, "rules": []}}'
        generation = await store.write(lambda conn: db_site.publish(conn, db_site.settings(conn) or {}, newer))
        with pytest.raises(ValueError, match="format 2.*upgrade this node"):
            await site.follow(store, generation - 1)
    finally:
        await client.close()
