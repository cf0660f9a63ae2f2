"""Stored formats carry their version, and every version ever written is still read.

A usage event's outcome is replayed for as long as its id is kept (months): a row written by floatsrv 0.1
(format 1: a dump of that version's Outcome dataclass) must replay exactly, whatever the Outcome class looks
like now. License definitions name their format as well."""

from __future__ import annotations

import sqlite3

import pytest

from floatsrv.domain.catalog import DEFINITION_FORMAT, decode_definition, encode_definition
from floatsrv.domain.outcomes import OUTCOME_FORMAT, decode_outcome
from tests.conftest import Api
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
