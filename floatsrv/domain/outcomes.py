"""A usage event's outcome, and the form it is stored in (`usage_event_ids.outcome`, `outcome_format`).

An event id is kept for months and a replay answers with the stored outcome, so the stored form is explicit and
versioned, never a dump of this class: renaming or adding a field here must not break a replay of an old
event. Version 1 (floatsrv 0.1) was `json.dumps(dataclasses.asdict(Outcome))`, with a `replay` key; version
2 names exactly the fields in `_FIELDS_2`. `decode_outcome` reads every version ever written.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

OUTCOME_FORMAT = 2


@dataclass(frozen=True, slots=True)
class Outcome:
    """What happened to one usage event (stored with its id, replayed verbatim)."""

    license_id: int
    feature: str
    model: str
    event_id: str | None
    status: str  # accepted | partial
    requested_milli: int
    accepted_milli: int
    occurred_at: int
    received_at: int
    period_start: int | None
    period_end: int | None
    current_milli: int
    remaining_milli: int | None
    included_milli: int
    overage_milli: int
    credits_spent_milli: int
    plan_credits_left_milli: int | None
    purchased_credits_left_milli: int | None
    replay: bool = False


# Version 2: the stored fields, in this order, with these meanings. Change it only with a new version.
_FIELDS_2 = (
    "license_id",
    "feature",
    "model",
    "event_id",
    "status",
    "requested_milli",
    "accepted_milli",
    "occurred_at",
    "received_at",
    "period_start",
    "period_end",
    "current_milli",
    "remaining_milli",
    "included_milli",
    "overage_milli",
    "credits_spent_milli",
    "plan_credits_left_milli",
    "purchased_credits_left_milli",
)


def encode_outcome(outcome: Outcome) -> str:
    """The stored form, version OUTCOME_FORMAT."""
    return json.dumps({name: getattr(outcome, name) for name in _FIELDS_2}, separators=(",", ":"))


def decode_outcome(text: str, version: int, *, replay: bool) -> Outcome:
    """An outcome from its stored form of any version. Raises ValueError for one this floatsrv does not know."""
    data: dict[str, Any] = json.loads(text)
    if version == 1:  # asdict() of the 0.1 dataclass: the same names, plus `replay`
        return Outcome(**{name: data[name] for name in _FIELDS_2}, replay=replay)
    if version == 2:
        return Outcome(**{name: data[name] for name in _FIELDS_2}, replay=replay)
    raise ValueError(f"stored outcome format {version} is newer than this floatsrv")
